// The policy: every bad input gets one exact message located at FILE:LINE:COL
// and no policy; good input parses to the values it says, VIPs sorted.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "core/policy.h"
#include "printing.h"

using namespace arpguard;
using namespace std::string_literals;

namespace {

std::vector<std::string> lines_of(const std::vector<Diagnostic>& diagnostics) {
  std::vector<std::string> out;
  for (const Diagnostic& d : diagnostics) out.push_back(d.str());
  return out;
}

std::vector<std::string> errors_of(const std::string& text) { return lines_of(parse_policy(text, "p.toml").errors); }

Policy policy_of(const std::string& text) {
  PolicyResult result = parse_policy(text, "p.toml");
  INFO(lines_of(result.errors));
  REQUIRE(result.errors.empty());
  REQUIRE(result.policy.has_value());
  return *result.policy;
}

std::string vip(const std::string& address, const std::string& more = "") {
  return "[[vip]]\naddress = \"" + address + "\"\n" + more;
}

IpAddress ip(const char* text) { return *IpAddress::parse(text); }

struct BadInput {
  const char* name;
  std::string text;
  std::string message;
};

// Long names and paths at and past their limits.
const std::string kPath107 = "/" + std::string(106, 's');
const std::string kPath108 = "/" + std::string(107, 's');

std::string ports_array(int count) {
  std::string out = "[";
  for (int i = 1; i <= count; ++i) out += (i > 1 ? ", \"tcp:" : "\"tcp:") + std::to_string(i) + "\"";
  return out + "]";
}

const BadInput kBadInputs[] = {
    // ---- structure and unknown keys ----
    {"unknown top-level key", "foo = 1\n", "p.toml:1:1: unknown key 'foo' (expected agent, arp, vip, readiness or watch)"},
    {"unknown agent key", "[agent]\ncolour = \"red\"\n", "p.toml:2:1: unknown key 'agent.colour'"},
    {"unknown arp key", "[arp]\narp_ignroe = 1\n", "p.toml:2:1: unknown key 'arp.arp_ignroe'"},
    {"unknown vip key", vip("10.0.0.5", "port = 80\n"), "p.toml:3:1: unknown key 'vip.port'"},
    {"unknown readiness key", "[readiness]\nlisten_http = []\n", "p.toml:2:1: unknown key 'readiness.listen_http'"},
    {"agent not a table", "agent = 5\n", "p.toml:1:9: agent: expected a table, found an integer"},
    {"arp not a table", "arp = [1]\n", "p.toml:1:7: arp: expected a table, found an array"},
    {"readiness not a table", "readiness = \"x\"\n", "p.toml:1:13: readiness: expected a table, found a string"},
    {"vip as a plain table", "[vip]\naddress = \"10.0.0.5\"\n", "p.toml:1:1: vip: expected an array of tables ([[vip]])"},
    {"vip as an array of strings", "vip = [\"10.0.0.5\"]\n", "p.toml:1:7: vip: expected an array of tables ([[vip]])"},
    {"vip without address", "[[vip]]\ndevice = \"lo\"\n", "p.toml:1:1: vip: missing required key 'address'"},

    // ---- [agent] ----
    {"poll interval of the wrong type", "[agent]\nsysctl_poll_ms = \"fast\"\n",
     "p.toml:2:18: agent.sysctl_poll_ms: expected an integer, found a string"},
    {"poll interval too small", "[agent]\nsysctl_poll_ms = 10\n",
     "p.toml:2:18: agent.sysctl_poll_ms: 10 is out of range (50 to 60000)"},
    {"poll interval too large", "[agent]\nsysctl_poll_ms = 60001\n",
     "p.toml:2:18: agent.sysctl_poll_ms: 60001 is out of range (50 to 60000)"},
    {"poll interval as a float", "[agent]\nsysctl_poll_ms = 1000.0\n",
     "p.toml:2:18: agent.sysctl_poll_ms: expected an integer, found a float"},
    {"contested threshold of zero", "[agent]\ncontested_repairs = 0\n",
     "p.toml:2:21: agent.contested_repairs: 0 is out of range (1 to 1000000)"},
    {"contested window too short", "[agent]\ncontested_window_ms = 99\n",
     "p.toml:2:23: agent.contested_window_ms: 99 is out of range (100 to 3600000)"},
    {"check interval too short", "[agent]\ncheck_interval_ms = 99\n",
     "p.toml:2:21: agent.check_interval_ms: 99 is out of range (100 to 600000)"},
    {"on_stop unknown", "[agent]\non_stop = \"destroy\"\n",
     "p.toml:2:11: agent.on_stop: 'destroy' is not one of \"keep\", \"remove\""},
    {"own_nft_table not a boolean", "[agent]\nown_nft_table = 1\n",
     "p.toml:2:17: agent.own_nft_table: expected a boolean, found an integer"},
    {"relative control socket", "[agent]\ncontrol_socket = \"arpguard.sock\"\n",
     "p.toml:2:18: agent.control_socket: 'arpguard.sock' is not an absolute path"},
    {"empty control socket", "[agent]\ncontrol_socket = \"\"\n",
     "p.toml:2:18: agent.control_socket: '' is not an absolute path"},
    {"control socket through /../", "[agent]\ncontrol_socket = \"/run/../tmp/a.sock\"\n",
     "p.toml:2:18: agent.control_socket: '/run/../tmp/a.sock' is not a plain absolute path"},
    {"control socket ending in /..", "[agent]\ncontrol_socket = \"/run/arpguard/..\"\n",
     "p.toml:2:18: agent.control_socket: '/run/arpguard/..' is not a plain absolute path"},
    {"control socket longer than sun_path holds", "[agent]\ncontrol_socket = \"" + kPath108 + "\"\n",
     "p.toml:2:18: agent.control_socket: longer than 107 characters (a unix socket path limit)"},
    {"relative state dir", "[agent]\nstate_dir = \"run\"\n", "p.toml:2:13: agent.state_dir: 'run' is not an absolute path"},
    {"state dir through /../", "[agent]\nstate_dir = \"/var/../etc\"\n",
     "p.toml:2:13: agent.state_dir: '/var/../etc' is not a plain absolute path"},
    {"audit interval of 1 ms", "[agent]\naudit_interval_ms = 1\n",
     "p.toml:2:21: agent.audit_interval_ms: 1 is out of range (0 for never, or 1000 to 86400000)"},
    {"audit interval of 999 ms", "[agent]\naudit_interval_ms = 999\n",
     "p.toml:2:21: agent.audit_interval_ms: 999 is out of range (0 for never, or 1000 to 86400000)"},
    {"audit interval negative", "[agent]\naudit_interval_ms = -1\n",
     "p.toml:2:21: agent.audit_interval_ms: -1 is out of range (0 for never, or 1000 to 86400000)"},
    {"audit interval over a day", "[agent]\naudit_interval_ms = 86400001\n",
     "p.toml:2:21: agent.audit_interval_ms: 86400001 is out of range (0 for never, or 1000 to 86400000)"},
    {"audit interval not an integer", "[agent]\naudit_interval_ms = true\n",
     "p.toml:2:21: agent.audit_interval_ms: expected an integer, found a boolean"},
    {"event buffer too small", "[agent]\nevent_buffer_kb = 63\n",
     "p.toml:2:19: agent.event_buffer_kb: 63 is out of range (64 to 1048576)"},
    {"event buffer too large", "[agent]\nevent_buffer_kb = 1048577\n",
     "p.toml:2:19: agent.event_buffer_kb: 1048577 is out of range (64 to 1048576)"},
    {"an integer beyond int range", "[agent]\nevent_buffer_kb = 9223372036854775807\n",
     "p.toml:2:19: agent.event_buffer_kb: 9223372036854775807 is out of range (64 to 1048576)"},

    // ---- [arp] ----
    {"unknown method", "[arp]\nmethod = \"magic\"\n",
     "p.toml:2:10: arp.method: 'magic' is not one of \"sysctl\", \"nftables\", \"both\", \"redirect\""},
    {"method in capitals", "[arp]\nmethod = \"Both\"\n",
     "p.toml:2:10: arp.method: 'Both' is not one of \"sysctl\", \"nftables\", \"both\", \"redirect\""},
    {"arp_ignore 0 does not protect", "[arp]\narp_ignore = 0\n",
     "p.toml:2:14: arp.arp_ignore: 0 would not protect VIPs (allowed: 1, 2, 3, 8)"},
    {"arp_ignore 5 is reserved and answers", "[arp]\narp_ignore = 5\n",
     "p.toml:2:14: arp.arp_ignore: 5 would not protect VIPs (allowed: 1, 2, 3, 8)"},
    {"arp_ignore 9 is no value", "[arp]\narp_ignore = 9\n",
     "p.toml:2:14: arp.arp_ignore: 9 is not a valid value (allowed: 1, 2, 3, 8)"},
    {"arp_ignore negative", "[arp]\narp_ignore = -1\n",
     "p.toml:2:14: arp.arp_ignore: -1 is not a valid value (allowed: 1, 2, 3, 8)"},
    {"arp_announce 0 does not protect", "[arp]\narp_announce = 0\n",
     "p.toml:2:16: arp.arp_announce: 0 would not protect VIPs (allowed: 1, 2)"},
    {"arp_announce 3 is no value", "[arp]\narp_announce = 3\n",
     "p.toml:2:16: arp.arp_announce: 3 is not a valid value (allowed: 1, 2)"},
    {"arp_filter not a boolean", "[arp]\narp_filter = \"yes\"\n",
     "p.toml:2:14: arp.arp_filter: expected a boolean, found a string"},
    {"source_routing not a boolean", "[arp]\nsource_routing = 1\n",
     "p.toml:2:18: arp.source_routing: expected a boolean, found an integer"},
    {"no interfaces", "[arp]\ninterfaces = []\n",
     "p.toml:2:14: arp.interfaces: must name at least one interface (\"*\" for all but lo)"},
    {"interfaces not an array", "[arp]\ninterfaces = \"eth0\"\n",
     "p.toml:2:14: arp.interfaces: expected an array of strings, found a string"},
    {"interface element not a string", "[arp]\ninterfaces = [\"eth0\", 7]\n",
     "p.toml:2:23: arp.interfaces[]: expected a string, found an integer"},
    {"lo as ARP-facing", "[arp]\ninterfaces = [\"lo\"]\n", "p.toml:2:15: arp.interfaces: lo is not ARP-facing; VIPs live there"},
    {"interface listed twice", "[arp]\ninterfaces = [\"eth0\", \"eth0\"]\n",
     "p.toml:2:23: arp.interfaces: 'eth0' is listed twice"},
    {"star with other names", "[arp]\ninterfaces = [\"*\", \"eth0\"]\n",
     "p.toml:2:14: arp.interfaces: \"*\" already means every interface but lo; list it alone"},
    {"empty interface name", "[arp]\ninterfaces = [\"\"]\n", "p.toml:2:15: arp.interfaces: interface name is empty"},
    {"interface name of 16 characters", "[arp]\ninterfaces = [\"averyverylongnam\"]\n",
     "p.toml:2:15: arp.interfaces: interface name 'averyverylongnam' is longer than 15 characters"},
    {"interface name with a slash", "[arp]\ninterfaces = [\"eth/0\"]\n",
     "p.toml:2:15: arp.interfaces: 'eth/0' is not a valid interface name"},
    {"interface name with a colon (an alias label)", "[arp]\ninterfaces = [\"eth0:1\"]\n",
     "p.toml:2:15: arp.interfaces: 'eth0:1' is not a valid interface name"},
    {"interface name with a space", "[arp]\ninterfaces = [\"eth 0\"]\n",
     "p.toml:2:15: arp.interfaces: 'eth 0' is not a valid interface name"},
    {"interface name with a tab", "[arp]\ninterfaces = [\"eth\\t0\"]\n",
     "p.toml:2:15: arp.interfaces: 'eth\t0' is not a valid interface name"},
    {"interface name with a non-ASCII letter", "[arp]\ninterfaces = [\"\xc3\xa9th0\"]\n",
     "p.toml:2:15: arp.interfaces: '\xc3\xa9th0' is not a valid interface name"},
    {"interface name with DEL", "[arp]\ninterfaces = [\"eth\\u007f\"]\n",
     "p.toml:2:15: arp.interfaces: 'eth\x7f' is not a valid interface name"},
    {"interface name '..'", "[arp]\ninterfaces = [\"..\"]\n", "p.toml:2:15: arp.interfaces: '..' is not a valid interface name"},
    {"real_ip inside a VIP: the rewrite would announce it",
     "[arp]\nreal_ip = { eth0 = \"10.0.0.5\" }\n[[vip]]\naddress = \"10.0.0.0/29\"\n",
     "p.toml:2:20: arp.real_ip.eth0: 10.0.0.5 is in VIP 10.0.0.0/29 (line 4): the sender rewrite would announce it"},
    {"the same listener twice", "[readiness]\nlisten = [\"192.0.2.1:9480\", \"192.0.2.1:9480\"]\n",
     "p.toml:2:29: readiness: 192.0.2.1:9480 clashes with 192.0.2.1:9480 (line 2): one address and port, one listener"},
    {"agent-check on the HTTP listener's wildcard port",
     "[readiness]\nlisten = [\"0.0.0.0:9480\"]\nagent_check_listen = [\"192.0.2.1:9480\"]\n",
     "p.toml:3:23: readiness: 192.0.2.1:9480 clashes with 0.0.0.0:9480 (line 2): one address and port, one listener"},
    {"bad real_ip", "[arp.real_ip]\neth0 = \"10.0.0.300\"\n",
     "p.toml:2:8: arp.real_ip.eth0: '10.0.0.300' is not a usable IPv4 address"},
    {"IPv6 real_ip", "[arp.real_ip]\neth0 = \"2001:db8::1\"\n",
     "p.toml:2:8: arp.real_ip.eth0: '2001:db8::1' is not a usable IPv4 address"},
    {"loopback real_ip", "[arp.real_ip]\neth0 = \"127.0.0.1\"\n",
     "p.toml:2:8: arp.real_ip.eth0: '127.0.0.1' is not a usable IPv4 address"},
    {"real_ip for an invalid interface name", "[arp.real_ip]\n\"eth 0\" = \"10.0.0.1\"\n",
     "p.toml:2:11: arp.real_ip.eth 0: 'eth 0' is not a valid interface name"},
    {"real_ip not a table", "[arp]\nreal_ip = \"10.0.0.1\"\n",
     "p.toml:2:11: arp.real_ip: expected a table, found a string"},

    // ---- [[vip]] address ----
    {"vip address not an address", vip("10.0.0.256"), "p.toml:2:11: vip.address: '10.0.0.256' is not an IP address or prefix"},
    {"vip address with a leading zero", vip("10.0.0.05"),
     "p.toml:2:11: vip.address: '10.0.0.05' is not an IP address or prefix"},
    {"vip address with a zone", vip("fe80::1%lo"), "p.toml:2:11: vip.address: 'fe80::1%lo' is not an IP address or prefix"},
    {"vip prefix too long", vip("10.0.0.0/33"), "p.toml:2:11: vip.address: '10.0.0.0/33' is not an IP address or prefix"},
    {"vip address not a string", "[[vip]]\naddress = 10\n", "p.toml:2:11: vip.address: expected a string, found an integer"},
    {"loopback vip", vip("127.0.0.2"),
     "p.toml:2:11: vip.address: 127.0.0.2 is in the loopback range 127.0.0.0/8, not a usable VIP"},
    {"multicast vip", vip("224.0.0.1"), "p.toml:2:11: vip.address: 224.0.0.1 is a multicast address, not a usable VIP"},
    {"unspecified vip", vip("0.0.0.0"), "p.toml:2:11: vip.address: 0.0.0.0 is the unspecified address, not a usable VIP"},
    {"broadcast vip", vip("255.255.255.255"),
     "p.toml:2:11: vip.address: 255.255.255.255 is the broadcast address, not a usable VIP"},
    {"link-local vip", vip("169.254.1.1"), "p.toml:2:11: vip.address: 169.254.1.1 is a link-local address, not a usable VIP"},
    {"reserved vip", vip("240.0.0.1"),
     "p.toml:2:11: vip.address: 240.0.0.1 is in the reserved range 240.0.0.0/4, not a usable VIP"},
    {"IPv6 link-local vip", vip("fe80::1"), "p.toml:2:11: vip.address: fe80::1 is a link-local address, not a usable VIP"},
    {"IPv6 multicast vip", vip("ff02::1"), "p.toml:2:11: vip.address: ff02::1 is a multicast address, not a usable VIP"},
    {"IPv6 unspecified vip", vip("::"), "p.toml:2:11: vip.address: :: is the unspecified address, not a usable VIP"},
    {"IPv6 loopback vip", vip("::1"), "p.toml:2:11: vip.address: ::1 is the loopback address, not a usable VIP"},
    {"IPv4-mapped vip", vip("::ffff:192.0.2.1"),
     "p.toml:2:11: vip.address: ::ffff:192.0.2.1 is an IPv4-mapped address (write the IPv4 address), not a usable VIP"},
    {"prefix vip with host bits", vip("10.0.0.5/24"),
     "p.toml:2:11: vip.address: '10.0.0.5/24' has host bits set (the prefix is 10.0.0.0/24)"},
    {"IPv6 prefix vip with host bits", vip("2001:db8::1/64"),
     "p.toml:2:11: vip.address: '2001:db8::1/64' has host bits set (the prefix is 2001:db8::/64)"},
    {"prefix starting in an unusable range", vip("127.0.0.0/8"),
     "p.toml:2:11: vip.address: 127.0.0.0 is in the loopback range 127.0.0.0/8, not a usable VIP"},
    {"the whole IPv4 space", vip("0.0.0.0/0"), "p.toml:2:11: vip.address: 0.0.0.0 is the unspecified address, not a usable VIP"},
    {"the whole IPv6 space", vip("::/0"), "p.toml:2:11: vip.address: :: is the unspecified address, not a usable VIP"},
    {"prefix reaching into loopback", vip("126.0.0.0/7"),
     "p.toml:2:11: vip.address: 126.0.0.0/7 holds addresses in the loopback range 127.0.0.0/8, not usable as VIPs"},
    {"prefix reaching the broadcast address", vip("192.0.0.0/2"),
     "p.toml:2:11: vip.address: 192.0.0.0/2 holds addresses in the multicast range 224.0.0.0/4, not usable as VIPs"},
    {"prefix reaching into the reserved range", vip("224.0.0.0/3"),
     "p.toml:2:11: vip.address: 224.0.0.0 is a multicast address, not a usable VIP"},
    {"IPv6 prefix reaching into multicast", vip("fe00::/7"),
     "p.toml:2:11: vip.address: fe00::/7 holds addresses in the link-local range fe80::/10, not usable as VIPs"},
    {"IPv6 prefix reaching into IPv4-mapped", vip("::fffe:0:0/95"),
     "p.toml:2:11: vip.address: ::fffe:0:0/95 holds addresses in the IPv4-mapped range ::ffff:0:0/96, not usable as VIPs"},

    // ---- duplicates and overlaps ----
    {"duplicate vip", vip("10.0.0.5") + vip("10.0.0.5/32"),
     "p.toml:4:11: vip.address: duplicate VIP 10.0.0.5 (first at line 2)"},
    {"duplicate vips in one inline array", "vip = [{address = \"10.0.0.5\"}, {address = \"10.0.0.5\"}]\n",
     "p.toml:1:43: vip.address: duplicate VIP 10.0.0.5 (first at line 1)"},
    {"a bound and a redirected copy of one vip", vip("10.0.0.5") + vip("10.0.0.5", "method = \"redirect\"\n"),
     "p.toml:4:11: vip.address: duplicate VIP 10.0.0.5 (first at line 2)"},
    {"duplicate IPv6 vip, written two ways", vip("2001:db8::5") + vip("2001:DB8:0::5"),
     "p.toml:4:11: vip.address: duplicate VIP 2001:db8::5 (first at line 2)"},
    {"a /32 inside a prefix vip", vip("10.0.0.0/24") + vip("10.0.0.5"),
     "p.toml:4:11: vip.address: 10.0.0.5/32 overlaps 10.0.0.0/24 (line 2)"},
    {"a prefix vip around an earlier /32", vip("10.0.0.5") + vip("10.0.0.0/24"),
     "p.toml:4:11: vip.address: 10.0.0.0/24 overlaps 10.0.0.5/32 (line 2)"},
    {"two prefixes from one address", vip("10.0.0.0/24") + vip("10.0.0.0/25"),
     "p.toml:4:11: vip.address: 10.0.0.0/25 overlaps 10.0.0.0/24 (line 2)"},
    {"overlapping IPv6 prefixes", vip("2001:db8::/64") + vip("2001:db8::/48"),
     "p.toml:4:11: vip.address: 2001:db8::/48 overlaps 2001:db8::/64 (line 2)"},

    // ---- as, device, method ----
    {"as unknown", vip("10.0.0.5", "as = \"local\"\n"),
     "p.toml:3:6: vip.as: 'local' is not one of \"address\", \"route\""},
    {"as not a string", vip("10.0.0.5", "as = 1\n"), "p.toml:3:6: vip.as: expected a string, found an integer"},
    {"as address with a prefix", vip("10.100.0.0/24", "as = \"address\"\n"),
     "p.toml:3:6: vip.as: a prefix VIP (10.100.0.0/24) is a local route; as = \"address\" takes one address (/32 or "
     "/128)"},
    {"route vip on another device", vip("10.100.0.0/24", "device = \"eth0\"\n"),
     "p.toml:3:10: vip.device: a route VIP (10.100.0.0/24) is a local route on lo, not on eth0"},
    {"as route on another device", vip("10.0.0.5", "as = \"route\"\ndevice = \"eth0\"\n"),
     "p.toml:4:10: vip.device: a route VIP (10.0.0.5/32) is a local route on lo, not on eth0"},
    {"sysctl method for a vip on another device", "[arp]\nmethod = \"sysctl\"\n" + vip("10.0.0.5", "device = \"dummy0\"\n"),
     "p.toml:5:10: vip.device: no layer of method \"sysctl\" hides a VIP on dummy0: the kernel answers ARP and NDP for "
     "addresses on the interface asked; put the VIP on lo, or use method \"nftables\" or \"both\""},
    {"per-vip sysctl method on another device", vip("10.0.0.5", "method = \"sysctl\"\ndevice = \"dummy0\"\n"),
     "p.toml:4:10: vip.device: no layer of method \"sysctl\" hides a VIP on dummy0: the kernel answers ARP and NDP for "
     "addresses on the interface asked; put the VIP on lo, or use method \"nftables\" or \"both\""},
    {"vip device invalid", vip("10.0.0.5", "device = \"a/b\"\n"), "p.toml:3:10: vip.device: 'a/b' is not a valid interface name"},
    {"vip device empty", vip("10.0.0.5", "device = \"\"\n"), "p.toml:3:10: vip.device: interface name is empty"},
    {"vip device too long", vip("10.0.0.5", "device = \"averyverylongnam\"\n"),
     "p.toml:3:10: vip.device: interface name 'averyverylongnam' is longer than 15 characters"},
    {"vip device not a string", vip("10.0.0.5", "device = 1\n"), "p.toml:3:10: vip.device: expected a string, found an integer"},
    {"vip method unknown", vip("10.0.0.5", "method = \"arp\"\n"),
     "p.toml:3:10: vip.method: 'arp' is not one of \"sysctl\", \"nftables\", \"both\", \"redirect\""},
    {"device for a redirected vip", vip("10.0.0.5", "method = \"redirect\"\ndevice = \"lo\"\n"),
     "p.toml:4:10: vip.device: 10.0.0.5/32 uses method \"redirect\", which never configures the VIP (remove this key, or "
     "choose another method)"},
    {"as for a redirected vip", vip("10.0.0.0/24", "method = \"redirect\"\nas = \"route\"\n"),
     "p.toml:4:6: vip.as: 10.0.0.0/24 uses method \"redirect\", which never configures the VIP (remove this key, or "
     "choose another method)"},
    {"as for a vip redirected by arp.method", "[arp]\nmethod = \"redirect\"\n" + vip("10.0.0.5", "as = \"address\"\n"),
     "p.toml:5:6: vip.as: 10.0.0.5/32 uses method \"redirect\", which never configures the VIP (remove this key, or "
     "choose another method)"},

    // ---- ports ----
    {"ports on a bound vip", vip("10.0.0.5", "ports = [\"tcp:80\"]\n"),
     "p.toml:3:9: vip.ports: only a VIP with method \"redirect\" takes ports (10.0.0.5/32 uses \"both\")"},
    {"ports on a nftables vip", vip("10.0.0.5", "method = \"nftables\"\nports = [\"tcp:80\"]\n"),
     "p.toml:4:9: vip.ports: only a VIP with method \"redirect\" takes ports (10.0.0.5/32 uses \"nftables\")"},
    {"ports of an unknown protocol", vip("10.0.0.5", "method = \"redirect\"\nports = [\"sctp:80\"]\n"),
     "p.toml:4:10: vip.ports: 'sctp:80' has protocol 'sctp' (tcp or udp)"},
    {"ports without a protocol", vip("10.0.0.5", "method = \"redirect\"\nports = [\"80\"]\n"),
     "p.toml:4:10: vip.ports: '80' is not PROTOCOL:PORT (e.g. \"tcp:80\", \"udp:53\", \"tcp:80->8080\")"},
    {"port 0", vip("10.0.0.5", "method = \"redirect\"\nports = [\"tcp:0\"]\n"),
     "p.toml:4:10: vip.ports: 'tcp:0' has a port that is not 1 to 65535"},
    {"port 65536", vip("10.0.0.5", "method = \"redirect\"\nports = [\"udp:65536\"]\n"),
     "p.toml:4:10: vip.ports: 'udp:65536' has a port that is not 1 to 65535"},
    {"port with a leading zero", vip("10.0.0.5", "method = \"redirect\"\nports = [\"tcp:080\"]\n"),
     "p.toml:4:10: vip.ports: 'tcp:080' has a port that is not 1 to 65535"},
    {"port missing", vip("10.0.0.5", "method = \"redirect\"\nports = [\"tcp:\"]\n"),
     "p.toml:4:10: vip.ports: 'tcp:' has a port that is not 1 to 65535"},
    {"range without an end", vip("10.0.0.5", "method = \"redirect\"\nports = [\"tcp:80-\"]\n"),
     "p.toml:4:10: vip.ports: 'tcp:80-' has a port that is not 1 to 65535"},
    {"range ending before it starts", vip("10.0.0.5", "method = \"redirect\"\nports = [\"udp:2000-1000\"]\n"),
     "p.toml:4:10: vip.ports: 'udp:2000-1000' is a range that ends before it starts"},
    {"target port 0", vip("10.0.0.5", "method = \"redirect\"\nports = [\"tcp:80->0\"]\n"),
     "p.toml:4:10: vip.ports: 'tcp:80->0' has a target port that is not 1 to 65535"},
    {"target port missing", vip("10.0.0.5", "method = \"redirect\"\nports = [\"tcp:80->\"]\n"),
     "p.toml:4:10: vip.ports: 'tcp:80->' has a target port that is not 1 to 65535"},
    {"two targets", vip("10.0.0.5", "method = \"redirect\"\nports = [\"tcp:80->81->82\"]\n"),
     "p.toml:4:10: vip.ports: 'tcp:80->81->82' has a target port that is not 1 to 65535"},
    {"overlapping port entries", vip("10.0.0.5", "method = \"redirect\"\nports = [\"tcp:80-90\", \"tcp:85\"]\n"),
     "p.toml:4:23: vip.ports: 'tcp:85' overlaps 'tcp:80-90'"},
    {"the same port twice, one mapped", vip("10.0.0.5", "method = \"redirect\"\nports = [\"udp:53\", \"udp:53->5353\"]\n"),
     "p.toml:4:20: vip.ports: 'udp:53->5353' overlaps 'udp:53'"},
    {"empty ports", vip("10.0.0.5", "method = \"redirect\"\nports = []\n"),
     "p.toml:4:9: vip.ports: empty (leave it out to redirect every TCP and UDP port)"},
    {"65 ports", vip("10.0.0.5", "method = \"redirect\"\nports = " + ports_array(65) + "\n"),
     "p.toml:4:9: vip.ports: 65 entries (at most 64)"},
    {"ports not an array", vip("10.0.0.5", "method = \"redirect\"\nports = \"tcp:80\"\n"),
     "p.toml:4:9: vip.ports: expected an array of strings, found a string"},
    {"a port entry not a string", vip("10.0.0.5", "method = \"redirect\"\nports = [80]\n"),
     "p.toml:4:10: vip.ports[]: expected a string, found an integer"},

    // ---- check ----
    {"service check of another kind", vip("10.0.0.5", "check = \"http:80\"\n"),
     "p.toml:3:9: vip.check: 'http:80' is not tcp:PORT (port 1 to 65535)"},
    {"service check port out of range", vip("10.0.0.5", "check = \"tcp:70000\"\n"),
     "p.toml:3:9: vip.check: 'tcp:70000' is not tcp:PORT (port 1 to 65535)"},
    {"service check port 0", vip("10.0.0.5", "check = \"tcp:0\"\n"), "p.toml:3:9: vip.check: 'tcp:0' is not tcp:PORT (port 1 to 65535)"},
    {"service check port with a leading zero", vip("10.0.0.5", "check = \"tcp:080\"\n"),
     "p.toml:3:9: vip.check: 'tcp:080' is not tcp:PORT (port 1 to 65535)"},
    {"service check without a port", vip("10.0.0.5", "check = \"tcp:\"\n"),
     "p.toml:3:9: vip.check: 'tcp:' is not tcp:PORT (port 1 to 65535)"},
    {"service check of a bare port", vip("10.0.0.5", "check = \"80\"\n"),
     "p.toml:3:9: vip.check: '80' is not tcp:PORT (port 1 to 65535)"},
    {"service check in capitals", vip("10.0.0.5", "check = \"TCP:80\"\n"),
     "p.toml:3:9: vip.check: 'TCP:80' is not tcp:PORT (port 1 to 65535)"},
    {"service check with a trailing space", vip("10.0.0.5", "check = \"tcp:80 \"\n"),
     "p.toml:3:9: vip.check: 'tcp:80 ' is not tcp:PORT (port 1 to 65535)"},
    {"service check not a string", vip("10.0.0.5", "check = 80\n"), "p.toml:3:9: vip.check: expected a string, found an integer"},

    // ---- [readiness] ----
    {"listen without port", "[readiness]\nlisten = [\"10.0.0.1\"]\n",
     "p.toml:2:11: readiness.listen: '10.0.0.1' is not IPV4:PORT or [IPV6]:PORT (port 1 to 65535)"},
    {"agent-check port 0", "[readiness]\nagent_check_listen = [\"10.0.0.1:0\"]\n",
     "p.toml:2:23: readiness.agent_check_listen: '10.0.0.1:0' is not IPV4:PORT or [IPV6]:PORT (port 1 to 65535)"},
    {"listen port 65536", "[readiness]\nlisten = [\"10.0.0.1:65536\"]\n",
     "p.toml:2:11: readiness.listen: '10.0.0.1:65536' is not IPV4:PORT or [IPV6]:PORT (port 1 to 65535)"},
    {"listen port with a leading zero", "[readiness]\nlisten = [\"10.0.0.1:080\"]\n",
     "p.toml:2:11: readiness.listen: '10.0.0.1:080' is not IPV4:PORT or [IPV6]:PORT (port 1 to 65535)"},
    {"IPv6 listen without brackets", "[readiness]\nlisten = [\"2001:db8::1:9480\"]\n",
     "p.toml:2:11: readiness.listen: '2001:db8::1:9480' is not IPV4:PORT or [IPV6]:PORT (port 1 to 65535)"},
    {"IPv4 listen in brackets", "[readiness]\nlisten = [\"[10.0.0.1]:9480\"]\n",
     "p.toml:2:11: readiness.listen: '[10.0.0.1]:9480' is not IPV4:PORT or [IPV6]:PORT (port 1 to 65535)"},
    {"IPv6 listen without a port", "[readiness]\nlisten = [\"[2001:db8::1]\"]\n",
     "p.toml:2:11: readiness.listen: '[2001:db8::1]' is not IPV4:PORT or [IPV6]:PORT (port 1 to 65535)"},
    {"listen by host name", "[readiness]\nlisten = [\"localhost:9480\"]\n",
     "p.toml:2:11: readiness.listen: 'localhost:9480' is not IPV4:PORT or [IPV6]:PORT (port 1 to 65535)"},
    {"listen not an array", "[readiness]\nlisten = \"10.0.0.1:9480\"\n",
     "p.toml:2:10: readiness.listen: expected an array of strings, found a string"},
    {"director MAC too short", "[readiness]\ndirector_macs = [\"02:00:00:00:00\"]\n",
     "p.toml:2:18: readiness.director_macs: '02:00:00:00:00' is not a MAC address (like 02:00:00:00:00:02)"},
    {"director MAC too long", "[readiness]\ndirector_macs = [\"02:00:00:00:00:02:\"]\n",
     "p.toml:2:18: readiness.director_macs: '02:00:00:00:00:02:' is not a MAC address (like 02:00:00:00:00:02)"},
    {"director MAC not hex", "[readiness]\ndirector_macs = [\"02:00:00:00:00:0g\"]\n",
     "p.toml:2:18: readiness.director_macs: '02:00:00:00:00:0g' is not a MAC address (like 02:00:00:00:00:02)"},
    {"director MAC with dots", "[readiness]\ndirector_macs = [\"02.00.00.00.00.02\"]\n",
     "p.toml:2:18: readiness.director_macs: '02.00.00.00.00.02' is not a MAC address (like 02:00:00:00:00:02)"},
    {"director MAC in Cisco form", "[readiness]\ndirector_macs = [\"0200.0000.0002\"]\n",
     "p.toml:2:18: readiness.director_macs: '0200.0000.0002' is not a MAC address (like 02:00:00:00:00:02)"},
    {"director MAC of 17 characters misplaced", "[readiness]\ndirector_macs = [\"020:00:00:00:00:2\"]\n",
     "p.toml:2:18: readiness.director_macs: '020:00:00:00:00:2' is not a MAC address (like 02:00:00:00:00:02)"},
    {"metrics VIP limit negative", "[readiness]\nmetrics_vip_limit = -1\n",
     "p.toml:2:21: readiness.metrics_vip_limit: -1 is out of range (0 to 1000000)"},
    {"metrics VIP limit too large", "[readiness]\nmetrics_vip_limit = 1000001\n",
     "p.toml:2:21: readiness.metrics_vip_limit: 1000001 is out of range (0 to 1000000)"},
    {"conntrack percent 0", "[readiness]\nconntrack_warn_percent = 0\n",
     "p.toml:2:26: readiness.conntrack_warn_percent: 0 is out of range (1 to 100)"},
    {"conntrack percent over 100", "[readiness]\nconntrack_warn_percent = 101\n",
     "p.toml:2:26: readiness.conntrack_warn_percent: 101 is out of range (1 to 100)"},

    // ---- bounds, before the TOML parser ----
    {"a key of 9 dotted parts", "a.b.c.d.e.f.g.h.i = 1\n", "p.toml:1:1: key has 9 dotted parts (at most 8)"},
    {"a table header of 9 parts", "[a.b.c.d.e.f.g.h.i]\n", "p.toml:1:1: table header has 9 dotted parts (at most 8)"},
    {"arrays nested 17 deep", "x = " + std::string(17, '[') + std::string(17, ']') + "\n",
     "p.toml:1:21: arrays and inline tables nested 17 deep (at most 16)"},
    {"a line over 64 KiB", "# " + std::string(65535, 'x') + "\n", "p.toml:1:65537: line is longer than 65536 bytes"},
    {"a policy over 16 MiB", std::string(17 << 20, '\n'), "p.toml:0:0: policy is 17 MiB (at most 16 MiB)"},
};

}  // namespace

