// Diff as tables: (policy, what the kernel holds) -> the exact plan; then the
// stories a table cannot tell in one row: policies that shrink over two
// plans (I8), ownership of tables, scoped diffs at scale, and a property
// test of scoped against full diffs under random drift.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <random>
#include <set>

#include "core/diff.h"
#include "core/observed_delta.h"
#include "core/readiness.h"
#include "rules/expr.h"
#include "rules/tables.h"
#include "world.h"

using namespace arpguard;
using namespace arpguard::world;

namespace {

// ---- the lines every table plan is made of ----

const Lines kSysctls = {"set net.ipv4.conf.all.arp_ignore 0 -> 1", "set net.ipv4.conf.all.arp_announce 0 -> 2"};

const std::string kArpInput =
    "nft add rule arp arpguard input: arp operation request arp daddr ip @vips counter packets 0 bytes 0 drop";
const std::string kArpEth0 =
    "nft add rule arp arpguard output: oifname \"eth0\" arp saddr ip @vips counter packets 0 bytes 0 arp saddr ip set "
    "192.0.2.1";

Lines arp_table(const std::string& elements, const std::string& create = "nft create table arp arpguard (owner, persist)") {
  return {create,
          "nft create set vips in arp arpguard",
          "nft create chain input in arp arpguard",
          "nft create chain output in arp arpguard",
          "nft add " + elements,
          kArpInput,
          kArpEth0};
}

const std::string kNdpFromVip =
    "nft add rule ip6 arpguard output: icmpv6 type nd-neighbor-solicit ip6 saddr @vips counter packets 0 bytes 0 drop";

Lines ndp_table(const std::string& elements) {
  return {"nft create table ip6 arpguard (owner, persist)",
          "nft create set vips in ip6 arpguard",
          "nft create chain input in ip6 arpguard",
          "nft create chain output in ip6 arpguard",
          "nft add " + elements,
          "nft add rule ip6 arpguard input: icmpv6 type nd-neighbor-solicit @th,64,128 @vips counter packets 0 bytes 0 "
          "drop",
          "nft add rule ip6 arpguard output: icmpv6 type nd-neighbor-advert @th,64,128 @vips counter packets 0 bytes 0 "
          "drop",
          kNdpFromVip};
}

// `family` "ip" or "ip6"; `elements`: the element lines, keep then to.
Lines nat_table(const std::string& family, const Lines& elements) {
  const std::string table = family + " arpguard_nat";
  Lines out{"nft create table " + table + " (owner, persist)", "nft create set keep in " + table,
            "nft create map to in " + table, "nft create chain prerouting in " + table};
  for (const std::string& e : elements) out.push_back("nft add " + e);
  out.push_back("nft add rule " + table + " prerouting: " + family +
                " daddr . meta l4proto . th dport @keep counter packets 0 bytes 0 redirect");
  for (const char* proto : {"tcp", "udp"}) {
    out.push_back("nft add rule " + table + " prerouting: meta l4proto " + proto +
                  " counter packets 0 bytes 0 redirect to :" + family + " daddr . meta l4proto . " + proto +
                  " dport map @to");
  }
  return out;
}

// The fresh and drift tables are about suppression and its order: without
// the wire watch's log rules (their own cases follow).
const std::string kNoWatch = "[watch]\nenabled = false\n";

std::string watch_rule(const std::string& table, const std::string& chain, const std::string& match,
                       const std::string& prefix, int rate) {
  return fmt::format("nft add rule {} {}: {} limit rate {}/second burst {} packets log prefix \"arpguard {}\" group 4247",
                     table, chain, match, rate, rate, prefix);
}

// The arp table with the watch: `elements` are its "nft add ..." element lines.
Lines watched_arp_table(const Lines& elements) {
  const std::string t = "arp arpguard";
  Lines out{"nft create table arp arpguard (owner, persist)", "nft create set vips in arp arpguard",
            "nft create set watched in arp arpguard", "nft create chain input in arp arpguard",
            "nft create chain output in arp arpguard"};
  for (const std::string& e : elements) out.push_back("nft add " + e);
  for (const char* set : {"vips", "watched"}) out.push_back(watch_rule(t, "input", fmt::format("arp saddr ip @{}", set), "claim", 100));
  for (const char* set : {"vips", "watched"}) {
    out.push_back(watch_rule(t, "input", fmt::format("arp operation request arp daddr ip @{}", set), "ask", 20));
  }
  out.push_back(kArpInput);
  out.push_back(kArpEth0);
  for (const char* set : {"vips", "watched"}) out.push_back(watch_rule(t, "output", fmt::format("arp saddr ip @{}", set), "leak", 100));
  return out;
}

const std::string kOneVip = vip("192.0.2.10");
const std::string kOneV6Vip = vip("2001:db8::10");
const std::string kRedirect = vip("192.0.2.30", "method = \"redirect\"\n");

ObservedTable& arp_table_of(Observed& o) { return o.tables.at(rules::arp_table_id()); }

// The handle of the rule of `chain` in the arp table (the first one).
uint64_t rule_handle(Observed& o, const std::string& chain) {
  for (const auto& [handle, rule] : arp_table_of(o).rules) {
    if (rule.chain == chain) return handle;
  }
  FAIL("no rule in chain " << chain);
  return 0;
}

struct Case {
  std::string story;
  std::string policy;
  std::function<void(Observed&)> given;  ///< from a fresh machine; nullptr: the fresh machine itself
  Lines plan;
  bool daemon = false;
};

// ---- fresh machines ----

const std::vector<Case> kFresh = {
    {"method both: sysctls, then the table holding the VIP, then the VIP (I1)", kOneVip, nullptr,
     cat(kSysctls, arp_table("1 element(s) to arp arpguard @vips: 192.0.2.10"), Lines{"add vip 192.0.2.10/32 dev lo"})},
    {"method sysctl with arp_filter: three sysctls, no table",
     "[arp]\nmethod = \"sysctl\"\narp_filter = true\n" + kOneVip, nullptr,
     cat(kSysctls, Lines{"set net.ipv4.conf.all.arp_filter 0 -> 1", "add vip 192.0.2.10/32 dev lo"})},
    {"method nftables: the table, no sysctl", "[arp]\nmethod = \"nftables\"\n" + kOneVip, nullptr,
     cat(arp_table("1 element(s) to arp arpguard @vips: 192.0.2.10"), Lines{"add vip 192.0.2.10/32 dev lo"})},
    {"named ARP-facing interfaces get their own keys, not conf/all", "[arp]\ninterfaces = [\"eth*\"]\n" + kOneVip,
     nullptr,
     cat(Lines{"set net.ipv4.conf.eth0.arp_ignore 0 -> 1", "set net.ipv4.conf.eth0.arp_announce 0 -> 2"},
         arp_table("1 element(s) to arp arpguard @vips: 192.0.2.10"), Lines{"add vip 192.0.2.10/32 dev lo"})},
    {"arp_ignore 3 puts IPv4 VIPs at scope host", "[arp]\nmethod = \"sysctl\"\narp_ignore = 3\n" + kOneVip, nullptr,
     {"set net.ipv4.conf.all.arp_ignore 0 -> 3", "set net.ipv4.conf.all.arp_announce 0 -> 2",
      "add vip 192.0.2.10/32 dev lo scope host"}},
    {"an IPv6 VIP: the ip6 table with NDP rules, no sysctls, deprecated on lo", kOneV6Vip, nullptr,
     cat(ndp_table("1 element(s) to ip6 arpguard @vips: 2001:db8::10"),
         Lines{"add vip 2001:db8::10/128 dev lo nodad preferred_lft 0"})},
    {"an IPv6 VIP of method sysctl: no sysctl and no table is about IPv6", "[arp]\nmethod = \"sysctl\"\n" + kOneV6Vip,
     nullptr, {"add vip 2001:db8::10/128 dev lo nodad preferred_lft 0"}},
    {"a prefix VIP is a local route and one interval element", vip("10.100.0.0/24"), nullptr,
     cat(kSysctls, arp_table("1 element(s) to arp arpguard @vips: 10.100.0.0/24"),
         Lines{"add route local 10.100.0.0/24 dev lo table local"})},
    {"a single address as = \"route\"", vip("192.0.2.40", "as = \"route\"\n"), nullptr,
     cat(kSysctls, arp_table("1 element(s) to arp arpguard @vips: 192.0.2.40"),
         Lines{"add route local 192.0.2.40/32 dev lo table local"})},
    {"an IPv6 prefix VIP: a local route, the ip6 table", vip("2001:db8:1::/64"), nullptr,
     cat(ndp_table("1 element(s) to ip6 arpguard @vips: 2001:db8:1::/64"),
         Lines{"add route local 2001:db8:1::/64 dev lo table local"})},
    {"adjacent VIPs merge into one interval element each run",
     vip("192.0.2.11") + vip("192.0.2.10") + vip("192.0.2.20") + vip("192.0.2.21") + vip("192.0.2.22"), nullptr,
     cat(kSysctls, arp_table("2 element(s) to arp arpguard @vips: 192.0.2.10/31, 192.0.2.20-192.0.2.22"),
         Lines{"add vip 192.0.2.10/32 dev lo", "add vip 192.0.2.11/32 dev lo", "add vip 192.0.2.20/32 dev lo",
               "add vip 192.0.2.21/32 dev lo", "add vip 192.0.2.22/32 dev lo"})},
    {"a redirected VIP: the NAT table only, nothing configured", kRedirect, nullptr,
     nat_table("ip", {"2 element(s) to ip arpguard_nat @keep: 192.0.2.30 . tcp . 0-65535, 192.0.2.30 . udp . 0-65535"})},
    {"mixed IPv4, IPv6, route and redirect: one plan, tables in order, VIPs last",
     kOneVip + kOneV6Vip + vip("10.100.0.0/24") +
         vip("192.0.2.30", "method = \"redirect\"\nports = [\"tcp:80\", \"tcp:8080->18080\"]\n") +
         vip("2001:db8::30", "method = \"redirect\"\n"),
     nullptr,
     cat(kSysctls, arp_table("2 element(s) to arp arpguard @vips: 10.100.0.0/24, 192.0.2.10"),
         ndp_table("1 element(s) to ip6 arpguard @vips: 2001:db8::10"),
         nat_table("ip", {"1 element(s) to ip arpguard_nat @keep: 192.0.2.30 . tcp . 80",
                          "1 element(s) to ip arpguard_nat @to: 192.0.2.30 . tcp . 8080 : 18080"}),
         nat_table("ip6", {"2 element(s) to ip6 arpguard_nat @keep: 2001:db8::30 . tcp . 0-65535, 2001:db8::30 . udp . "
                           "0-65535"}),
         Lines{"add route local 10.100.0.0/24 dev lo table local", "add vip 192.0.2.10/32 dev lo",
               "add vip 2001:db8::10/128 dev lo nodad preferred_lft 0"})},
    {"own_nft_table = false: a plain table, even for the daemon", "[agent]\nown_nft_table = false\n" + kOneVip, nullptr,
     cat(kSysctls, arp_table("1 element(s) to arp arpguard @vips: 192.0.2.10", "nft create table arp arpguard"),
         Lines{"add vip 192.0.2.10/32 dev lo"}),
     true},
    {"a kernel without PERSIST gets a plain table, never OWNER alone", kOneVip,
     [](Observed& o) { o.persist_supported = false; },
     cat(kSysctls, arp_table("1 element(s) to arp arpguard @vips: 192.0.2.10", "nft create table arp arpguard"),
         Lines{"add vip 192.0.2.10/32 dev lo"}),
     true},
    {"a policy without VIPs changes nothing", "", nullptr, {}},
    {"a VIP whose device does not exist: its suppression, not the VIP",
     "[arp]\nmethod = \"nftables\"\n" + vip("192.0.2.10", "device = \"dummy0\"\n"), nullptr,
     arp_table("1 element(s) to arp arpguard @vips: 192.0.2.10")},
    {"a foreign local route equal to a route VIP makes it present: no route added", vip("10.100.0.0/24"),
     [](Observed& o) { o.local_routes[RouteKey{prefix("10.100.0.0/24"), 0}] = RouteInfo{kLo, 3, kScopeHost}; },
     cat(kSysctls, arp_table("1 element(s) to arp arpguard @vips: 10.100.0.0/24"))},
};

// ---- the wire watch, and source routing (policies as written) ----

const std::vector<Case> kWatched = {
    {"method both: the log rules around the drop, the VIP in @vips, @watched empty", kOneVip, nullptr,
     cat(kSysctls, watched_arp_table({"1 element(s) to arp arpguard @vips: 192.0.2.10"}),
         Lines{"add vip 192.0.2.10/32 dev lo"})},
    {"method sysctl: a table with log rules only in effect, the VIP in @watched", "[arp]\nmethod = \"sysctl\"\n" + kOneVip,
     nullptr,
     cat(kSysctls, watched_arp_table({"1 element(s) to arp arpguard @watched: 192.0.2.10"}),
         Lines{"add vip 192.0.2.10/32 dev lo"})},
    {"a redirected VIP is watched too: nobody but the director may claim it", kOneVip + kRedirect, nullptr,
     cat(kSysctls,
         watched_arp_table({"1 element(s) to arp arpguard @vips: 192.0.2.10", "1 element(s) to arp arpguard @watched: 192.0.2.30"}),
         nat_table("ip", {"2 element(s) to ip arpguard_nat @keep: 192.0.2.30 . tcp . 0-65535, 192.0.2.30 . udp . 0-65535"}),
         Lines{"add vip 192.0.2.10/32 dev lo"})},
    {"an IPv6 VIP: solicitations and advertisements logged before the drops; only @watched can leak",
     kOneV6Vip, nullptr,
     Lines{"nft create table ip6 arpguard (owner, persist)", "nft create set vips in ip6 arpguard",
           "nft create set watched in ip6 arpguard", "nft create chain input in ip6 arpguard",
           "nft create chain output in ip6 arpguard", "nft add 1 element(s) to ip6 arpguard @vips: 2001:db8::10",
           watch_rule("ip6 arpguard", "input", "icmpv6 type nd-neighbor-advert @th,64,128 @vips", "claim", 100),
           watch_rule("ip6 arpguard", "input", "icmpv6 type nd-neighbor-advert @th,64,128 @watched", "claim", 100),
           watch_rule("ip6 arpguard", "input", "icmpv6 type nd-neighbor-solicit @th,64,128 @vips", "ask", 20),
           watch_rule("ip6 arpguard", "input", "icmpv6 type nd-neighbor-solicit @th,64,128 @watched", "ask", 20),
           "nft add rule ip6 arpguard input: icmpv6 type nd-neighbor-solicit @th,64,128 @vips counter packets 0 bytes 0 "
           "drop",
           "nft add rule ip6 arpguard output: icmpv6 type nd-neighbor-advert @th,64,128 @vips counter packets 0 bytes 0 "
           "drop",
           kNdpFromVip,
           watch_rule("ip6 arpguard", "output", "icmpv6 type nd-neighbor-advert @th,64,128 @watched", "leak", 100),
           "add vip 2001:db8::10/128 dev lo nodad preferred_lft 0"}},
    {"source routing: eth0's table and rule before the sysctls, arp_filter with them",
     kNoWatch + "[arp]\narp_filter = true\nsource_routing = true\n" + kOneVip, nullptr,
     cat(Lines{"add route 192.0.2.0/24 dev eth0 src 192.0.2.1 table 5002",
               "add rule from 192.0.2.1/32 lookup 5002 priority 1000"},
         kSysctls, Lines{"set net.ipv4.conf.all.arp_filter 0 -> 1"},
         arp_table("1 element(s) to arp arpguard @vips: 192.0.2.10"), Lines{"add vip 192.0.2.10/32 dev lo"})},
    {"arp_filter is set with method nftables too: it is about the host's addresses",
     kNoWatch + "[arp]\nmethod = \"nftables\"\narp_filter = true\n" + kOneVip, nullptr,
     cat(Lines{"set net.ipv4.conf.all.arp_filter 0 -> 1"}, arp_table("1 element(s) to arp arpguard @vips: 192.0.2.10"),
         Lines{"add vip 192.0.2.10/32 dev lo"})},
};

// ---- drift from a converged kernel ----

const std::vector<Case> kDrift = {
    {"VIP deleted by hand: added back", kOneVip,
     [](Observed& o) { remove_address(o, prefix("192.0.2.10/32"), kLo); }, {"add vip 192.0.2.10/32 dev lo"}},
    {"arp_ignore 3 and the VIP at scope global: deleted, then re-added at scope host",
     "[arp]\narp_ignore = 3\n" + kOneVip,
     [](Observed& o) { add_address(o, prefix("192.0.2.10/32"), kLo, kScopeGlobal); },
     {"del vip 192.0.2.10/32 dev lo (wrong attributes, re-added)", "add vip 192.0.2.10/32 dev lo scope host"}},
    {"IPv6 VIP preferred as a source again: changed in place", kOneV6Vip,
     [](Observed& o) { add_address(o, prefix("2001:db8::10/128"), kLo, kScopeGlobal, /*deprecated=*/false); },
     {"change vip 2001:db8::10/128 dev lo nodad preferred_lft 0"}},
    {"a copy on eth0, which would answer for it: deleted there", kOneVip,
     [](Observed& o) { add_address(o, prefix("192.0.2.10/32"), kEth0); },
     {"del vip 192.0.2.10/32 dev eth0 (misplaced: belongs on lo)"}},
    {"IPv4 set element deleted: added back", kOneVip,
     [](Observed& o) { remove_elements(arp_vips(o), {rules::vip_element(range("192.0.2.10", "192.0.2.10"))}); },
     {"nft add 1 element(s) to arp arpguard @vips: 192.0.2.10"}},
    {"IPv6 set element deleted: added back", kOneV6Vip,
     [](Observed& o) { remove_elements(ndp_vips(o), {rules::vip_element(range("2001:db8::10", "2001:db8::10"))}); },
     {"nft add 1 element(s) to ip6 arpguard @vips: 2001:db8::10"}},
    {"output rule deleted: added back", kOneVip, [](Observed& o) { arp_table_of(o).rules.erase(rule_handle(o, "output")); },
     {kArpEth0}},
    {"a foreign rule in arpguard's table: deleted", kOneVip,
     [](Observed& o) { arp_table_of(o).rules[99] = ObservedRule{99, "input", {nft::counter()}, 0, 0}; },
     {"nft delete rule arp arpguard input handle 99: a rule arpguard does not want (someone else's, or for a changed interface)"}},
    {"a second copy of arpguard's own rule: the later one deleted", kOneVip,
     [](Observed& o) {
       ObservedRule copy = arp_table_of(o).rules.at(rule_handle(o, "input"));
       copy.handle = 98;
       arp_table_of(o).rules[98] = copy;
     },
     {"nft delete rule arp arpguard input handle 98: a rule arpguard does not want (someone else's, or for a changed interface)"}},
    {"table deleted: made again whole; the VIP stays", kOneVip, [](Observed& o) { o.tables.clear(); },
     arp_table("1 element(s) to arp arpguard @vips: 192.0.2.10")},
    {"set of another type: the table replaced in one batch", kOneVip,
     [](Observed& o) {
       arp_vips(o).key_type = 8;
       arp_vips(o).key_len = 16;
     },
     cat(Lines{"nft delete table arp arpguard"}, arp_table("1 element(s) to arp arpguard @vips: 192.0.2.10"))},
    {"chain at another priority: the table replaced in one batch", kOneVip,
     [](Observed& o) { arp_table_of(o).chains.at("input").priority = -10; },
     cat(Lines{"nft delete table arp arpguard"}, arp_table("1 element(s) to arp arpguard @vips: 192.0.2.10"))},
    {"sysctl reset on conf/all", kOneVip, [](Observed& o) { o.sysctls[{"all", kArpIgnore}] = 0; },
     {"set net.ipv4.conf.all.arp_ignore 0 -> 1"}},
    {"an interface's reserved arp_ignore would win the max(): set on that interface", kOneVip,
     [](Observed& o) { o.sysctls[{"eth0", kArpIgnore}] = 4; }, {"set net.ipv4.conf.eth0.arp_ignore 4 -> 1"}},
    {"an interface's stricter arp_ignore is left alone", kOneVip,
     [](Observed& o) { o.sysctls[{"eth0", kArpIgnore}] = 2; }, {}},
    {"eth0's primary address changed: its output rule follows", kOneVip,
     [](Observed& o) {
       remove_address(o, prefix("192.0.2.1/24"), kEth0);
       add_address(o, prefix("192.0.2.2/24"), kEth0);
     },
     {"nft delete rule arp arpguard output handle 11: a rule arpguard does not want (someone else's, or for a changed interface)",
      "nft add rule arp arpguard output: oifname \"eth0\" arp saddr ip @vips counter packets 0 bytes 0 arp saddr ip set "
      "192.0.2.2"}},
    {"a redirected VIP arpguard configured on lo: deleted", kRedirect,
     [](Observed& o) {
       add_address(o, prefix("192.0.2.30/32"), kLo);
       o.state.vips.insert(ManagedVip{prefix("192.0.2.30/32"), VipKind::kAddress, "lo"});
     },
     {"del vip 192.0.2.30/32 dev lo (redirected VIPs are configured nowhere)"}},
    {"a redirected VIP someone else configured: left alone", kRedirect,
     [](Observed& o) { add_address(o, prefix("192.0.2.30/32"), kLo); }, {}},
    {"a foreign local route replaced arpguard's: present, never deleted", vip("10.100.0.0/24"),
     [](Observed& o) { o.local_routes.at(RouteKey{prefix("10.100.0.0/24"), 0}).protocol = 3; }, {}},
    {"an address foreign to the policy: left alone", kOneVip,
     [](Observed& o) { add_address(o, prefix("198.51.100.1/32"), kLo); }, {}},
};

}  // namespace

