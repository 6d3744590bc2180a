// `arpguard probe` in the real server's namespace, checked against what
// arping and ndisc6 in the client's namespace see on the same segment; its
// monitoring-plugin exit codes.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>
#include <sstream>
#include <string>

#include "tests/wire/lan.h"

using namespace arpguard::testing;
using namespace arpguard::wire_test;

namespace {

constexpr int kOk = 0;
constexpr int kWarning = 1;
constexpr int kCritical = 2;
constexpr int kUnknown = 3;

const std::string kDirectorPolicy = "[readiness]\ndirector_macs = [\"02:00:00:00:00:03\"]\n";

CommandResult probe(const Lan& lan, const std::string& arguments) {
  return lan.rs.exec(arpguard_bin() + " probe " + arguments);
}

// The MACs arping (Habets) in the client saw answer for `ip`, one per reply.
std::set<std::string> arping_macs(const Lan& lan, const std::string& ip) {
  CommandResult r = lan.client.exec("arping -c 2 -W 0.1 -w 1 -i eth0 " + ip);
  std::set<std::string> macs;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    const size_t from = line.find(" bytes from ");
    if (from != std::string::npos) macs.insert(line.substr(from + 12, 17));
  }
  return macs;
}

// The MACs ndisc6 in the client saw answer for `ip`.
std::set<std::string> ndisc6_macs(const Lan& lan, const std::string& ip) {
  CommandResult r = lan.client.exec("ndisc6 -m -r 1 -w 500 " + ip + " eth0");
  std::set<std::string> macs;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    const size_t at = line.find("Target link-layer address: ");
    if (at != std::string::npos) macs.insert(line.substr(at + 27, 17));
  }
  return macs;
}

}  // namespace

TEST_CASE("probe agrees with arping and ndisc6: a neighbour holding the VIP unprotected is unknown, exit 1") {
  Lan lan;
  TempDir dir;
  const std::string policy = dir.write("empty.toml", "");
  lan.other.must("ip addr add 192.0.2.80/32 dev eth0 && ip -6 addr add 2001:db8::80/128 dev eth0 nodad");

  CHECK(arping_macs(lan, "192.0.2.80") == std::set<std::string>{kOther.mac});
  CHECK(ndisc6_macs(lan, "2001:db8::80") == std::set<std::string>{kOther.mac});

  CommandResult r = probe(lan, "192.0.2.80 2001:db8::80 --interface eth0 --wait 300 --policy " + policy);
  CHECK(r.exit_code == kWarning);
  CHECK(r.out ==
        "192.0.2.80 on eth0 answered by 02:00:00:00:00:03 (unknown)\n"
        "2001:db8::80 on eth0 answered by 02:00:00:00:00:03 (unknown)\n"
        "ARPGUARD PROBE WARNING - 2 VIP(s) asked on 1 interface(s): 2 answered by an unknown MAC "
        "(no readiness.director_macs to recognise the director by)\n");
  CHECK(r.err.empty());
}

TEST_CASE("probe: the director's MAC answering is fine, exit 0") {
  Lan lan;
  TempDir dir;
  const std::string policy = dir.write("director.toml", kDirectorPolicy);
  lan.other.must("ip addr add 192.0.2.80/32 dev eth0 && ip -6 addr add 2001:db8::80/128 dev eth0 nodad");

  CommandResult r = probe(lan, "192.0.2.80 2001:db8::80 192.0.2.90 --interface eth0 --wait 300 --policy " + policy);
  CHECK(r.exit_code == kOk);
  CHECK(r.out ==
        "192.0.2.80 on eth0 answered by 02:00:00:00:00:03 (director)\n"
        "2001:db8::80 on eth0 answered by 02:00:00:00:00:03 (director)\n"
        "ARPGUARD PROBE OK - 3 VIP(s) asked on 1 interface(s): 2 answered by the director only, 1 no answer\n");
}

TEST_CASE("probe: nobody answering is OK, exit 0, and arping agrees") {
  Lan lan;
  TempDir dir;
  const std::string policy = dir.write("empty.toml", "");
  CHECK(arping_macs(lan, "192.0.2.90").empty());
  CHECK(ndisc6_macs(lan, "2001:db8::90").empty());
  CommandResult r = probe(lan, "192.0.2.90 2001:db8::90 --interface eth0 --wait 300 --policy " + policy);
  CHECK(r.exit_code == kOk);
  CHECK(r.out == "ARPGUARD PROBE OK - 2 VIP(s) asked on 1 interface(s): no answer\n");
}