TEST_CASE("each bad policy input gets its exact located error and no policy") {
  int checked = 0;
  for (const BadInput& bad : kBadInputs) {
    CAPTURE(std::string(bad.name));
    PolicyResult result = parse_policy(bad.text, "p.toml");
    CHECK_FALSE(result.policy.has_value());
    CHECK(lines_of(result.errors) == std::vector<std::string>{bad.message});
    ++checked;
  }
  CHECK(checked > 150);
}

TEST_CASE("a path with a NUL in it is refused, located") {
  const PolicyResult result = parse_policy("[agent]\ncontrol_socket = \"/run/a\\u0000b\"\n", "p.toml");
  CHECK_FALSE(result.policy.has_value());
  CHECK(lines_of(result.errors) ==
        std::vector<std::string>{"p.toml:2:18: agent.control_socket: '/run/a\0b' is not a plain absolute path"s});
}

TEST_CASE("4097 dotted keys are refused at the one past the limit") {
  std::string text;
  for (int i = 0; i < 4097; ++i) text += "k" + std::to_string(i) + ".x = 1\n";
  CHECK(errors_of(text) ==
        std::vector<std::string>{"p.toml:4097:1: more than 4096 dotted keys (a.b = ...); use [table] headers"});
}

TEST_CASE("values just inside every bound parse") {
  std::string dotted4096;
  for (int i = 0; i < 4096; ++i) dotted4096 += "k" + std::to_string(i) + ".x = 1\n";
  // The bounds pass; toml++ then reads the keys, which the policy does not know.
  const std::vector<std::string> errors = errors_of(dotted4096);
  REQUIRE(errors.size() == 4096);
  CHECK(errors[0] == "p.toml:1:1: unknown key 'k0' (expected agent, arp, vip, readiness or watch)");

  CHECK(errors_of("# " + std::string(65534, 'x') + "\n").empty());
  CHECK(errors_of("[agent]\ncontrol_socket = \"" + kPath107 + "\"\n").empty());
  const Policy p = policy_of("[arp]\ninterfaces = [\"averyverylongna\"]\n");
  CHECK(p.arp.interfaces == std::vector<std::string>{"averyverylongna"});
}