TEST_CASE("on a fresh machine, Diff plans suppression before every VIP") {
  for (const Case& c : kFresh) {
    CAPTURE(c.story);
    Observed observed = fresh_machine();
    if (c.given) c.given(observed);
    CHECK(lines_of(policy_of(kNoWatch + c.policy), observed, c.daemon) == c.plan);
  }
}

TEST_CASE("the wire watch's log rules and set, and source routing, on a fresh machine") {
  for (const Case& c : kWatched) {
    CAPTURE(c.story);
    Observed observed = fresh_machine();
    if (c.given) c.given(observed);
    CHECK(lines_of(policy_of(c.policy), observed, c.daemon) == c.plan);
  }
}

TEST_CASE("after one apply of each fresh case, the next plan is empty (I4)") {
  std::vector<Case> all;
  for (const Case& c : kFresh) all.push_back({c.story, kNoWatch + c.policy, c.given, c.plan, c.daemon});
  all.insert(all.end(), kWatched.begin(), kWatched.end());
  for (const Case& c : all) {
    CAPTURE(c.story);
    Observed observed = fresh_machine();
    if (c.given) c.given(observed);
    const Policy policy = policy_of(c.policy);
    converge_once(observed, policy, c.daemon);
    CHECK(lines_of(policy, observed, c.daemon) == Lines{});
    // The daemon, taking over from a one-shot apply, finds nothing to do either.
    CHECK(lines_of(policy, observed, true) == Lines{});
  }
}

