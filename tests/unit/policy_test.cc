// Policy parsing: every bad input gets one exact, located message.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "core/desired.h"
#include "core/policy.h"
#include "printing.h"

using namespace arpguard;

namespace {

std::vector<std::string> errors_of(const std::string& text) {
  std::vector<std::string> out;
  for (const Diagnostic& d : parse_policy(text, "p.toml").errors) out.push_back(d.str());
  return out;
}

struct BadInput {
  const char* name;
  const char* text;
  const char* message;
};

const std::string kLongPath = "/" + std::string(107, 's');

const BadInput kBadInputs[] = {
    {"unknown top-level key", "foo = 1\n", "p.toml:1:1: unknown key 'foo' (expected agent, arp, vip or readiness)"},
    {"unknown agent key", "[agent]\ncolour = \"red\"\n", "p.toml:2:1: unknown key 'agent.colour'"},
    {"agent not a table", "agent = 5\n", "p.toml:1:9: agent: expected a table, found an integer"},
    {"poll interval of the wrong type", "[agent]\nsysctl_poll_ms = \"fast\"\n",
     "p.toml:2:18: agent.sysctl_poll_ms: expected an integer, found a string"},
    {"poll interval too small", "[agent]\nsysctl_poll_ms = 10\n",
     "p.toml:2:18: agent.sysctl_poll_ms: 10 is out of range (50 to 60000)"},
    {"contested threshold of zero", "[agent]\ncontested_repairs = 0\n",
     "p.toml:2:21: agent.contested_repairs: 0 is out of range (1 to 1000000)"},
    {"on_stop unknown", "[agent]\non_stop = \"destroy\"\n",
     "p.toml:2:11: agent.on_stop: 'destroy' is not one of \"keep\", \"remove\""},
    {"relative control socket", "[agent]\ncontrol_socket = \"arpguard.sock\"\n",
     "p.toml:2:18: agent.control_socket: 'arpguard.sock' is not an absolute path"},
    {"relative state dir", "[agent]\nstate_dir = \"run\"\n", "p.toml:2:13: agent.state_dir: 'run' is not an absolute path"},
    {"unknown method", "[arp]\nmethod = \"magic\"\n",
     "p.toml:2:10: arp.method: 'magic' is not one of \"sysctl\", \"nftables\", \"both\", \"redirect\""},
    {"redirect not yet", "[arp]\nmethod = \"redirect\"\n",
     "p.toml:2:10: arp.method: \"redirect\" is not supported yet (use \"sysctl\", \"nftables\" or \"both\")"},
    {"arp_ignore 0 does not protect", "[arp]\narp_ignore = 0\n",
     "p.toml:2:14: arp.arp_ignore: 0 would not protect VIPs (allowed: 1, 2, 3, 8)"},
    {"arp_ignore 5 is reserved and answers", "[arp]\narp_ignore = 5\n",
     "p.toml:2:14: arp.arp_ignore: 5 would not protect VIPs (allowed: 1, 2, 3, 8)"},
    {"arp_ignore out of range", "[arp]\narp_ignore = 9\n",
     "p.toml:2:14: arp.arp_ignore: 9 is not a valid value (allowed: 1, 2, 3, 8)"},
    {"arp_announce 0 does not protect", "[arp]\narp_announce = 0\n",
     "p.toml:2:16: arp.arp_announce: 0 would not protect VIPs (allowed: 1, 2)"},
    {"arp_announce out of range", "[arp]\narp_announce = 3\n",
     "p.toml:2:16: arp.arp_announce: 3 is not a valid value (allowed: 1, 2)"},
    {"arp_filter not a boolean", "[arp]\narp_filter = \"yes\"\n",
     "p.toml:2:14: arp.arp_filter: expected a boolean, found a string"},
    {"no interfaces", "[arp]\ninterfaces = []\n",
     "p.toml:2:14: arp.interfaces: must name at least one interface (\"*\" for all but lo)"},
    {"interfaces not an array", "[arp]\ninterfaces = \"eth0\"\n",
     "p.toml:2:14: arp.interfaces: expected an array of strings, found a string"},
    {"lo as ARP-facing", "[arp]\ninterfaces = [\"lo\"]\n", "p.toml:2:15: arp.interfaces: lo is not ARP-facing; VIPs live there"},
    {"interface name too long", "[arp]\ninterfaces = [\"averyveryverylongname\"]\n",
     "p.toml:2:15: arp.interfaces: interface name 'averyveryverylongname' is longer than 15 characters"},
    {"interface listed twice", "[arp]\ninterfaces = [\"eth0\", \"eth0\"]\n",
     "p.toml:2:23: arp.interfaces: 'eth0' is listed twice"},
    {"star with other names", "[arp]\ninterfaces = [\"*\", \"eth0\"]\n",
     "p.toml:2:14: arp.interfaces: \"*\" already means every interface but lo; list it alone"},
    {"interface element not a string", "[arp]\ninterfaces = [\"eth0\", 7]\n",
     "p.toml:2:23: arp.interfaces[]: expected a string, found an integer"},
    {"unknown arp key", "[arp]\narp_ignroe = 1\n", "p.toml:2:1: unknown key 'arp.arp_ignroe'"},
    {"bad real_ip", "[arp.real_ip]\neth0 = \"10.0.0.300\"\n",
     "p.toml:2:8: arp.real_ip.eth0: '10.0.0.300' is not a usable IPv4 address"},
    {"vip without address", "[[vip]]\ndevice = \"lo\"\n", "p.toml:1:1: vip: missing required key 'address'"},
    {"vip as a plain table", "[vip]\naddress = \"10.0.0.5\"\n", "p.toml:1:1: vip: expected an array of tables ([[vip]])"},
    {"vip address not IPv4", "[[vip]]\naddress = \"10.0.0.256\"\n",
     "p.toml:2:11: vip.address: '10.0.0.256' is not an IPv4 address"},
    {"vip address with leading zero", "[[vip]]\naddress = \"10.0.0.05\"\n",
     "p.toml:2:11: vip.address: '10.0.0.05' is not an IPv4 address"},
    {"vip address not a string", "[[vip]]\naddress = 10\n",
     "p.toml:2:11: vip.address: expected a string, found an integer"},
    {"IPv6 vip not yet", "[[vip]]\naddress = \"2001:db8::1\"\n",
     "p.toml:2:11: vip.address: IPv6 VIPs are not supported yet ('2001:db8::1')"},
    {"prefix vip not yet", "[[vip]]\naddress = \"10.0.0.0/24\"\n",
     "p.toml:2:11: vip.address: prefix VIPs are not supported yet ('10.0.0.0/24'; give one address)"},
    {"loopback vip", "[[vip]]\naddress = \"127.0.0.2\"\n",
     "p.toml:2:11: vip.address: 127.0.0.2 is in the loopback range 127.0.0.0/8, not a usable VIP"},
    {"multicast vip", "[[vip]]\naddress = \"224.0.0.1\"\n",
     "p.toml:2:11: vip.address: 224.0.0.1 is a multicast address, not a usable VIP"},
    {"unspecified vip", "[[vip]]\naddress = \"0.0.0.0\"\n",
     "p.toml:2:11: vip.address: 0.0.0.0 is the unspecified address, not a usable VIP"},
    {"broadcast vip", "[[vip]]\naddress = \"255.255.255.255\"\n",
     "p.toml:2:11: vip.address: 255.255.255.255 is the broadcast address, not a usable VIP"},
    {"duplicate vip", "[[vip]]\naddress = \"10.0.0.5\"\n[[vip]]\naddress = \"10.0.0.5/32\"\n",
     "p.toml:4:11: vip.address: duplicate VIP 10.0.0.5 (first at line 2)"},
    {"vip as route not yet", "[[vip]]\naddress = \"10.0.0.5\"\nas = \"route\"\n",
     "p.toml:3:6: vip.as: \"route\" is not supported yet (use \"address\")"},
    {"vip device invalid", "[[vip]]\naddress = \"10.0.0.5\"\ndevice = \"a/b\"\n",
     "p.toml:3:10: vip.device: 'a/b' is not a valid interface name"},
    {"service check of another kind", "[[vip]]\naddress = \"10.0.0.5\"\ncheck = \"http:80\"\n",
     "p.toml:3:9: vip.check: 'http:80' is not tcp:PORT (port 1 to 65535)"},
    {"service check port out of range", "[[vip]]\naddress = \"10.0.0.5\"\ncheck = \"tcp:70000\"\n",
     "p.toml:3:9: vip.check: 'tcp:70000' is not tcp:PORT (port 1 to 65535)"},
    {"unknown vip key", "[[vip]]\naddress = \"10.0.0.5\"\nport = 80\n", "p.toml:3:1: unknown key 'vip.port'"},
    {"listen without port", "[readiness]\nlisten = [\"10.0.0.1\"]\n",
     "p.toml:2:11: readiness.listen: '10.0.0.1' is not IPV4:PORT (port 1 to 65535)"},
    {"agent-check port 0", "[readiness]\nagent_check_listen = [\"10.0.0.1:0\"]\n",
     "p.toml:2:23: readiness.agent_check_listen: '10.0.0.1:0' is not IPV4:PORT (port 1 to 65535)"},
    {"unknown readiness key", "[readiness]\nlisten_http = []\n", "p.toml:2:1: unknown key 'readiness.listen_http'"},
};

}  // namespace