TEST_CASE("a TOML syntax error is located where the parser stopped") {
  PolicyResult result = parse_policy("[agent]\non_stop = \"keep\"\n[arp\nmethod = \"both\"\n", "p.toml");
  CHECK_FALSE(result.policy.has_value());
  REQUIRE(result.errors.size() == 1);
  CHECK(result.errors[0].where.line == 3);
  CHECK(result.errors[0].where.column == 5);
  CHECK(result.errors[0].str().rfind("p.toml:3:5: ", 0) == 0);
}

TEST_CASE("a key given twice is a syntax error located at the second") {
  PolicyResult result = parse_policy("[agent]\non_stop = \"keep\"\non_stop = \"remove\"\n", "p.toml");
  CHECK_FALSE(result.policy.has_value());
  REQUIRE(result.errors.size() == 1);
  CHECK(result.errors[0].where.line == 3);
}

TEST_CASE("a wide prefix is found overlapping every VIP inside it, however many sort between") {
  CHECK(errors_of(vip("10.0.0.0/16") + vip("10.0.1.0/24") + vip("10.0.9.9")) ==
        std::vector<std::string>{
            "p.toml:4:11: vip.address: 10.0.1.0/24 overlaps 10.0.0.0/16 (line 2)",
            "p.toml:6:11: vip.address: 10.0.9.9/32 overlaps 10.0.0.0/16 (line 2)",
        });
}