TEST_CASE("from a converged kernel, Diff plans exactly what drifted") {
  for (const Case& c : kDrift) {
    CAPTURE(c.story);
    const Policy policy = policy_of(kNoWatch + c.policy);
    Observed observed = converged(policy, c.daemon);
    REQUIRE(lines_of(policy, observed, c.daemon) == Lines{});
    c.given(observed);
    CHECK(lines_of(policy, observed, c.daemon) == c.plan);
  }
}

TEST_CASE("after applying each drift's plan, the next plan is empty (I4)") {
  for (const Case& c : kDrift) {
    CAPTURE(c.story);
    const Policy policy = policy_of(kNoWatch + c.policy);
    Observed observed = converged(policy, c.daemon);
    c.given(observed);
    converge_once(observed, policy, c.daemon);
    CHECK(lines_of(policy, observed, c.daemon) == Lines{});
  }
}

TEST_CASE("a converged IPv6 redirect plans nothing: its NAT rules are recognised as the kernel dumps them (I4)") {
  // The kernel dumps a rule's registers in its own numbering (nft_dump_register):
  // a 32-bit register that starts a 16-byte one comes back as the 16-byte one.
  // The ip6 NAT rules load meta l4proto right after a whole IPv6 address.
  const Policy policy = policy_of(vip("2001:db8::30", "method = \"redirect\"\nports = [\"tcp:80\", \"udp:53->5353\"]\n"));
  Observed observed = converged(policy);
  REQUIRE(observed.tables.at(rules::nat_table_id(Family::kV6)).rules.size() == 3);
  CHECK(lines_of(policy, observed) == Lines{});
}