TEST_CASE("probe: without VIPs or interfaces, the policy's VIPs (a prefix's first address) on its ARP-facing interfaces") {
  Lan lan;
  TempDir dir;
  const std::string policy = dir.write("vips.toml",
                                       "[[vip]]\naddress = \"192.0.2.80\"\n"
                                       "[[vip]]\naddress = \"192.0.2.84/30\"\nas = \"route\"\n"
                                       "[[vip]]\naddress = \"2001:db8::80\"\n" +
                                           kDirectorPolicy);
  lan.other.must("ip addr add 192.0.2.84/32 dev eth0");
  lan.client.must("ip -6 addr add 2001:db8::80/128 dev eth0 nodad");

  CommandResult r = probe(lan, "--wait 300 --policy " + policy);
  CHECK(r.exit_code == kWarning);
  CHECK(r.out ==
        "192.0.2.84 on eth0 answered by 02:00:00:00:00:03 (director)\n"
        "2001:db8::80 on eth0 answered by 02:00:00:00:00:02 (unknown)\n"
        "ARPGUARD PROBE WARNING - 3 VIP(s) asked on 1 interface(s): 1 answered by an unknown MAC, "
        "1 answered by the director only, 1 no answer\n");
}

TEST_CASE("probe: a MAC of this host's answering is critical, exit 2") {
  Lan lan;
  TempDir dir;
  const std::string policy = dir.write("empty.toml", "");
  // A second NIC of the real server shares the answering MAC (multi-NIC, bonding, a copied MAC).
  lan.rs.must(std::string("ip link add nic1 address ") + kOther.mac + " type veth peer name nic1p");
  lan.other.must("ip addr add 192.0.2.80/32 dev eth0");
  CommandResult r = probe(lan, "192.0.2.80 --interface eth0 --wait 300 --policy " + policy);
  CHECK(r.exit_code == kCritical);
  CHECK(r.out ==
        "192.0.2.80 on eth0 answered by 02:00:00:00:00:03 (this host)\n"
        "ARPGUARD PROBE CRITICAL - 1 VIP(s) asked on 1 interface(s): 1 answered by this host\n");
}

TEST_CASE("probe --json: one stable object") {
  Lan lan;
  TempDir dir;
  const std::string policy = dir.write("director.toml", kDirectorPolicy);
  lan.other.must("ip addr add 192.0.2.80/32 dev eth0");
  lan.client.must("ip addr add 192.0.2.81/32 dev eth0");
  CommandResult r = probe(lan, "192.0.2.80 192.0.2.81 192.0.2.90 --interface eth0 --wait 300 --json --policy " + policy);
  CHECK(r.exit_code == kWarning);
  const nlohmann::json json = nlohmann::json::parse(r.out);
  CHECK(json["state"] == "WARNING");
  CHECK(json["exit_code"] == 1);
  CHECK(json["vips_asked"] == 3);
  CHECK(json["vips_answered"] == 2);
  CHECK(json["vips_unanswered"] == 1);
  CHECK(json["frames_sent"] == 3);
  CHECK(json["problems"] == nlohmann::json::array());
  CHECK(json["interfaces"] == nlohmann::json::parse(R"([{"name": "eth0", "mac": "02:00:00:00:00:01",
      "ipv4": "192.0.2.1", "link_local": "fe80::ff:fe00:1"}])"));
  CHECK(json["responders"] == nlohmann::json::parse(R"([
      {"vip": "192.0.2.80", "interface": "eth0", "mac": "02:00:00:00:00:03", "is": "director", "frame": "arp reply"},
      {"vip": "192.0.2.81", "interface": "eth0", "mac": "02:00:00:00:00:02", "is": "unknown", "frame": "arp reply"}])"));
  CHECK(json["summary"] ==
        "ARPGUARD PROBE WARNING - 3 VIP(s) asked on 1 interface(s): 1 answered by an unknown MAC, "
        "1 answered by the director only, 1 no answer");
}