TEST_CASE("three copies of one VIP: both later ones name the first") {
  CHECK(errors_of(vip("10.0.0.5") + vip("10.0.0.5") + vip("10.0.0.5")) ==
        std::vector<std::string>{
            "p.toml:4:11: vip.address: duplicate VIP 10.0.0.5 (first at line 2)",
            "p.toml:6:11: vip.address: duplicate VIP 10.0.0.5 (first at line 2)",
        });
}

TEST_CASE("a duplicate prefix VIP is named with its length") {
  // A repeated prefix is named with its length, not as its first address.
  CHECK(errors_of(vip("10.100.0.0/24") + vip("10.100.0.0/24")) ==
        std::vector<std::string>{"p.toml:4:11: vip.address: duplicate VIP 10.100.0.0/24 (first at line 2)"});
}

TEST_CASE("a VIP whose address is refused is not named as 0.0.0.0/32 in its other errors") {
  // Once the address is refused, no follow-on error names a VIP (0.0.0.0/32)
  // that is in no policy.
  for (const std::string& text : {vip("nope", "method = \"redirect\"\ndevice = \"lo\"\n"),
                                   vip("10.0.0.5/24", "ports = [\"tcp:80\"]\n"),
                                   vip("10.0.0.5/24", "as = \"address\"\n")}) {
    CAPTURE(text);
    for (const std::string& error : errors_of(text)) {
      CAPTURE(error);
      CHECK(error.find("0.0.0.0/32") == std::string::npos);
    }
  }
}