TEST_CASE("an IPv6 route VIP stored by the kernel at metric 1024 is present, and deleted by that key") {
  const Policy policy = policy_of(vip("2001:db8:1::/64"));
  Observed observed = converged(policy);
  REQUIRE(observed.local_routes.count(RouteKey{prefix("2001:db8:1::/64"), 1024}) == 1);
  CHECK(lines_of(policy, observed) == Lines{});

  const Plan drop = plan_of(policy_of(""), observed);
  REQUIRE(drop.lines() == Lines{"del route local 2001:db8:1::/64 table local (no longer in policy)"});
  CHECK(std::get<DelRoute>(drop.actions[0]).key == RouteKey{prefix("2001:db8:1::/64"), 1024});
}

TEST_CASE("a VIP dropped from the policy goes first; its element only in the next plan, once it is gone (I8)") {
  Observed observed = converged(policy_of(kOneVip + vip("192.0.2.20")));
  const Policy shrunk = policy_of(kOneVip);

  // While 192.0.2.20 is configured, its element stays.
  CHECK(lines_of(shrunk, observed) == Lines{"del vip 192.0.2.20/32 dev lo (no longer in policy)"});
  converge_once(observed, shrunk);
  REQUIRE(observed.addresses_of(ip("192.0.2.20")).empty());
  CHECK(arp_vips(observed).elements_overlapping(range("192.0.2.20", "192.0.2.20")).size() == 1);

  CHECK(lines_of(shrunk, observed) == Lines{"nft delete 1 element(s) from arp arpguard @vips: 192.0.2.20"});
  converge_once(observed, shrunk);
  CHECK(lines_of(shrunk, observed) == Lines{});
}

TEST_CASE("a VIP dropped from a merged run: the run is kept whole until it is gone, then split in one batch") {
  Observed observed = converged(policy_of(kOneVip + vip("192.0.2.11")));
  REQUIRE(arp_vips(observed).all_elements() ==
          std::vector<nft::Element>{rules::vip_element(range("192.0.2.10", "192.0.2.11"))});
  const Policy shrunk = policy_of(kOneVip);

  CHECK(lines_of(shrunk, observed) == Lines{"del vip 192.0.2.11/32 dev lo (no longer in policy)"});
  converge_once(observed, shrunk);
  CHECK(lines_of(shrunk, observed) == Lines{"nft delete 1 element(s) from arp arpguard @vips: 192.0.2.10/31",
                                            "nft add 1 element(s) to arp arpguard @vips: 192.0.2.10"});
  converge_once(observed, shrunk);
  CHECK(lines_of(shrunk, observed) == Lines{});
}

TEST_CASE("a merged run of route VIPs dropped while someone else holds one of them: only that one keeps its element") {
  // (With no VIP left in the policy the table is not wanted at all, and one
  // that guards something still configured is kept as it is: I8.)
  const std::string three = vip("10.9.0.1", "as = \"route\"\n") + vip("10.9.0.2", "as = \"route\"\n") +
                            vip("10.9.0.3", "as = \"route\"\n");
  Observed observed = converged(policy_of(three));
  REQUIRE(arp_vips(observed).all_elements() ==
          std::vector<nft::Element>{rules::vip_element(range("10.9.0.1", "10.9.0.3"))});
  // `ip route change local 10.9.0.2/32 dev eth0 table local`: no longer arpguard's route.
  for (auto& [key, info] : observed.local_routes) {
    if (key.destination == prefix("10.9.0.2/32")) info = RouteInfo{kEth0, 3 /* boot */, kScopeHost};
  }
  const Policy other = policy_of(vip("10.9.1.1", "as = \"route\"\n"));
  CHECK(lines_of(other, observed) == Lines{"del route local 10.9.0.1/32 table local (no longer in policy)",
                                           "del route local 10.9.0.3/32 table local (no longer in policy)",
                                           "nft add 1 element(s) to arp arpguard @vips: 10.9.1.1",
                                           "add route local 10.9.1.1/32 dev lo table local"});
  converge_once(observed, other);
  // 10.9.0.2 is still local here, so it keeps its suppression (I8); 10.9.0.1 and 10.9.0.3 are not.
  CHECK(lines_of(other, observed) == Lines{"nft delete 1 element(s) from arp arpguard @vips: 10.9.0.1-10.9.0.3",
                                           "nft add 1 element(s) to arp arpguard @vips: 10.9.0.2"});
  converge_once(observed, other);
  CHECK(lines_of(other, observed) == Lines{});
}