TEST_CASE("each bad policy input gets its exact located error and no policy") {
  for (const BadInput& bad : kBadInputs) {
    CAPTURE(bad.name);
    PolicyResult result = parse_policy(bad.text, "p.toml");
    CHECK_FALSE(result.policy.has_value());
    REQUIRE(result.errors.size() == 1);
    CHECK(result.errors[0].str() == bad.message);
  }
  CHECK(std::size(kBadInputs) >= 25);
}

TEST_CASE("a control socket path longer than a unix socket allows is rejected") {
  CHECK(errors_of("[agent]\ncontrol_socket = \"" + kLongPath + "\"\n") ==
        std::vector<std::string>{
            "p.toml:2:18: agent.control_socket: longer than 107 characters (a unix socket path limit)"});
}

TEST_CASE("a TOML syntax error is located where the parser stopped") {
  PolicyResult result = parse_policy("[agent\n", "p.toml");
  REQUIRE(result.errors.size() == 1);
  CHECK(result.errors[0].where.line == 1);
  CHECK(result.errors[0].str().rfind("p.toml:1:", 0) == 0);
  CHECK_FALSE(result.policy.has_value());
}

TEST_CASE("every error in a file is reported, in file order") {
  CHECK(errors_of("[arp]\narp_ignore = 0\n[[vip]]\naddress = \"nope\"\n[agent]\nsysctl_poll_ms = 1\n") ==
        std::vector<std::string>{
            "p.toml:2:14: arp.arp_ignore: 0 would not protect VIPs (allowed: 1, 2, 3, 8)",
            "p.toml:4:11: vip.address: 'nope' is not an IPv4 address",
            "p.toml:6:18: agent.sysctl_poll_ms: 1 is out of range (50 to 60000)",
        });
}