TEST_CASE("the broadcast address is no usable ARP sender for real_ip") {
  // The limited broadcast address is no interface's ARP sender.
  CHECK(errors_of("[arp.real_ip]\neth0 = \"255.255.255.255\"\n") ==
        std::vector<std::string>{"p.toml:2:8: arp.real_ip.eth0: '255.255.255.255' is not a usable IPv4 address"});
}

TEST_CASE("an IPv4 VIP and an IPv6 VIP of the same value never overlap") {
  const Policy p = policy_of(vip("10.0.0.0/8") + vip("::a00:0/104") + vip("192.0.2.1") + vip("::c000:201"));
  REQUIRE(p.vips.size() == 4);
  CHECK(p.vips[0].prefix.str() == "10.0.0.0/8");
  CHECK(p.vips[1].prefix.str() == "192.0.2.1/32");
  CHECK(p.vips[2].prefix == IpPrefix{ip("::a00:0"), 104});
  CHECK(p.vips[3].prefix == IpPrefix::host(ip("::c000:201")));
}

TEST_CASE("a prefix that holds the IPv4 link-local range is refused, wherever the range falls in it") {
  // Every unusable range inside a prefix counts, not only those at its ends:
  // 169.254.0.0/16 sits in the middle of 169.252.0.0/14 and of 160.0.0.0/3.
  for (const char* text : {"169.252.0.0/14", "168.0.0.0/6", "160.0.0.0/3"}) {
    CAPTURE(std::string(text));
    const PolicyResult result = parse_policy(vip(text), "p.toml");
    CHECK_FALSE(result.policy.has_value());
    CHECK(result.errors.size() == 1);
    for (const Diagnostic& d : result.errors) {
      CHECK(d.str().rfind(std::string("p.toml:2:11: vip.address: ") + text + " ", 0) == 0);
    }
  }
}