TEST_CASE("every VIP dropped: VIPs first, then the table; the sysctls stay as they are") {
  Observed observed = converged(policy_of(kOneVip));
  const Policy none = policy_of("");
  CHECK(lines_of(none, observed) == Lines{"del vip 192.0.2.10/32 dev lo (no longer in policy)"});
  converge_once(observed, none);
  CHECK(lines_of(none, observed) == Lines{"nft delete table arp arpguard"});
  converge_once(observed, none);
  CHECK(lines_of(none, observed) == Lines{});
  CHECK(observed.sysctls.at({"all", kArpIgnore}) == 1);
}

TEST_CASE("a lost state record, no VIPs in the policy, the VIP still on lo: nothing planned (I8)") {
  Observed observed = converged(policy_of(kOneVip));
  observed.state = ManagedState{};
  observed.state_error = "state.json: unexpected end of input";
  CHECK(lines_of(policy_of(""), observed) == Lines{});
  CHECK(lines_of(policy_of(""), observed, true) == Lines{});
}

TEST_CASE("the daemon adopts an orphaned persistent table, and replaces one it can never own") {
  const Policy policy = policy_of(kNoWatch + kOneVip);
  Observed observed = converged(policy);  // a one-shot apply left it owned and persistent
  ObservedTable& table = observed.tables.at(rules::arp_table_id());
  REQUIRE(table.flags == (nft::kTableFlagOwner | nft::kTableFlagPersist));

  SUBCASE("orphaned: its owner exited, the kernel cleared OWNER and kept PERSIST") {
    table.flags = nft::kTableFlagPersist;
    table.owner.reset();
    CHECK(lines_of(policy, observed, /*daemon=*/true) == Lines{"nft adopt orphaned table arp arpguard"});
    CHECK(lines_of(policy, observed, /*daemon=*/false) == Lines{});
    converge_once(observed, policy, true);
    CHECK(observed.tables.at(rules::arp_table_id()).owner == kOurPort);
    CHECK(lines_of(policy, observed, true) == Lines{});
  }
  SUBCASE("plain: made without PERSIST, it can never be owned") {
    table.flags = 0;
    table.owner.reset();
    CHECK(lines_of(policy, observed, true) ==
          cat(Lines{"nft delete table arp arpguard"}, arp_table("1 element(s) to arp arpguard @vips: 192.0.2.10")));
    CHECK(lines_of(policy, observed, false) == Lines{});
    converge_once(observed, policy, true);
    CHECK(lines_of(policy, observed, true) == Lines{});
  }
  SUBCASE("a kernel without PERSIST: nothing to adopt with") {
    table.flags = 0;
    table.owner.reset();
    observed.persist_supported = false;
    CHECK(lines_of(policy, observed, true) == Lines{});
  }
}

TEST_CASE("plan order: every deletion, then sysctls, then the nft batch, then every addition (I1)") {
  const Policy before = policy_of(kOneVip + kOneV6Vip);
  Observed observed = converged(before);
  add_address(observed, prefix("192.0.2.10/32"), kEth0);
  observed.sysctls[{"all", kArpAnnounce}] = 0;
  remove_elements(arp_vips(observed), {rules::vip_element(range("192.0.2.10", "192.0.2.10"))});
  const Policy after = policy_of(kOneVip + vip("192.0.2.20"));

  const Plan plan = plan_of(after, observed);
  CHECK(plan.lines() == Lines{"del vip 192.0.2.10/32 dev eth0 (misplaced: belongs on lo)",
                              "del vip 2001:db8::10/128 dev lo (no longer in policy)",
                              "set net.ipv4.conf.all.arp_announce 0 -> 2",
                              "nft add 2 element(s) to arp arpguard @vips: 192.0.2.10, 192.0.2.20",
                              "add vip 192.0.2.20/32 dev lo"});
  // The kinds, in order: 0-1 deletions, 2 routing, 3 sysctl, 4 nft, 5-6 additions (the variant's own order).
  std::vector<size_t> kinds;
  for (const Action& a : plan.actions) kinds.push_back(a.index());
  CHECK(std::is_sorted(kinds.begin(), kinds.end()));
  CHECK(kinds == std::vector<size_t>{0, 0, 3, 4, 5});

  // The ip6 table guarded 2001:db8::10 while it was configured; once gone, it goes.
  converge_once(observed, after);
  CHECK(lines_of(after, observed) == Lines{"nft delete table ip6 arpguard"});
  converge_once(observed, after);
  CHECK(lines_of(after, observed) == Lines{});
}

// ---- scoped diffs ----

namespace {

// `count` IPv4 VIPs, every other address from 10.0.0.0: no two adjacent.
Policy spaced_vips(int count) {
  Policy policy = policy_of("");
  for (int i = 0; i < count; ++i) {
    VipPolicy v;
    v.prefix = IpPrefix::host(IpAddress::v4(0x0a000000u + 2u * static_cast<uint32_t>(i)));
    policy.vips.push_back(v);
  }
  return policy;
}

DiffScope around(std::string_view first, std::string_view last, bool host = false) {
  return DiffScope::of({range(first, last)}, host);
}

}  // namespace

TEST_CASE("at 5,000 VIPs, a diff scoped to the drift plans what the full diff plans; elsewhere, nothing") {
  const Policy policy = spaced_vips(5000);
  Observed observed = converged(policy);
  const Desired desired = desired_of(policy, observed);
  REQUIRE(Diff(desired, observed).empty());
  REQUIRE(arp_vips(observed).size() == 5000);

  SUBCASE("a VIP deleted") {
    remove_address(observed, prefix("10.0.19.136/32"), kLo);  // the 2,501st
    const Lines full = Diff(desired, observed).lines();
    CHECK(full == Lines{"add vip 10.0.19.136/32 dev lo"});
    CHECK(Diff(desired, observed, around("10.0.19.136", "10.0.19.136")).lines() == full);
    CHECK(Diff(desired, observed, around("10.0.0.0", "10.0.19.135", true)).lines() == Lines{});
    CHECK(Diff(desired, observed, around("10.0.19.137", "10.0.39.255")).lines() == Lines{});
  }
  SUBCASE("an element deleted") {
    remove_elements(arp_vips(observed), {rules::vip_element(range("10.0.30.2", "10.0.30.2"))});
    const Lines full = Diff(desired, observed).lines();
    CHECK(full == Lines{"nft add 1 element(s) to arp arpguard @vips: 10.0.30.2"});
    CHECK(Diff(desired, observed, around("10.0.30.2", "10.0.30.2")).lines() == full);
    CHECK(Diff(desired, observed, around("10.0.30.3", "10.0.30.3")).lines() == Lines{});
  }
}