TEST_CASE("probe cannot ask: no privilege, no such interface, no address to send from: exit 3") {
  Lan lan;
  TempDir dir;
  const std::string policy = dir.write("empty.toml", "");
  const std::string ask = arpguard_bin() + " probe 192.0.2.80 --interface eth0 --wait 100 --policy " + policy;
  run("chmod 755 " + dir.path());  // nobody reads the policy too

  CommandResult nobody = lan.rs.exec("setpriv --reuid=65534 --clear-groups --inh-caps=-all " + ask);
  CHECK(nobody.exit_code == kUnknown);
  CHECK(nobody.out ==
        "ARPGUARD PROBE UNKNOWN - cannot ask: open packet socket for ARP probes: Operation not permitted "
        "(needs CAP_NET_RAW)\n");

  CommandResult root_without_raw = lan.rs.exec("capsh --drop=cap_net_raw -- -c " + quote(ask));
  CHECK(root_without_raw.exit_code == kUnknown);
  CHECK(root_without_raw.out.find("(needs CAP_NET_RAW)") != std::string::npos);

  CommandResult missing = probe(lan, "192.0.2.80 --interface nosuch0 --wait 100 --policy " + policy);
  CHECK(missing.exit_code == kUnknown);
  CHECK(missing.out == "ARPGUARD PROBE UNKNOWN - cannot ask: no such interface nosuch0\n");

  CommandResult bad_policy = probe(lan, "192.0.2.80 --policy " + dir.path() + "/missing.toml");
  CHECK(bad_policy.exit_code == kUnknown);
  CHECK(bad_policy.out.rfind("ARPGUARD PROBE UNKNOWN - cannot ask: " + dir.path() + "/missing.toml:0:0: ", 0) == 0);

  // Addresses no VIP can be: asking for them would mean nothing.
  for (const auto& [target, why] : std::vector<std::pair<std::string, std::string>>{
           {"::ffff:192.0.2.80", "an IPv4-mapped address"}, {"fe80::1", "a link-local address"},
           {"224.0.0.1", "a multicast address"}, {"127.0.0.1", "in the loopback range"}}) {
    CommandResult bad = probe(lan, target + " --wait 100 --policy " + policy);
    CAPTURE(bad.out);
    CHECK(bad.exit_code == kUnknown);
    CHECK(bad.out.rfind("ARPGUARD PROBE UNKNOWN - cannot ask: ", 0) == 0);
    CHECK(bad.out.find(why) != std::string::npos);
    CHECK(bad.out.find(", not a usable VIP") != std::string::npos);
  }

  CommandResult no_vips = probe(lan, "--policy " + policy);
  CHECK(no_vips.exit_code == kUnknown);
  CHECK(no_vips.out ==
        "ARPGUARD PROBE UNKNOWN - cannot ask: no VIPs to ask for: name some, or a policy with [[vip]] (--policy)\n");
}

TEST_CASE("an interface with no address of its own to send from asks with an RFC 5227 probe (sender 0.0.0.0)") {
  Lan lan;
  TempDir dir;
  const std::string policy = dir.write("empty.toml", "");
  // eth1 is up with no IPv4 address; eth0's only one is a target too, so it is
  // not used as the sender either (a target may be a VIP misplaced there).
  lan.rs.must("ip link add eth1 type veth peer name eth1p && ip link set eth1p up && ip link set eth1 up");
  ArpCapture on_eth1(lan.rs, "eth1p", dir.path() + "/eth1.log");
  ArpCapture on_eth0(lan.client, "eth0", dir.path() + "/eth0.log");
  CommandResult r = probe(lan, "192.0.2.80 192.0.2.1 --interface eth0 --interface eth1 --wait 300 --policy " + policy);
  const std::vector<std::string> eth1 = on_eth1.stop();
  const std::vector<std::string> eth0 = on_eth0.stop();
  CAPTURE(r.out);
  CHECK(r.out.find("cannot ask") == std::string::npos);
  auto any_contains = [](const std::vector<std::string>& lines, const std::string& text) {
    return std::any_of(lines.begin(), lines.end(), [&](const std::string& l) { return l.find(text) != std::string::npos; });
  };
  CHECK(any_contains(eth1, "Request who-has 192.0.2.80 tell 0.0.0.0"));
  CHECK(any_contains(eth0, "Request who-has 192.0.2.1 tell 0.0.0.0"));
  for (const std::string& frame : eth0) CHECK(frame.find("tell 192.0.2.1,") == std::string::npos);
}

TEST_CASE("probe paces its questions: 1,500 VIPs take at least 1.4 s, and all go out") {
  Lan lan;
  TempDir dir;
  const std::string policy = dir.write("empty.toml", "");
  std::string vips;
  for (int i = 0; i < 1500; ++i) vips += " 198.51." + std::to_string(100 + i / 250) + "." + std::to_string(i % 250 + 1);
  const double start = now_seconds();
  CommandResult r = probe(lan, vips + " --interface eth0 --wait 0 --json --policy " + policy);
  const double took = now_seconds() - start;
  CHECK(r.exit_code == kOk);
  const nlohmann::json json = nlohmann::json::parse(r.out);
  CHECK(json["frames_sent"] == 1500);
  CHECK(took >= 1.4);
  CHECK(took < 10);
}