TEST_CASE("a prefix that holds the IPv6 link-local range fe80::/10 is refused") {
  // As above: fe00::/8 runs from fe00:: to feff:ffff:..., neither end link-local.
  const PolicyResult result = parse_policy(vip("fe00::/8"), "p.toml");
  CHECK_FALSE(result.policy.has_value());
  REQUIRE(result.errors.size() == 1);
  CHECK(result.errors[0].str().rfind("p.toml:2:11: vip.address: fe00::/8 ", 0) == 0);
}

TEST_CASE("an empty policy is valid: the defaults, no VIPs, no warnings") {
  const PolicyResult result = parse_policy("", "p.toml");
  REQUIRE(result.policy.has_value());
  CHECK(result.warnings.empty());
  const Policy& p = *result.policy;
  CHECK(p.file == "p.toml");
  CHECK(p.vips.empty());
  CHECK(p.agent.control_socket == "/run/arpguard/arpguard.sock");
  CHECK(p.agent.sysctl_poll_ms == 1000);
  CHECK(p.agent.on_stop == OnStop::kKeep);
  CHECK(p.agent.state_dir == "/run/arpguard");
  CHECK(p.agent.own_nft_table);
  CHECK(p.agent.contested_repairs == 5);
  CHECK(p.agent.contested_window_ms == 10000);
  CHECK(p.agent.check_interval_ms == 2000);
  CHECK(p.agent.audit_interval_ms == 300000);
  CHECK(p.agent.event_buffer_kb == 32768);
  CHECK(p.arp.method == Method::kBoth);
  CHECK(p.arp.all_interfaces());
  CHECK(p.arp.arp_ignore == 1);
  CHECK(p.arp.arp_announce == 2);
  CHECK_FALSE(p.arp.arp_filter);
  CHECK_FALSE(p.arp.source_routing);
  CHECK(p.arp.real_ip.empty());
  CHECK(p.readiness.listen.empty());
  CHECK(p.readiness.agent_check_listen.empty());
  CHECK(p.readiness.director_macs.empty());
  CHECK(p.readiness.metrics_vip_limit == 1000);
  CHECK(p.readiness.conntrack_warn_percent == 90);
}

TEST_CASE("the design's example policy, with the keys this implementation has, parses to what it says") {
  // DESIGN.md section 4, its one VIP split in two: a bound VIP (device, as,
  // check) and a redirected one (method, ports), since a redirected VIP takes
  // no device or as here.
  const char* text = R"(# /etc/arpguard/policy.toml
[agent]
control_socket = "/run/arpguard/arpguard.sock"   # default
sysctl_poll_ms = 1000                            # default
on_stop = "keep"                                 # "keep" (default) | "remove"

[arp]
method = "both"            # "sysctl" | "nftables" | "both" (default) | "redirect"
interfaces = ["*"]         # ARP-facing interfaces: names or globs; "*" = all but lo,
                           # written as conf/all; named ones as per-interface keys
arp_ignore = 1             # allowed 1, 2, 3, 8 (0 would not protect)
arp_announce = 2           # allowed 1, 2
arp_filter = false         # true against ARP flux on hosts with several NICs
source_routing = false     # true: per-interface rule + table, which arp_filter needs
                           # when several NICs share a subnet

[[vip]]
address = "192.168.76.24"  # /32 (or /128) implied; "10.100.0.0/24" = prefix VIP
device = "lo"              # default "lo"
as = "address"             # "address" (default) | "route" (local route; for many VIPs)
check = "tcp:80"           # optional local service check

[[vip]]
address = "192.168.76.25"
method = "redirect"        # optional per-VIP override of arp.method
ports = ["tcp:80", "tcp:8080->18080"]  # redirect only; default every TCP and UDP port

[[vip]]
address = "10.100.0.0/24"

[readiness]
listen = ["192.168.76.11:9480"]          # HTTP: /ready, /ready/VIP, /status, /metrics
agent_check_listen = ["192.168.76.11:9777"]  # HAProxy agent-check protocol
director_macs = ["02:00:00:00:00:02"]    # optional: who may claim a VIP on the wire
)";
  const PolicyResult result = parse_policy(text, "p.toml");
  CHECK(lines_of(result.errors) == std::vector<std::string>{});
  CHECK(lines_of(result.warnings) == std::vector<std::string>{});
  REQUIRE(result.policy.has_value());
  const Policy& p = *result.policy;
  CHECK(p.agent.control_socket == "/run/arpguard/arpguard.sock");
  CHECK(p.agent.sysctl_poll_ms == 1000);
  CHECK(p.agent.on_stop == OnStop::kKeep);
  CHECK(p.arp.method == Method::kBoth);
  CHECK(p.arp.interfaces == std::vector<std::string>{"*"});
  CHECK(p.arp.arp_ignore == 1);
  CHECK(p.arp.arp_announce == 2);
  CHECK_FALSE(p.arp.arp_filter);
  CHECK_FALSE(p.arp.source_routing);

  REQUIRE(p.vips.size() == 3);
  const VipPolicy& route = p.vips[0];
  CHECK(route.prefix.str() == "10.100.0.0/24");
  CHECK(route.kind == VipKind::kRoute);
  CHECK(route.device == "lo");
  CHECK(route.method == Method::kBoth);
  CHECK(route.where.line == 29);
  CHECK(route.where.column == 11);

  const VipPolicy& bound = p.vips[1];
  CHECK(bound.prefix.str() == "192.168.76.24/32");
  CHECK(bound.kind == VipKind::kAddress);
  CHECK(bound.device == "lo");
  CHECK(bound.method == Method::kBoth);
  CHECK(bound.check_port == 80);
  CHECK(bound.ports.empty());
  CHECK(bound.where.line == 18);

  const VipPolicy& redirected = p.vips[2];
  CHECK(redirected.prefix.str() == "192.168.76.25/32");
  CHECK(redirected.method == Method::kRedirect);
  CHECK(redirected.check_port == 0);
  std::vector<std::string> ports;
  for (const PortMapping& m : redirected.ports) ports.push_back(m.str());
  CHECK(ports == std::vector<std::string>{"tcp:80", "tcp:8080->18080"});
  REQUIRE(redirected.ports.size() == 2);
  CHECK(redirected.ports[1].protocol == kProtoTcp);
  CHECK(redirected.ports[1].first == 8080);
  CHECK(redirected.ports[1].last == 8080);
  CHECK(redirected.ports[1].to == uint16_t{18080});

  REQUIRE(p.readiness.listen.size() == 1);
  CHECK(p.readiness.listen[0].str() == "192.168.76.11:9480");
  REQUIRE(p.readiness.agent_check_listen.size() == 1);
  CHECK(p.readiness.agent_check_listen[0].address == ip("192.168.76.11"));
  CHECK(p.readiness.agent_check_listen[0].port == 9777);
  CHECK(p.readiness.director_macs == std::vector<std::string>{"02:00:00:00:00:02"});
}