TEST_CASE("a scoped diff finds arpguard's prefixes that start before the region, and regions in any order") {
  const Policy policy = spaced_vips(5000);
  Observed observed = converged(policy);
  const Desired desired = desired_of(policy, observed);
  // A route VIP arpguard made and the policy no longer has, and an address VIP it recorded.
  observed.local_routes[RouteKey{prefix("10.9.0.0/16"), 0}] = RouteInfo{kLo, kRouteProtoArpguard, kScopeHost};
  add_address(observed, prefix("10.8.0.0/30"), kLo);
  observed.state.vips.insert(ManagedVip{prefix("10.8.0.0/30"), VipKind::kAddress, "lo"});
  const Lines full = Diff(desired, observed).lines();
  REQUIRE(full.size() == 2);

  SUBCASE("a region inside each, after their first address") {
    CHECK(Diff(desired, observed, DiffScope::of({range("10.9.200.7", "10.9.200.7"), range("10.8.0.3", "10.8.0.3")}, false))
              .lines() == full);
    CHECK(Diff(desired, observed, around("10.9.200.7", "10.9.200.7")).lines() == Lines{full[1]});
    CHECK(Diff(desired, observed, around("10.10.0.0", "10.10.0.9")).lines() == Lines{});
  }
  SUBCASE("one region per VIP, unsorted and overlapping, as a deleted table touches them") {
    remove_address(observed, prefix("10.0.19.136/32"), kLo);
    std::vector<IpRange> regions;
    for (const DesiredVip& vip : desired.vips.bound) {
      regions.push_back(IpRange::of(vip.prefix));
      regions.push_back(IpRange::of(vip.prefix));
    }
    regions.push_back(range("10.8.0.1", "10.9.0.0"));
    std::reverse(regions.begin(), regions.end());
    std::swap(regions[10], regions[4000]);
    const Lines scoped = Diff(desired, observed, DiffScope::of(regions, false)).lines();
    CHECK(scoped == Diff(desired, observed).lines());
    CHECK(scoped.size() == 3);
  }
}

TEST_CASE("a scope without the host leaves sysctls and the tables' structure to a host-wide diff") {
  Observed observed = converged(policy_of(kNoWatch + kOneVip));
  const DiffScope region = around("192.0.2.10", "192.0.2.10");
  const DiffScope host = DiffScope::of({}, true);

  SUBCASE("a sysctl and a rule drifted") {
    const Policy policy = policy_of(kNoWatch + kOneVip);
    observed.sysctls[{"all", kArpIgnore}] = 0;
    arp_table_of(observed).rules.erase(rule_handle(observed, "input"));
    CHECK(lines_of(policy, observed, false, region) == Lines{});
    CHECK(lines_of(policy, observed, false, host) == Lines{"set net.ipv4.conf.all.arp_ignore 0 -> 1", kArpInput});
  }
  SUBCASE("a table no longer wanted, guarding nothing") {
    const Policy none = policy_of("");
    converge_once(observed, none);  // the VIP goes first
    CHECK(lines_of(none, observed, false, region) == Lines{});
    CHECK(lines_of(none, observed, false, host) == Lines{"nft delete table arp arpguard"});
  }
}

TEST_CASE("a scope touching the middle of a merged element that was deleted re-adds the whole interval") {
  std::string text;
  for (int i = 0; i < 10; ++i) text += vip("10.1.0." + std::to_string(i));
  const Policy policy = policy_of(text + vip("10.1.0.20"));
  Observed observed = converged(policy);
  const Desired desired = desired_of(policy, observed);
  remove_elements(arp_vips(observed), {rules::vip_element(range("10.1.0.0", "10.1.0.9"))});

  const Lines full = Diff(desired, observed).lines();
  CHECK(full == Lines{"nft add 1 element(s) to arp arpguard @vips: 10.1.0.0-10.1.0.9"});
  CHECK(Diff(desired, observed, around("10.1.0.5", "10.1.0.5")).lines() == full);
}

TEST_CASE("a reload splitting a merged run: one atomic delete and add covering the whole old element") {
  std::string run;
  std::string split;
  for (int i = 0; i < 10; ++i) {
    run += vip("10.1.0." + std::to_string(i));
    if (i != 5) split += vip("10.1.0." + std::to_string(i));
  }
  Observed observed = converged(policy_of(run));
  const Policy policy = policy_of(split);

  // First the VIP goes (its element stays while it is configured, I8).
  CHECK(lines_of(policy, observed, false, around("10.1.0.5", "10.1.0.5")) ==
        Lines{"del vip 10.1.0.5/32 dev lo (no longer in policy)"});
  converge_once(observed, policy);

  const Lines split_plan{"nft delete 1 element(s) from arp arpguard @vips: 10.1.0.0-10.1.0.9",
                         "nft add 2 element(s) to arp arpguard @vips: 10.1.0.0-10.1.0.4, 10.1.0.6-10.1.0.9"};
  CHECK(lines_of(policy, observed) == split_plan);
  for (const char* inside : {"10.1.0.5", "10.1.0.0", "10.1.0.9", "10.1.0.7"}) {
    CAPTURE(inside);
    CHECK(lines_of(policy, observed, false, around(inside, inside)) == split_plan);
  }
  CHECK(lines_of(policy, observed, false, around("10.1.0.10", "10.1.0.10")) == Lines{});

  // The kernel takes the batch (the delete comes before the overlapping adds) and it converges.
  const Desired desired = desired_of(policy, observed);
  CHECK(apply_to(observed, Diff(desired, observed, around("10.1.0.5", "10.1.0.5")), &desired) == Lines{});
  CHECK(lines_of(policy, observed) == Lines{});
}

// ---- property: scoped and full diffs agree under random drift ----

namespace {

struct RandomWorld {
  Policy policy;
  std::vector<IpPrefix> addresses;  ///< address VIPs
  std::vector<IpPrefix> routes;     ///< route VIPs
};

RandomWorld random_policy(std::mt19937& rng) {
  RandomWorld w;
  w.policy = policy_of("");
  auto pick = [&](int n) { return static_cast<int>(std::uniform_int_distribution<int>(0, n - 1)(rng)); };
  const Method methods[] = {Method::kBoth, Method::kBoth, Method::kNftables, Method::kSysctl};
  std::set<IpPrefix> chosen;
  // IPv4 hosts from a small space, so that some are adjacent and merge.
  for (int i = 0; i < 150; ++i) chosen.insert(IpPrefix::host(IpAddress::v4(0x0a020000u + static_cast<uint32_t>(pick(600)))));
  // IPv6 hosts.
  for (int i = 0; i < 60; ++i) {
    chosen.insert(IpPrefix::host(IpAddress{Family::kV6, ip("2001:db8:5::").value + static_cast<Uint128>(pick(200))}));
  }
  // IPv4 /28 and IPv6 /64 route VIPs, in spaces of their own.
  std::set<IpPrefix> prefixes;
  for (int i = 0; i < 30; ++i) prefixes.insert(IpPrefix{IpAddress::v4(0x0a030000u + 16u * static_cast<uint32_t>(pick(64))), 28});
  for (int i = 0; i < 15; ++i) {
    prefixes.insert(IpPrefix{IpAddress{Family::kV6, ip("2001:db8:7::").value + (static_cast<Uint128>(pick(40)) << 64)}, 64});
  }
  for (const IpPrefix& p : chosen) {
    VipPolicy v;
    v.prefix = p;
    v.method = methods[pick(4)];
    w.policy.vips.push_back(v);
    w.addresses.push_back(p);
  }
  for (const IpPrefix& p : prefixes) {
    VipPolicy v;
    v.prefix = p;
    v.kind = VipKind::kRoute;
    v.method = methods[pick(3)];  // a route VIP's nftables layer is what hides it beyond lo
    w.policy.vips.push_back(v);
    w.routes.push_back(p);
  }
  std::sort(w.policy.vips.begin(), w.policy.vips.end(),
            [](const VipPolicy& a, const VipPolicy& b) { return a.prefix < b.prefix; });
  return w;
}

// Random drift, told to the cache as the kernel's events would tell it.
Touched random_drift(std::mt19937& rng, const RandomWorld& w, Observed& o, int changes) {
  auto pick = [&](size_t n) { return static_cast<size_t>(std::uniform_int_distribution<size_t>(0, n - 1)(rng)); };
  Touched touched;
  auto tell = [&](const Delta& d) { touched.merge(apply_delta(o, d)); };
  for (int i = 0; i < changes; ++i) {
    switch (pick(5)) {
      case 0: {  // a VIP address deleted, with the kernel's local route of it
        const IpPrefix& p = w.addresses[pick(w.addresses.size())];
        tell(delta::AddressRemoved{AddressKey{p.address, p.length, kLo}});
        tell(delta::RouteRemoved{RouteKey{IpPrefix::host(p.address), 0}});
        break;
      }
      case 1: {  // a set element deleted
        const bool v4 = pick(2) == 0;
        ObservedSet& set = v4 ? arp_vips(o) : ndp_vips(o);
        const std::vector<nft::Element> all = set.all_elements();
        if (all.empty()) break;
        const IpRange r = all[pick(all.size())].addresses;
        delta::ElementsRemoved d{SetRef{v4 ? rules::arp_table_id() : rules::ndp_table_id(), std::string(rules::kVipSet)},
                                 {{r.first, true}},
                                 {}};
        if (!r.last.is_max()) d.points.push_back({r.last.next(), false});
        tell(d);
        break;
      }
      case 2: {  // a copy of a VIP on eth0
        const IpPrefix& p = w.addresses[pick(w.addresses.size())];
        tell(delta::AddressUpsert{AddressKey{p.address, p.length, kEth0}, AddressInfo{kScopeGlobal, kAddrFlagPermanent}});
        break;
      }
      case 3: {  // an address VIP's attributes changed (IPv6: preferred again; IPv4: no change for scope global)
        const IpPrefix& p = w.addresses[pick(w.addresses.size())];
        if (!o.addresses.count(AddressKey{p.address, p.length, kLo})) break;
        tell(delta::AddressUpsert{AddressKey{p.address, p.length, kLo}, AddressInfo{kScopeGlobal, kAddrFlagPermanent}});
        break;
      }
      case 4: {  // a route VIP deleted
        const IpPrefix& p = w.routes[pick(w.routes.size())];
        tell(delta::RouteRemoved{RouteKey{p, p.family() == Family::kV6 ? 1024u : 0u}});
        break;
      }
    }
  }
  return touched;
}

}  // namespace