TEST_CASE("an unreadable policy file is one error naming the file") {
  PolicyResult result = load_policy("/nonexistent/arpguard.toml");
  REQUIRE(result.errors.size() == 1);
  CHECK(result.errors[0].str() == "/nonexistent/arpguard.toml:0:0: cannot read policy: No such file or directory");
}

TEST_CASE("an empty policy is valid: defaults, no VIPs") {
  PolicyResult result = parse_policy("", "p.toml");
  REQUIRE(result.policy.has_value());
  const Policy& p = *result.policy;
  CHECK(p.vips.empty());
  CHECK(p.arp.method == Method::kBoth);
  CHECK(p.arp.all_interfaces());
  CHECK(p.arp.arp_ignore == 1);
  CHECK(p.arp.arp_announce == 2);
  CHECK_FALSE(p.arp.arp_filter);
  CHECK(p.agent.on_stop == OnStop::kKeep);
  CHECK(p.agent.sysctl_poll_ms == 1000);
  CHECK(p.agent.control_socket == "/run/arpguard/arpguard.sock");
}

TEST_CASE("the design's example policy parses to what it says") {
  const char* text = R"(
[agent]
control_socket = "/run/arpguard/arpguard.sock"
sysctl_poll_ms = 1000
on_stop = "remove"

[arp]
method = "nftables"
interfaces = ["eth*", "bond0"]
arp_ignore = 2
arp_announce = 2
arp_filter = true
real_ip = { eth0 = "192.168.76.11" }

[[vip]]
address = "192.168.76.24"
device = "lo"
as = "address"

[[vip]]
address = "192.168.76.25/32"

[readiness]
listen = ["192.168.76.11:9480"]
agent_check_listen = ["192.168.76.11:9777"]
)";
  PolicyResult result = parse_policy(text, "p.toml");
  REQUIRE(result.errors.empty());
  const Policy& p = *result.policy;
  CHECK(p.agent.on_stop == OnStop::kRemove);
  CHECK(p.arp.method == Method::kNftables);
  CHECK(p.arp.interfaces == std::vector<std::string>{"eth*", "bond0"});
  CHECK(p.arp.arp_ignore == 2);
  CHECK(p.arp.arp_filter);
  CHECK(p.arp.real_ip.at("eth0").str() == "192.168.76.11");
  REQUIRE(p.vips.size() == 2);
  CHECK(p.vips[0].prefix.str() == "192.168.76.24/32");
  CHECK(p.vips[0].device == "lo");
  CHECK(p.vips[0].where.line == 16);
  CHECK(p.vips[1].prefix.str() == "192.168.76.25/32");
  REQUIRE(p.readiness.listen.size() == 1);
  CHECK(p.readiness.listen[0].str() == "192.168.76.11:9480");
  CHECK(p.readiness.agent_check_listen[0].port == 9777);
}

TEST_CASE("a VIP that is an interface's own address is a located error; a misplaced /32 is not") {
  PolicyResult result = parse_policy("[[vip]]\naddress = \"192.0.2.1\"\n[[vip]]\naddress = \"192.0.2.10\"\n", "p.toml");
  REQUIRE(result.policy);
  Observed observed;
  observed.links = {{1, "lo", true, false, true}, {2, "eth0", false, false, true}};
  observed.addresses = {{2, *Ipv4Prefix::parse("192.0.2.1/24")}, {2, *Ipv4Prefix::parse("192.0.2.10/32")}};
  std::vector<std::string> errors;
  for (const Diagnostic& d : check_against_kernel(*result.policy, observed)) errors.push_back(d.str());
  CHECK(errors == std::vector<std::string>{
                      "p.toml:2:11: vip.address: 192.0.2.1 is the own address of eth0 (192.0.2.1/24), not a VIP"});
}