TEST_CASE("the design's example VIP verbatim is refused: a redirected VIP takes no as or device") {
  // DESIGN.md section 4 gives one [[vip]] with device, as, method = "redirect",
  // ports and check together; this implementation refuses as/device there.
  const char* text = R"([[vip]]
address = "192.168.76.24"  # /32 (or /128) implied; "10.100.0.0/24" = prefix VIP
device = "lo"              # default "lo"
as = "address"             # "address" (default) | "route" (local route; for many VIPs)
method = "redirect"        # optional per-VIP override of arp.method
ports = ["tcp:80", "tcp:8080->18080"]  # redirect only; default every TCP and UDP port
check = "tcp:80"           # optional local service check
)";
  CHECK(errors_of(text) == std::vector<std::string>{
                               "p.toml:4:6: vip.as: 192.168.76.24/32 uses method \"redirect\", which never configures "
                               "the VIP (remove this key, or choose another method)"});
}

TEST_CASE("VIPs come back sorted by address, IPv4 before IPv6, each remembering its line") {
  const Policy p = policy_of(vip("2001:db8::5") + vip("10.0.0.9") + vip("::a00:1") + vip("10.0.0.0/29") +
                             vip("2001:db8:1::/64") + vip("9.255.255.255"));
  std::vector<std::string> order;
  std::vector<int> lines;
  for (const VipPolicy& v : p.vips) {
    order.push_back(v.prefix.str());
    lines.push_back(v.where.line);
  }
  CHECK(order == std::vector<std::string>{"9.255.255.255/32", "10.0.0.0/29", "10.0.0.9/32", "::10.0.0.1/128",
                                          "2001:db8::5/128", "2001:db8:1::/64"});
  CHECK(lines == std::vector<int>{12, 8, 4, 6, 2, 10});
}

TEST_CASE("vip_containing finds the VIP whose prefix holds an address, and nothing outside every VIP") {
  const Policy p = policy_of(vip("10.100.0.0/24") + vip("10.0.0.5") + vip("2001:db8::/64") + vip("10.200.0.0/16"));
  struct Case {
    const char* address;
    const char* vip;  ///< nullptr: none
  };
  const Case cases[] = {
      {"10.100.0.77", "10.100.0.0/24"},
      {"10.100.0.0", "10.100.0.0/24"},
      {"10.100.0.255", "10.100.0.0/24"},
      {"10.100.1.0", nullptr},
      {"10.99.255.255", nullptr},
      {"10.0.0.5", "10.0.0.5/32"},
      {"10.0.0.6", nullptr},
      {"10.0.0.4", nullptr},
      {"1.1.1.1", nullptr},  // before every VIP
      {"10.200.255.255", "10.200.0.0/16"},
      {"200.0.0.1", nullptr},  // after every IPv4 VIP
      {"::a64:4d", nullptr},   // 10.100.0.77's value, in IPv6
      {"2001:db8::ffff", "2001:db8::/64"},
      {"2001:db8:0:1::", nullptr},
  };
  for (const Case& c : cases) {
    CAPTURE(std::string(c.address));
    const VipPolicy* found = p.vip_containing(ip(c.address));
    if (c.vip == nullptr) {
      CHECK(found == nullptr);
    } else {
      REQUIRE(found != nullptr);
      CHECK(found->prefix.str() == c.vip);
    }
  }
  CHECK(policy_of("").vip_containing(ip("10.0.0.5")) == nullptr);
}

TEST_CASE("every error in a file is reported at once, in file order") {
  // The root table iterates in key order (agent, arp, readiness, vip): the report is sorted back.
  CHECK(errors_of("[arp]\narp_ignore = 0\n[[vip]]\naddress = \"nope\"\n[readiness]\nlisten = [\"x\"]\n"
                  "[agent]\nsysctl_poll_ms = 1\ncolour = 1\n") ==
        std::vector<std::string>{
            "p.toml:2:14: arp.arp_ignore: 0 would not protect VIPs (allowed: 1, 2, 3, 8)",
            "p.toml:4:11: vip.address: 'nope' is not an IP address or prefix",
            "p.toml:6:11: readiness.listen: 'x' is not IPV4:PORT or [IPV6]:PORT (port 1 to 65535)",
            "p.toml:8:18: agent.sysctl_poll_ms: 1 is out of range (50 to 60000)",
            "p.toml:9:1: unknown key 'agent.colour'",
        });
}

TEST_CASE("a VIP takes arp.method, even when [arp] comes after it; its own method overrides it") {
  const Policy p = policy_of(vip("10.0.0.5") + vip("10.0.0.6", "method = \"redirect\"\n") +
                             vip("10.0.0.7", "method = \"both\"\n") + "[arp]\nmethod = \"sysctl\"\n");
  REQUIRE(p.vips.size() == 3);
  CHECK(p.arp.method == Method::kSysctl);
  CHECK(p.vips[0].method == Method::kSysctl);
  CHECK(p.vips[1].method == Method::kRedirect);
  CHECK(p.vips[2].method == Method::kBoth);
}

TEST_CASE("as = \"route\" makes a single address a local route; a prefix is a route without saying so") {
  const Policy p = policy_of(vip("10.0.0.5", "as = \"route\"\n") + vip("10.0.0.6", "as = \"address\"\n") +
                             vip("10.100.0.0/24", "as = \"route\"\n") + vip("2001:db8::/120"));
  REQUIRE(p.vips.size() == 4);
  CHECK(p.vips[0].kind == VipKind::kRoute);
  CHECK(p.vips[1].kind == VipKind::kAddress);
  CHECK(p.vips[2].kind == VipKind::kRoute);
  CHECK(p.vips[3].kind == VipKind::kRoute);
}

TEST_CASE("a VIP on another device with method both is valid, with a located warning") {
  const PolicyResult result = parse_policy(vip("10.0.0.5", "device = \"dummy0\"\n"), "p.toml");
  REQUIRE(result.policy.has_value());
  CHECK(result.errors.empty());
  CHECK(lines_of(result.warnings) ==
        std::vector<std::string>{"p.toml:3:10: vip.device: 10.0.0.5/32 on dummy0 is protected by the nftables layer "
                                 "alone (sysctls do not hide an address on the interface asked); lo is safer"});
  CHECK(result.policy->vips[0].device == "dummy0");
}

TEST_CASE("source routing without arp_filter is valid, with a located warning") {
  const PolicyResult result = parse_policy("[arp]\nsource_routing = true\n", "p.toml");
  REQUIRE(result.policy.has_value());
  CHECK(lines_of(result.warnings) ==
        std::vector<std::string>{"p.toml:2:18: arp.source_routing: without arp.arp_filter = true the routing tables "
                                 "change nothing ARP does"});
  CHECK(parse_policy("[arp]\nsource_routing = true\narp_filter = true\n", "p.toml").warnings.empty());
}