TEST_CASE("property: under random drift, scoped diffs agree with the full diff, and its plan converges") {
  for (unsigned seed = 1; seed <= 25; ++seed) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    const RandomWorld w = random_policy(rng);
    Observed observed = converged(w.policy);
    REQUIRE(lines_of(w.policy, observed) == Lines{});

    const Touched touched = random_drift(rng, w, observed, 1 + static_cast<int>(seed % 12));
    REQUIRE_FALSE(touched.all);
    const Desired desired = desired_of(w.policy, observed);
    const Plan full = Diff(desired, observed);
    CHECK_FALSE(full.empty());

    // One diff over every touched region, as the supervisor merges them.
    CHECK(Diff(desired, observed, DiffScope::of(touched.regions, touched.host)).lines() == full.lines());
    // The union of one diff per region makes the same changes.
    std::set<std::string> united;
    for (const IpRange& region : touched.regions) {
      for (const std::string& fact : facts(Diff(desired, observed, DiffScope::of({region}, touched.host)))) {
        united.insert(fact);
      }
    }
    const std::multiset<std::string> full_facts = facts(full);
    CHECK(united == std::set<std::string>(full_facts.begin(), full_facts.end()));

    // The kernel takes the full plan, every VIP is protected before it is added, and it converges.
    CHECK(apply_to(observed, full, &desired) == Lines{});
    CHECK(lines_of(w.policy, observed) == Lines{});
    ReadinessInputs inputs;
    inputs.fresh = true;
    for (const DesiredVip& v : desired.vips.bound) {
      CAPTURE(v.prefix.str());
      CHECK(vip_reasons(desired, observed, inputs, v) == std::vector<Reason>{});
    }
  }
}

TEST_CASE("property: a reload dropping random VIPs converges in two plans, scoped like the full one") {
  for (unsigned seed = 100; seed < 115; ++seed) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    RandomWorld w = random_policy(rng);
    Observed observed = converged(w.policy);

    // Drop every VIP with probability 1/4: their regions are the reload's scope.
    Policy shrunk = w.policy;
    std::vector<IpRange> dropped;
    std::erase_if(shrunk.vips, [&](const VipPolicy& v) {
      if (std::uniform_int_distribution<int>(0, 3)(rng) != 0) return false;
      dropped.push_back(IpRange::of(v.prefix));
      return true;
    });
    REQUIRE_FALSE(dropped.empty());
    // Round 1 is the reload's; round 2 follows up on what round 1 changed, host included.
    DiffScope scope = DiffScope::of(dropped, true);

    for (int round = 1; round <= 2; ++round) {
      CAPTURE(round);
      const Desired desired = desired_of(shrunk, observed);
      const Plan full = Diff(desired, observed);
      CHECK(Diff(desired, observed, scope).lines() == full.lines());
      std::vector<IpRange> changed;
      for (const Action& a : full.actions) {
        // Round 1 only deletes VIPs (suppression stays, I8); round 2 only changes nft.
        if (const auto* del = std::get_if<DelAddress>(&a)) changed.push_back(IpRange::of(del->key.prefix()));
        if (const auto* del = std::get_if<DelRoute>(&a)) changed.push_back(IpRange::of(del->key.destination));
        CHECK((round == 1 ? (std::holds_alternative<DelAddress>(a) || std::holds_alternative<DelRoute>(a))
                          : std::holds_alternative<NftChange>(a)));
      }
      CHECK(apply_to(observed, full, &desired) == Lines{});
      scope = DiffScope::of(changed, true);
    }
    CHECK(lines_of(shrunk, observed) == Lines{});
  }
}

TEST_CASE("a protecting rule added again after the watch's log rules: they are put after it again, nothing else") {
  const Policy policy = policy_of(kOneVip);  // the watch on: log rules end the output chain
  Observed observed = converged(policy, true);
  const uint64_t first = rule_handle(observed, "output");
  ObservedRule moved = arp_table_of(observed).rules.at(first);
  arp_table_of(observed).rules.erase(first);
  moved.handle = 999;  // appended again, as a repair of it would be
  arp_table_of(observed).rules[999] = moved;
  const Lines plan = lines_of(policy, observed, true);
  CAPTURE(plan);
  REQUIRE_FALSE(plan.empty());
  for (const std::string& line : plan) {
    const bool reordered = line.find("out of order: it is added again after the rules before it") != std::string::npos;
    const bool readded = line.rfind("nft add rule arp arpguard output: ", 0) == 0 && line.find(" log ") != std::string::npos;
    CHECK((reordered || readded));
    CHECK(line.find("handle 999") == std::string::npos);  // the protecting rule stays
  }
  converge_once(observed, policy, true);
  CHECK(lines_of(policy, observed, true) == Lines{});
  CHECK(rule_handle(observed, "output") == 999);
}

TEST_CASE("method both to sysctl: the VIP leaves the nft set once the sysctls hold, never before") {
  const Policy both = policy_of(kNoWatch + kOneVip);
  const Policy sysctl = policy_of(kNoWatch + "[arp]\nmethod = \"sysctl\"\n" + kOneVip);
  auto suppressed = [](const Observed& o) {
    const ObservedTable* table = o.table(rules::arp_table_id());
    if (!table || !table->sets.count("vips")) return false;
    return table->sets.at("vips").size() != 0;
  };
  SUBCASE("sysctls in place (both set them too): the element goes") {
    Observed observed = converged(both, true);
    REQUIRE(suppressed(observed));
    converge_once(observed, sysctl, true);
    CHECK_FALSE(suppressed(observed));
    CHECK(lines_of(sysctl, observed, true) == Lines{});
  }
  SUBCASE("arp_ignore reset meanwhile: the element stays until it is back") {
    Observed observed = converged(both, true);
    observed.sysctls[{"all", kArpIgnore}] = 0;
    const Lines plan = lines_of(sysctl, observed, true);
    CAPTURE(plan);
    for (const std::string& line : plan) CHECK(line.find("delete") == std::string::npos);
  }
}

TEST_CASE("arp.interfaces: an entry is the interface of that exact name, glob characters and all, or a glob") {
  auto link = [](const char* name) { return Link{7, name, false, false, true, {}}; };
  CHECK(is_arp_facing(link("x[1]"), {"x[1]"}));
  CHECK(is_arp_facing(link("b\\"), {"b\\"}));
  CHECK(is_arp_facing(link("we?rd"), {"we?rd"}));
  CHECK(is_arp_facing(link("x1"), {"x[1]"}));  // a glob still
  CHECK(is_arp_facing(link("eth3"), {"eth*"}));
  CHECK_FALSE(is_arp_facing(link("eth3"), {"x[1]", "b\\"}));
  CHECK_FALSE(is_arp_facing(Link{1, "lo", true, false, true, {}}, {"lo", "*"}));
}

TEST_CASE("the rewrite rule's sender is the interface's address with the widest subnet, not a /32 added beside it") {
  const Policy policy = policy_of(kOneVip);
  Observed observed = converged(policy);
  REQUIRE(Diff(desired_of(policy, observed), observed).empty());
  // Host addresses someone adds to eth0, lower than its own 192.0.2.1/24: the rule stays.
  add_address(observed, prefix("10.9.0.1/32"), kEth0);
  add_address(observed, prefix("172.16.0.1/32"), kEth0);
  CHECK(Diff(desired_of(policy, observed), observed).lines() == Lines{});
  // Its own address gone: the widest left takes its place.
  remove_address(observed, prefix("192.0.2.1/24"), kEth0);
  const Lines lines = Diff(desired_of(policy, observed), observed).lines();
  CHECK(std::find_if(lines.begin(), lines.end(), [](const std::string& l) {
          return l.find("arp saddr ip set 10.9.0.1") != std::string::npos;
        }) != lines.end());
}

TEST_CASE("what concerns arpguard: VIPs wanted, redirected or managed, and elements of its sets; nothing else") {
  const Policy policy = policy_of(vip("192.0.2.10") + vip("10.100.0.0/24") + vip("198.51.100.7", "method = \"redirect\""));
  Observed observed = converged(policy);
  observed.local_routes[RouteKey{prefix("10.9.0.0/16"), 0}] = RouteInfo{kLo, kRouteProtoArpguard, kScopeHost};
  observed.state.vips.insert(ManagedVip{prefix("10.8.0.0/30"), VipKind::kAddress, "lo"});
  add_elements(arp_vips(observed), {rules::vip_element(range("172.20.0.0", "172.20.0.255"))});  // someone else's
  const Desired desired = desired_of(policy, observed);
  auto concerns = [&](std::string_view first, std::string_view last) {
    return concerns_arpguard(desired, observed, range(first, last));
  };
  CHECK(concerns("192.0.2.10", "192.0.2.10"));
  CHECK(concerns("192.0.2.0", "192.0.2.255"));    // a region around a VIP
  CHECK(concerns("10.100.0.77", "10.100.0.77"));  // inside a prefix VIP
  CHECK(concerns("198.51.100.7", "198.51.100.7"));
  CHECK(concerns("10.9.3.4", "10.9.3.4"));        // inside a route arpguard made
  CHECK(concerns("10.8.0.2", "10.8.0.2"));        // inside a VIP it recorded
  CHECK(concerns("172.20.0.9", "172.20.0.9"));    // inside an element of its set
  CHECK_FALSE(concerns("192.0.2.11", "192.0.2.11"));
  CHECK_FALSE(concerns("172.16.0.1", "172.16.0.1"));
  CHECK_FALSE(concerns("10.100.1.0", "10.100.1.0"));
  CHECK_FALSE(concerns("198.51.100.8", "198.51.100.255"));
  CHECK_FALSE(concerns("2001:db8::1", "2001:db8::1"));
}

TEST_CASE("route VIPs far apart among arpguard's routes: each found, kept or deleted, wherever the last one was") {
  // Diff looks routes up a few steps on from its last answer: here the next
  // VIP is past many routes, the unwanted ones are asked from the start
  // again, and one VIP is after every route.
  std::string before;
  for (int i = 1; i <= 12; ++i) before += vip(fmt::format("10.9.0.{}", i), "as = \"route\"\n");
  Observed observed = converged(policy_of(before));
  const Policy after = policy_of(vip("10.9.0.1", "as = \"route\"\n") + vip("10.9.0.11", "as = \"route\"\n") +
                                 vip("10.9.0.40", "as = \"route\"\n"));
  Lines routes;
  for (const std::string& line : lines_of(after, observed)) {
    if (line.find(" route local ") != std::string::npos) routes.push_back(line);
  }
  Lines expected;
  for (int i : {2, 3, 4, 5, 6, 7, 8, 9, 10, 12}) {
    expected.push_back(fmt::format("del route local 10.9.0.{}/32 table local (no longer in policy)", i));
  }
  expected.push_back("add route local 10.9.0.40/32 dev lo table local");
  CHECK(routes == expected);
}

TEST_CASE("bound_containing with a hint answers as the search does, for addresses in any order") {
  // VIPs: /32s and prefixes with gaps between them.
  DesiredVips vips;
  for (uint32_t i = 0; i < 300; ++i) {
    const uint8_t length = i % 5 == 0 ? 28 : 32;
    DesiredVip vip;
    vip.prefix = IpPrefix{IpAddress::v4(0x0a000000 + i * 32), length};
    vips.bound.push_back(vip);
  }
  std::mt19937 rng(7);
  const uint32_t first = 0x0a000000 - 64, last = 0x0a000000 + 300 * 32 + 64;  // a little beyond the VIPs
  for (int round = 0; round < 50; ++round) {
    size_t hint = 0;
    uint32_t at = first;
    for (int q = 0; q < 400; ++q) {
      // Mostly forward, by a little or a lot; now and then backwards; back
      // to the start past the end, so that most queries fall among the VIPs.
      const uint32_t roll = rng() % 10;
      if (roll < 6) at += rng() % 8;
      else if (roll < 9) at += rng() % 200;
      else at -= std::min<uint32_t>(at - first, rng() % 3000);
      if (at > last) at = first + rng() % 64;
      const IpAddress address = IpAddress::v4(at);
      const DesiredVip* plain = vips.bound_containing(address);
      const DesiredVip* hinted = vips.bound_containing(address, hint);
      CHECK_MESSAGE(plain == hinted, address.str());
    }
  }
  size_t hint = 5;  // stale: from another list
  CHECK(DesiredVips{}.bound_containing(IpAddress::v4(0x0a000000), hint) == nullptr);
}