TEST_CASE("a VIP on another device with method nftables is valid without a warning") {
  const PolicyResult result = parse_policy(vip("10.0.0.5", "device = \"dummy0\"\nmethod = \"nftables\"\n"), "p.toml");
  REQUIRE(result.policy.has_value());
  CHECK(result.warnings.empty());
  CHECK(result.policy->vips[0].device == "dummy0");
  CHECK(result.policy->vips[0].method == Method::kNftables);
}

TEST_CASE("warnings are not returned as errors, and errors elsewhere do not hide them") {
  const PolicyResult result =
      parse_policy(vip("10.0.0.5", "device = \"dummy0\"\n") + "[agent]\nsysctl_poll_ms = 1\n", "p.toml");
  CHECK_FALSE(result.policy.has_value());
  CHECK(lines_of(result.errors) ==
        std::vector<std::string>{"p.toml:5:18: agent.sysctl_poll_ms: 1 is out of range (50 to 60000)"});
  CHECK(result.warnings.size() == 1);
}

TEST_CASE("ports of a redirected VIP: protocols, ranges and targets, sorted") {
  const Policy p = policy_of(vip("10.0.0.5", "method = \"redirect\"\n"
                                             "ports = [\"udp:53\", \"tcp:1000-1010->3000\", \"tcp:53\", \"tcp:65535\"]\n"));
  REQUIRE(p.vips.size() == 1);
  std::vector<std::string> ports;
  for (const PortMapping& m : p.vips[0].ports) ports.push_back(m.str());
  CHECK(ports == std::vector<std::string>{"tcp:53", "tcp:1000-1010->3000", "tcp:65535", "udp:53"});
  const PortMapping& range = p.vips[0].ports[1];
  CHECK(range.first == 1000);
  CHECK(range.last == 1010);
  CHECK(range.to == uint16_t{3000});
  CHECK(p.vips[0].ports[3].protocol == kProtoUdp);
}

TEST_CASE("a redirected VIP without ports redirects every port; 64 entries are allowed") {
  CHECK(policy_of(vip("10.0.0.5", "method = \"redirect\"\n")).vips[0].ports.empty());
  CHECK(policy_of(vip("10.0.0.5", "method = \"redirect\"\nports = " + ports_array(64) + "\n")).vips[0].ports.size() ==
        64);
}

TEST_CASE("a service check is tcp:PORT and gives the port") {
  CHECK(policy_of(vip("10.0.0.5", "check = \"tcp:80\"\n")).vips[0].check_port == 80);
  CHECK(policy_of(vip("10.0.0.5", "check = \"tcp:65535\"\n")).vips[0].check_port == 65535);
  CHECK(policy_of(vip("10.0.0.5")).vips[0].check_port == 0);
}

TEST_CASE("agent values at the edges of their ranges are taken") {
  const Policy p = policy_of(
      "[agent]\naudit_interval_ms = 0\nevent_buffer_kb = 64\nsysctl_poll_ms = 50\non_stop = \"remove\"\n"
      "own_nft_table = false\nstate_dir = \"/var/lib/arpguard\"\ncontested_repairs = 1\ncontested_window_ms = 100\n"
      "check_interval_ms = 600000\n");
  CHECK(p.agent.audit_interval_ms == 0);
  CHECK(p.agent.event_buffer_kb == 64);
  CHECK(p.agent.sysctl_poll_ms == 50);
  CHECK(p.agent.on_stop == OnStop::kRemove);
  CHECK_FALSE(p.agent.own_nft_table);
  CHECK(p.agent.state_dir == "/var/lib/arpguard");
  CHECK(p.agent.contested_repairs == 1);
  CHECK(p.agent.contested_window_ms == 100);
  CHECK(p.agent.check_interval_ms == 600000);
  CHECK(policy_of("[agent]\naudit_interval_ms = 1000\n").agent.audit_interval_ms == 1000);
  CHECK(policy_of("[agent]\naudit_interval_ms = 86400000\n").agent.audit_interval_ms == 86400000);
  CHECK(policy_of("[agent]\nevent_buffer_kb = 1048576\n").agent.event_buffer_kb == 1048576);
}

TEST_CASE("readiness values: endpoints of both families, MACs normalized, limits at their edges") {
  const Policy p = policy_of(
      "[readiness]\nlisten = [\"192.0.2.1:9480\", \"[2001:db8::1]:9480\", \"0.0.0.0:1\", \"[::]:65535\"]\n"
      "director_macs = [\"02:00:00:00:00:02\", \"02-AB-cd-EF-00-0F\", \"aa:bb:cc:dd:ee:ff\"]\n"
      "metrics_vip_limit = 0\nconntrack_warn_percent = 100\n");
  std::vector<std::string> listen;
  for (const Endpoint& e : p.readiness.listen) listen.push_back(e.str());
  CHECK(listen == std::vector<std::string>{"192.0.2.1:9480", "[2001:db8::1]:9480", "0.0.0.0:1", "[::]:65535"});
  CHECK(p.readiness.listen[1].address.family == Family::kV6);
  CHECK(p.readiness.director_macs ==
        std::vector<std::string>{"02:00:00:00:00:02", "02:ab:cd:ef:00:0f", "aa:bb:cc:dd:ee:ff"});
  CHECK(p.readiness.metrics_vip_limit == 0);
  CHECK(p.readiness.conntrack_warn_percent == 100);
  CHECK(policy_of("[readiness]\nmetrics_vip_limit = 1000000\nconntrack_warn_percent = 1\n").readiness.metrics_vip_limit ==
        1000000);
}

TEST_CASE("arp values: interfaces and globs, source routing, real IPs") {
  const Policy p = policy_of(
      "[arp]\ninterfaces = [\"eth*\", \"bond0\", \"en[a-z]?\"]\narp_ignore = 8\narp_announce = 1\narp_filter = true\n"
      "source_routing = true\nmethod = \"nftables\"\nreal_ip = { eth0 = \"192.168.76.11\" }\n");
  CHECK(p.arp.interfaces == std::vector<std::string>{"eth*", "bond0", "en[a-z]?"});
  CHECK_FALSE(p.arp.all_interfaces());
  CHECK(p.arp.arp_ignore == 8);
  CHECK(p.arp.arp_announce == 1);
  CHECK(p.arp.arp_filter);
  CHECK(p.arp.source_routing);
  CHECK(p.arp.method == Method::kNftables);
  REQUIRE(p.arp.real_ip.count("eth0") == 1);
  CHECK(p.arp.real_ip.at("eth0") == ip("192.168.76.11"));
}

TEST_CASE("diagnostics and values print as the messages and logs show them") {
  CHECK((Diagnostic{"/etc/arpguard/policy.toml", {7, 14}, "arp.arp_ignore: bad"}).str() ==
        "/etc/arpguard/policy.toml:7:14: arp.arp_ignore: bad");
  CHECK(to_string(Method::kSysctl) == "sysctl");
  CHECK(to_string(Method::kNftables) == "nftables");
  CHECK(to_string(Method::kBoth) == "both");
  CHECK(to_string(Method::kRedirect) == "redirect");
  CHECK(to_string(OnStop::kKeep) == "keep");
  CHECK(to_string(OnStop::kRemove) == "remove");
  CHECK(to_string(VipKind::kAddress) == "address");
  CHECK(to_string(VipKind::kRoute) == "route");
  CHECK((PortMapping{kProtoUdp, 53, 53, std::nullopt}).str() == "udp:53");
  CHECK((PortMapping{kProtoTcp, 1000, 2000, 3000}).str() == "tcp:1000-2000->3000");
  CHECK((Endpoint{ip("2001:db8::1"), 80}).str() == "[2001:db8::1]:80");
  CHECK((Endpoint{ip("192.0.2.1"), 80}).str() == "192.0.2.1:80");
  CHECK(uses_sysctls(Method::kBoth));
  CHECK_FALSE(uses_sysctls(Method::kNftables));
  CHECK(uses_nftables(Method::kBoth));
  CHECK_FALSE(uses_nftables(Method::kRedirect));
  CHECK_FALSE(is_bound(Method::kRedirect));
  CHECK(is_bound(Method::kSysctl));
}
