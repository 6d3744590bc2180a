// The event-fed cache: every kind of Delta folded into an Observed, what it
// says it touched, duplicates and late events, the audit's divergences, and
// interval sets held as points.
#include <doctest/doctest.h>

#include <algorithm>
#include <iterator>
#include <random>
#include <set>
#include <sstream>

#include <linux/netfilter/nf_tables.h>

#include "core/observed_delta.h"
#include "rules/expr.h"
#include "rules/tables.h"
#include "world.h"

using namespace arpguard;
using namespace arpguard::world;

namespace {

// Everything an Observed holds, as text: two caches are the same when their snapshots are.
std::string snapshot(const Observed& o) {
  std::ostringstream out;
  for (const auto& [index, l] : o.links) out << "link " << index << " " << l.name << l.loopback << l.noarp << l.up << "\n";
  for (const auto& [k, i] : o.addresses) {
    out << "addr " << k.prefix().str() << " " << k.link_index << " " << int(i.scope) << " " << i.flags << "\n";
  }
  for (const auto& [link, keys] : o.addresses_by_link) {
    for (const AddressKey& k : keys) out << "by_link " << link << " " << k.prefix().str() << "\n";
  }
  for (const auto& [k, i] : o.local_routes) {
    out << "route " << k.destination.str() << " " << k.priority << " " << i.link_index << " " << int(i.protocol) << "\n";
  }
  for (const auto& [k, v] : o.sysctls) out << "sysctl " << k.str() << "=" << v << "\n";
  for (const auto& [id, t] : o.tables) {
    out << "table " << id.str() << " " << t.flags << " " << (t.owner ? int64_t(*t.owner) : -1) << "\n";
    for (const auto& [name, s] : t.sets) {
      out << " set " << name << " " << s.flags << " " << s.key_type << " " << s.key_len << " " << s.data_type << " "
          << s.data_len << "\n";
      for (const auto& [key, start] : s.points) out << "  point " << key.str() << " " << start << "\n";
      for (const nft::Element& e : s.elements) out << "  element " << e.str() << "\n";
    }
    for (const auto& [name, c] : t.chains) {
      out << " chain " << name << " " << c.type << " " << c.hook << " " << c.priority << " " << c.base << "\n";
    }
    for (const auto& [handle, r] : t.rules) out << " rule " << handle << " " << r.chain << " " << r.exprs.size() << "\n";
  }
  return out.str();
}

const SetRef kArpVips{rules::arp_table_id(), std::string(rules::kVipSet)};
const SetRef kNatKeep{rules::nat_table_id(Family::kV4), std::string(rules::kKeepSet)};

std::pair<IpAddress, bool> start(std::string_view a) { return {ip(a), true}; }
std::pair<IpAddress, bool> end(std::string_view a) { return {ip(a), false}; }

const std::string kPolicy = vip("192.0.2.10") + vip("192.0.2.11") + vip("2001:db8::10") + vip("10.100.0.0/24") +
                            vip("192.0.2.30", "method = \"redirect\"\nports = [\"tcp:80\"]\n");

// A machine that converged a policy of every kind.
Observed converged_machine() { return converged(policy_of(kPolicy)); }

ObservedSet plain_v4_set() {
  ObservedSet set;
  set.flags = NFT_SET_INTERVAL;
  set.key_type = 7;
  set.key_len = 4;
  return set;
}

std::vector<nft::Element> brute_overlapping(const ObservedSet& set, const IpRange& r) {
  std::vector<nft::Element> out;
  for (const nft::Element& e : set.all_elements()) {
    if (e.addresses.overlaps(r)) out.push_back(e);
  }
  return out;
}

}  // namespace

// ---- each kind of delta ----

TEST_CASE("links: a new, renamed, raised or downed link puts everything in question; other changes only the host") {
  Observed o = fresh_machine();
  SUBCASE("a new link") {
    const Touched t = apply_delta(o, delta::LinkUpsert{Link{3, "eth1", false, false, true, {}}});
    CHECK(o.link_named("eth1") != nullptr);
    CHECK(t.changed);
    CHECK(t.all);
    CHECK(t.host);
  }
  SUBCASE("the same link again: nothing changed") {
    const std::string before = snapshot(o);
    const Touched t = apply_delta(o, delta::LinkUpsert{Link{kEth0, "eth0", false, false, true, {}}});
    CHECK_FALSE(t.changed);
    CHECK_FALSE(t.all);
    CHECK(snapshot(o) == before);
  }
  SUBCASE("eth0 goes down: everything (a VIP on a device that is down is not ready)") {
    const Touched t = apply_delta(o, delta::LinkUpsert{Link{kEth0, "eth0", false, false, false, {}}});
    CHECK_FALSE(o.link_at(kEth0)->up);
    CHECK(t.changed);
    CHECK(t.host);
    CHECK(t.all);
  }
  SUBCASE("eth0's MAC changes: changed, host only") {
    const Touched t = apply_delta(o, delta::LinkUpsert{Link{kEth0, "eth0", false, false, true, *MacAddress::parse("02:00:00:00:00:99")}});
    CHECK(t.changed);
    CHECK(t.host);
    CHECK_FALSE(t.all);
  }
  SUBCASE("eth0 renamed") {
    const Touched t = apply_delta(o, delta::LinkUpsert{Link{kEth0, "wan0", false, false, true, {}}});
    CHECK(o.link_at(kEth0)->name == "wan0");
    CHECK(t.all);
  }
  SUBCASE("eth0 removed: its addresses go with it; removed again: nothing changes") {
    const Touched t = apply_delta(o, delta::LinkRemoved{kEth0});
    CHECK(t.changed);
    CHECK(t.all);
    CHECK(o.link_at(kEth0) == nullptr);
    CHECK(o.addresses_of(ip("192.0.2.1")).empty());
    CHECK(o.addresses_by_link.count(kEth0) == 0);
    const std::string after = snapshot(o);
    CHECK_FALSE(apply_delta(o, delta::LinkRemoved{kEth0}).changed);
    CHECK(snapshot(o) == after);
  }
}

TEST_CASE("a removed link takes its routes with it, as the kernel does without telling") {
  // Checked on Linux 6.18: `ip link del` of a link holding `local 198.51.100.0/28`
  // sends RTM_DELADDR and the address's own route's RTM_DELROUTE, but no
  // RTM_DELROUTE for other routes through the link. The cache keeps them, and
  // a route VIP held by such a foreign route stays "present" (and ready).
  Observed o = fresh_machine();
  apply_delta(o, delta::LinkUpsert{Link{3, "eth1", false, false, true, {}}});
  apply_delta(o, delta::RouteUpsert{RouteKey{prefix("198.51.100.0/28"), 0}, RouteInfo{3, 3, kScopeHost}});
  apply_delta(o, delta::LinkRemoved{3});
  CHECK(o.local_routes.count(RouteKey{prefix("198.51.100.0/28"), 0}) == 0);
  CHECK_FALSE(o.anything_local_in(IpRange::of(prefix("198.51.100.0/28"))));
}

TEST_CASE("addresses: their own address region; off loopback, a link address (its ARP sender may move)") {
  Observed o = fresh_machine();
  const AddressKey on_lo{ip("192.0.2.10"), 32, kLo};
  const AddressKey on_eth0{ip("192.0.2.10"), 32, kEth0};
  const AddressInfo info{kScopeGlobal, kAddrFlagPermanent};

  Touched t = apply_delta(o, delta::AddressUpsert{on_lo, info});
  CHECK(t.changed);
  CHECK(t.regions == std::vector<IpRange>{range("192.0.2.10", "192.0.2.10")});
  CHECK_FALSE(t.host);
  CHECK_FALSE(t.link_addresses);
  CHECK(o.addresses.at(on_lo) == info);
  CHECK(o.addresses_by_link.count(kLo) == 0);  // the index holds no loopback addresses

  t = apply_delta(o, delta::AddressUpsert{on_eth0, info});
  CHECK(t.link_addresses);
  CHECK_FALSE(t.host);  // the Supervisor decides whether it moved a sender
  CHECK(o.addresses_by_link.at(kEth0).count(on_eth0) == 1);

  SUBCASE("the same address again: unchanged") {
    CHECK_FALSE(apply_delta(o, delta::AddressUpsert{on_lo, info}).changed);
  }
  SUBCASE("its flags changed (preferred again): changed") {
    t = apply_delta(o, delta::AddressUpsert{on_lo, AddressInfo{kScopeHost, kAddrFlagPermanent}});
    CHECK(t.changed);
    CHECK(o.addresses.at(on_lo).scope == kScopeHost);
  }
  SUBCASE("removed, then removed again: the second changes nothing but still names the region") {
    t = apply_delta(o, delta::AddressRemoved{on_eth0});
    CHECK(t.changed);
    CHECK(t.link_addresses);
    CHECK(o.addresses.count(on_eth0) == 0);
    CHECK(o.addresses_by_link.at(kEth0).count(on_eth0) == 0);
    const std::string after = snapshot(o);
    t = apply_delta(o, delta::AddressRemoved{on_eth0});
    CHECK_FALSE(t.changed);
    CHECK(snapshot(o) == after);
  }
}

TEST_CASE("local routes: the whole prefix is their region") {
  Observed o = fresh_machine();
  const RouteKey key{prefix("10.100.0.0/24"), 0};
  Touched t = apply_delta(o, delta::RouteUpsert{key, RouteInfo{kLo, kRouteProtoArpguard, kScopeHost}});
  CHECK(t.changed);
  CHECK(t.regions == std::vector<IpRange>{range("10.100.0.0", "10.100.0.255")});
  CHECK_FALSE(t.host);
  CHECK(o.anything_local_in(range("10.100.0.77", "10.100.0.77")));
  CHECK_FALSE(apply_delta(o, delta::RouteUpsert{key, RouteInfo{kLo, kRouteProtoArpguard, kScopeHost}}).changed);
  CHECK(apply_delta(o, delta::RouteUpsert{key, RouteInfo{kLo, 3, kScopeHost}}).changed);

  t = apply_delta(o, delta::RouteRemoved{key});
  CHECK(t.changed);
  CHECK_FALSE(o.anything_local_in(range("10.100.0.77", "10.100.0.77")));
  CHECK_FALSE(apply_delta(o, delta::RouteRemoved{key}).changed);
}

TEST_CASE("tables, chains and sets: structure; every VIP's suppression is in question") {
  Observed o = converged_machine();
  const nft::TableId arp = rules::arp_table_id();

  SUBCASE("the table removed, then removed again") {
    Touched t = apply_delta(o, delta::TableRemoved{arp});
    CHECK(t.changed);
    CHECK(t.host);
    CHECK(t.every_vip);
    CHECK(o.table(arp) == nullptr);
    CHECK_FALSE(apply_delta(o, delta::TableRemoved{arp}).changed);
  }
  SUBCASE("the table's flags: ownership taken and lost") {
    Touched t = apply_delta(o, delta::TableUpsert{arp, nft::kTableFlagPersist, std::nullopt});
    CHECK(t.changed);
    CHECK(t.every_vip);
    CHECK_FALSE(o.table_is_ours(*o.table(arp)));
    CHECK_FALSE(apply_delta(o, delta::TableUpsert{arp, nft::kTableFlagPersist, std::nullopt}).changed);
    // A table's definition leaves what it holds alone.
    CHECK(o.table(arp)->sets.at("vips").size() == 2);
    CHECK(o.table(arp)->rules.size() == desired_of(policy_of(kPolicy), o).host.table(arp)->rules.size());
  }
  SUBCASE("a chain removed, then defined again") {
    const ObservedChain input = o.table(arp)->chains.at("input");
    Touched t = apply_delta(o, delta::ChainRemoved{arp, "input"});
    CHECK(t.changed);
    CHECK(t.every_vip);
    CHECK(o.table(arp)->chains.count("input") == 0);
    CHECK_FALSE(apply_delta(o, delta::ChainRemoved{arp, "input"}).changed);
    t = apply_delta(o, delta::ChainUpsert{arp, "input", input});
    CHECK(t.changed);
    CHECK(o.table(arp)->chains.at("input").matches(*rules::arp_table({}, {}).chain("input")));
  }
  SUBCASE("a set re-defined keeps the elements the cache holds; removed, it goes") {
    ObservedSet definition = plain_v4_set();
    Touched t = apply_delta(o, delta::SetUpsert{arp, "vips", definition});
    CHECK(t.every_vip);
    CHECK(o.table(arp)->sets.at("vips").all_elements() ==
          std::vector<nft::Element>{rules::vip_element(range("10.100.0.0", "10.100.0.255")),
                                    rules::vip_element(range("192.0.2.10", "192.0.2.11"))});
    t = apply_delta(o, delta::SetRemoved{arp, "vips"});
    CHECK(t.changed);
    CHECK(o.table(arp)->sets.count("vips") == 0);
    CHECK_FALSE(apply_delta(o, delta::SetRemoved{arp, "vips"}).changed);
  }
}

TEST_CASE("a new table nobody owns is a change to the cache") {
  // TableUpsert compares the delta with a default-made entry: a new table
  // with flags 0 and no owner (`nft add table arp arpguard`) reports
  // changed = false, and the supervisor skips the event.
  Observed o = fresh_machine();
  const Touched t = apply_delta(o, delta::TableUpsert{rules::arp_table_id(), 0, std::nullopt});
  REQUIRE(o.table(rules::arp_table_id()) != nullptr);
  CHECK(t.changed);
}

TEST_CASE("rules: the host, not the VIPs") {
  Observed o = converged_machine();
  const nft::TableId arp = rules::arp_table_id();
  const ObservedRule foreign{99, "input", {nft::counter()}, 0, 0};
  Touched t = apply_delta(o, delta::RuleUpsert{arp, foreign});
  CHECK(t.changed);
  CHECK(t.host);
  CHECK_FALSE(t.every_vip);
  CHECK(o.table(arp)->rules.count(99) == 1);
  t = apply_delta(o, delta::RuleRemoved{arp, 99});
  CHECK(t.changed);
  CHECK(o.table(arp)->rules.count(99) == 0);
  CHECK_FALSE(apply_delta(o, delta::RuleRemoved{arp, 99}).changed);
}

TEST_CASE("a duplicate definition of a chain, set or rule reports no change") {
  // Touched::changed is "the cache differs from before"; ChainUpsert, SetUpsert
  // and RuleUpsert always say true, so a repeated event costs a diff and is
  // counted as a foreign change.
  Observed o = converged_machine();
  const nft::TableId arp = rules::arp_table_id();
  const ObservedTable table = *o.table(arp);
  const std::string before = snapshot(o);
  CHECK_FALSE(apply_delta(o, delta::ChainUpsert{arp, "input", table.chains.at("input")}).changed);
  CHECK_FALSE(apply_delta(o, delta::SetUpsert{arp, "vips", table.sets.at("vips")}).changed);
  CHECK_FALSE(apply_delta(o, delta::RuleUpsert{arp, table.rules.begin()->second}).changed);
  CHECK(snapshot(o) == before);
}

TEST_CASE("a late event for a table the cache no longer holds does not make one up") {
  // Elements of an unknown set ask for a resync; a rule, chain or set of an
  // unknown table instead creates the table in the cache, empty but for it.
  // Diff then plans against a table the kernel does not have: here the
  // daemon's "nft delete table arp arpguard", which the kernel refuses
  // (ENOENT), failing the whole batch.
  const Policy policy = policy_of(vip("192.0.2.10"));
  Observed o = converged(policy);
  const nft::TableId arp = rules::arp_table_id();
  const ObservedRule late = o.table(arp)->rules.begin()->second;
  apply_delta(o, delta::TableRemoved{arp});
  const std::string gone = snapshot(o);

  const Touched t = apply_delta(o, delta::RuleUpsert{arp, late});
  CHECK(t.resync);
  CHECK(snapshot(o) == gone);
  const Plan plan = plan_of(policy, o, /*daemon=*/true);
  Observed kernel = o;
  kernel.tables.erase(arp);  // what the kernel really holds
  CHECK(apply_to(kernel, plan) == Lines{});
}

TEST_CASE("elements: interval points name the addresses they bound; whole elements their ranges") {
  Observed o = converged_machine();
  SUBCASE("a range's start and its end point, one past it") {
    const Touched t = apply_delta(o, delta::ElementsRemoved{kArpVips, {start("192.0.2.10"), end("192.0.2.12")}, {}});
    CHECK(t.changed);
    CHECK_FALSE(t.host);
    CHECK_FALSE(t.every_vip);
    CHECK(t.regions == std::vector<IpRange>{range("192.0.2.10", "192.0.2.10"), range("192.0.2.12", "192.0.2.12"),
                                            range("192.0.2.11", "192.0.2.11")});
    const std::vector<nft::Element> route_only{rules::vip_element(range("10.100.0.0", "10.100.0.255"))};
    CHECK(arp_vips(o).all_elements() == route_only);
    CHECK_FALSE(apply_delta(o, delta::ElementsRemoved{kArpVips, {start("192.0.2.10"), end("192.0.2.12")}, {}}).changed);
    CHECK(arp_vips(o).all_elements() == route_only);

    CHECK(apply_delta(o, delta::ElementsAdded{kArpVips, {start("192.0.2.10"), end("192.0.2.12")}, {}}).changed);
    CHECK(arp_vips(o).elements_overlapping(range("192.0.2.0", "192.0.2.255")) ==
          std::vector<nft::Element>{rules::vip_element(range("192.0.2.10", "192.0.2.11"))});
    CHECK_FALSE(apply_delta(o, delta::ElementsAdded{kArpVips, {start("192.0.2.10"), end("192.0.2.12")}, {}}).changed);
  }
  SUBCASE("nft's end marker at 0 touches 0 alone") {
    const Touched t = apply_delta(o, delta::ElementsAdded{kArpVips, {end("0.0.0.0")}, {}});
    CHECK(t.regions == std::vector<IpRange>{range("0.0.0.0", "0.0.0.0")});
  }
  SUBCASE("concatenated: the element's address range") {
    const nft::Element e{range("192.0.2.30", "192.0.2.30"), kProtoTcp, 80, 80, 0};
    const Touched t = apply_delta(o, delta::ElementsRemoved{kNatKeep, {}, {e}});
    CHECK(t.changed);
    CHECK(t.regions == std::vector<IpRange>{range("192.0.2.30", "192.0.2.30")});
    CHECK(o.table(kNatKeep.table)->sets.at("keep").elements.empty());
    CHECK_FALSE(apply_delta(o, delta::ElementsRemoved{kNatKeep, {}, {e}}).changed);
  }
  SUBCASE("elements of a set the cache does not know: read everything again, change nothing") {
    const std::string before = snapshot(o);
    const SetRef unknown{rules::ndp_table_id(), "other"};
    Touched t = apply_delta(o, delta::ElementsAdded{unknown, {start("2001:db8::1")}, {}});
    CHECK(t.resync);
    CHECK_FALSE(t.changed);
    t = apply_delta(o, delta::ElementsRemoved{SetRef{nft::TableId{nft::TableFamily::kIp, "nat"}, "x"}, {}, {}});
    CHECK(t.resync);
    CHECK(snapshot(o) == before);
  }
}

TEST_CASE("every kind of delta applied twice leaves the cache as applying it once") {
  const Observed base = converged_machine();
  const nft::TableId arp = rules::arp_table_id();
  const ObservedTable& table = *base.table(arp);
  const std::vector<Delta> deltas{
      delta::LinkUpsert{Link{3, "eth1", false, false, true, {}}},
      delta::AddressUpsert{AddressKey{ip("192.0.2.50"), 32, 3}, AddressInfo{kScopeGlobal, kAddrFlagPermanent}},
      delta::LinkRemoved{3},
      delta::AddressUpsert{AddressKey{ip("192.0.2.40"), 32, kLo}, AddressInfo{kScopeGlobal, kAddrFlagPermanent}},
      delta::AddressRemoved{AddressKey{ip("192.0.2.10"), 32, kLo}},
      delta::RouteUpsert{RouteKey{prefix("10.200.0.0/16"), 0}, RouteInfo{kLo, kRouteProtoArpguard, kScopeHost}},
      delta::RouteRemoved{RouteKey{prefix("10.100.0.0/24"), 0}},
      delta::TableUpsert{arp, nft::kTableFlagPersist, std::nullopt},
      delta::ChainRemoved{arp, "output"},
      delta::ChainUpsert{arp, "output", table.chains.at("output")},
      delta::SetUpsert{arp, "vips", table.sets.at("vips")},
      delta::RuleRemoved{arp, table.rules.begin()->first},
      delta::RuleUpsert{arp, ObservedRule{77, "input", {nft::counter()}, 0, 0}},
      delta::ElementsRemoved{kArpVips, {start("192.0.2.10"), end("192.0.2.12")}, {}},
      delta::ElementsAdded{kArpVips, {start("192.0.2.40"), end("192.0.2.41")}, {}},
      delta::ElementsAdded{kNatKeep, {}, {nft::Element{range("192.0.2.30", "192.0.2.30"), kProtoUdp, 53, 53, 0}}},
      delta::ElementsRemoved{kNatKeep, {}, {nft::Element{range("192.0.2.30", "192.0.2.30"), kProtoTcp, 80, 80, 0}}},
      delta::SetRemoved{rules::ndp_table_id(), "vips"},
      delta::TableRemoved{rules::nat_table_id(Family::kV6)},
  };
  Observed once = base;
  Observed twice = base;
  for (const Delta& d : deltas) {
    CAPTURE(describe(d, once));
    apply_delta(once, d);
    apply_delta(twice, d);
    apply_delta(twice, d);
    CHECK(snapshot(twice) == snapshot(once));
  }
  CHECK(snapshot(once) != snapshot(base));
}

TEST_CASE("a removal of something absent changes nothing") {
  Observed o = fresh_machine();
  const std::string before = snapshot(o);
  const std::vector<Delta> absent{
      delta::LinkRemoved{9},
      delta::AddressRemoved{AddressKey{ip("203.0.113.1"), 32, kLo}},
      delta::RouteRemoved{RouteKey{prefix("203.0.113.0/24"), 0}},
      delta::TableRemoved{rules::arp_table_id()},
      delta::ChainRemoved{rules::arp_table_id(), "input"},
      delta::SetRemoved{rules::arp_table_id(), "vips"},
      delta::RuleRemoved{rules::arp_table_id(), 5},
  };
  for (const Delta& d : absent) {
    CAPTURE(describe(d, o));
    CHECK_FALSE(apply_delta(o, d).changed);
    CHECK(snapshot(o) == before);
  }
}

TEST_CASE("describe names each delta as the kernel message it came from") {
  const Observed o = fresh_machine();
  CHECK(describe(delta::AddressRemoved{AddressKey{ip("192.0.2.10"), 32, kLo}}, o) == "RTM_DELADDR 192.0.2.10/32 dev lo");
  CHECK(describe(delta::LinkRemoved{9}, o) == "RTM_DELLINK ifindex 9");
  CHECK(describe(delta::TableRemoved{rules::arp_table_id()}, o) == "NFT_MSG_DELTABLE arp arpguard");
  CHECK(describe(delta::ElementsAdded{kArpVips, {}, {}}, o) == "NFT_MSG_NEWSETELEM arp arpguard @vips");
}

// ---- the audit's divergences ----

TEST_CASE("divergences: nothing for equal caches, one line for each difference") {
  const Observed cache = converged_machine();
  CHECK(divergences(cache, cache) == std::vector<std::string>{});
  Observed fresh = cache;
  const nft::TableId arp = rules::arp_table_id();

  SUBCASE("links") {
    fresh.links[3] = Link{3, "eth1", false, false, true, {}};
    fresh.links[kEth0].up = false;
    fresh.links.erase(kLo);
    CHECK(divergences(cache, fresh) == std::vector<std::string>{"link index 1 cached but gone", "link index 2 differs",
                                                                "link index 3 present but not cached"});
  }
  SUBCASE("addresses and routes") {
    remove_address(fresh, prefix("192.0.2.10/32"), kLo);
    add_address(fresh, prefix("192.0.2.40/32"), kLo);
    fresh.addresses[AddressKey{ip("2001:db8::10"), 128, kLo}].flags = kAddrFlagPermanent;
    fresh.local_routes.at(RouteKey{prefix("10.100.0.0/24"), 0}).protocol = 3;
    CHECK(divergences(cache, fresh) ==
          std::vector<std::string>{"address 192.0.2.10/32 cached but gone", "address 192.0.2.40/32 present but not cached",
                                   "address 2001:db8::10/128 differs", "local route 10.100.0.0/24 differs",
                                   "local route 192.0.2.10/32 cached but gone",
                                   "local route 192.0.2.40/32 present but not cached"});
  }
  SUBCASE("an IPv6 address under DAD: in the dump before its notification, no divergence") {
    fresh.addresses[AddressKey{ip("fe80::1"), 64, kEth0}].flags = kAddrFlagTentative;
    CHECK(divergences(cache, fresh) == std::vector<std::string>{});
    Observed notified = fresh;  // notified as tentative, then done: only a flag moved
    notified.addresses[AddressKey{ip("fe80::1"), 64, kEth0}].flags = kAddrFlagPermanent;
    CHECK(divergences(notified, fresh) == std::vector<std::string>{});
    fresh.addresses[AddressKey{ip("fe80::1"), 64, kEth0}].flags = 0;  // done, and still not notified: a divergence
    CHECK(divergences(cache, fresh) == std::vector<std::string>{"address fe80::1/64 present but not cached"});
  }
  SUBCASE("tables: gone, flags, rules, elements") {
    fresh.tables.erase(rules::nat_table_id(Family::kV4));
    fresh.tables.at(arp).flags = nft::kTableFlagPersist;
    fresh.tables.at(arp).rules.erase(fresh.tables.at(arp).rules.begin());
    remove_elements(ndp_vips(fresh), {rules::vip_element(range("2001:db8::10", "2001:db8::10"))});
    CHECK(divergences(cache, fresh) == std::vector<std::string>{"nft table arp arpguard flags differ",
                                                                "nft table arp arpguard rules differ",
                                                                "nft set ip6 arpguard @vips elements differ",
                                                                "nft table ip arpguard_nat cached but gone"});
  }
  SUBCASE("a table present but not cached") {
    Observed less = cache;
    less.tables.erase(arp);
    CHECK(divergences(less, fresh) == std::vector<std::string>{"nft table arp arpguard present but not cached"});
  }
}

TEST_CASE("divergences report chains and sets that differ, too") {
  // Only flags, rules and the elements of sets present in the kernel are
  // compared: a lost NFT_MSG_DELCHAIN, NFT_MSG_NEWCHAIN or NFT_MSG_DELSET goes
  // uncounted by the audit.
  const Observed cache = converged_machine();
  const nft::TableId arp = rules::arp_table_id();
  Observed fresh = cache;
  fresh.tables.at(arp).chains.erase("output");
  CHECK(divergences(cache, fresh).size() == 1);
  fresh = cache;
  fresh.tables.at(arp).chains.at("input").priority = -10;
  CHECK(divergences(cache, fresh).size() == 1);
  fresh = cache;
  fresh.tables.at(arp).sets.erase("vips");
  CHECK(divergences(cache, fresh).size() == 1);
}

// ---- interval sets as points ----

TEST_CASE("interval points read back as ranges") {
  ObservedSet set = plain_v4_set();
  SUBCASE("adjacent ranges share a key: an end and a start") {
    set.points = {start("10.0.0.10"), end("10.0.0.12"), start("10.0.0.12"), end("10.0.0.14")};
    const std::vector<nft::Element> both{rules::vip_element(range("10.0.0.10", "10.0.0.11")),
                                         rules::vip_element(range("10.0.0.12", "10.0.0.13"))};
    CHECK(set.all_elements() == both);
    CHECK(set.elements_overlapping(range("10.0.0.11", "10.0.0.12")) == both);
    CHECK(set.elements_overlapping(range("10.0.0.12", "10.0.0.12")) == std::vector<nft::Element>{both[1]});
    CHECK(set.elements_overlapping(range("10.0.0.11", "10.0.0.11")) == std::vector<nft::Element>{both[0]});
    CHECK(set.elements_overlapping(range("10.0.0.14", "10.0.0.200")).empty());
    CHECK(set.size() == 2);
  }
  SUBCASE("nft's leading end marker at 0 is not a range") {
    set.points = {end("0.0.0.0"), start("10.0.0.10"), end("10.0.0.11")};
    CHECK(set.all_elements() == std::vector<nft::Element>{rules::vip_element(range("10.0.0.10", "10.0.0.10"))});
    CHECK(set.elements_overlapping(range("0.0.0.0", "0.0.0.0")).empty());
    CHECK(set.elements_overlapping(range("0.0.0.0", "10.0.0.10")).size() == 1);
  }
  SUBCASE("a last range without an end runs to the end of the space") {
    set.points = {start("10.0.0.10"), end("10.0.0.11"), start("250.0.0.0")};
    const nft::Element open = rules::vip_element(range("250.0.0.0", "255.255.255.255"));
    CHECK(set.all_elements().back() == open);
    CHECK(set.elements_overlapping(range("255.255.255.255", "255.255.255.255")) == std::vector<nft::Element>{open});
  }
  SUBCASE("an IPv6 range without an end") {
    set.key_type = 8;
    set.key_len = 16;
    set.points = {start("2001:db8::")};
    CHECK(set.all_elements() == std::vector<nft::Element>{rules::vip_element(
                                    range("2001:db8::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))});
  }
  SUBCASE("a start without an end runs to the next start") {
    set.points = {start("10.0.0.10"), start("10.0.0.20"), end("10.0.0.22")};
    const std::vector<nft::Element> ranges{rules::vip_element(range("10.0.0.10", "10.0.0.19")),
                                           rules::vip_element(range("10.0.0.20", "10.0.0.21"))};
    CHECK(set.all_elements() == ranges);
    CHECK(set.elements_overlapping(range("10.0.0.15", "10.0.0.15")) == std::vector<nft::Element>{ranges[0]});
  }
  SUBCASE("an end without a start closes nothing") {
    set.points = {start("10.0.0.10"), end("10.0.0.11"), end("10.0.0.15")};
    CHECK(set.all_elements() == std::vector<nft::Element>{rules::vip_element(range("10.0.0.10", "10.0.0.10"))});
    CHECK(set.elements_overlapping(range("10.0.0.12", "10.0.0.20")).empty());
  }
}

namespace {

// Addresses near both ends of the IPv4 space, so 0 and the last address come up.
IpAddress random_address(std::mt19937& rng) {
  const uint32_t offset = std::uniform_int_distribution<uint32_t>(0, 47)(rng);
  return IpAddress::v4(offset < 24 ? offset : 0xffffffffu - (offset - 24));
}

IpRange random_range(std::mt19937& rng) {
  IpAddress first = random_address(rng);
  IpAddress last = first;
  for (uint32_t n = std::uniform_int_distribution<uint32_t>(0, 5)(rng); n > 0 && !last.is_max(); --n) last = last.next();
  return {first, last};
}

std::vector<std::pair<IpAddress, bool>> points_of(const IpRange& r) {
  std::vector<std::pair<IpAddress, bool>> out{{r.first, true}};
  if (!r.last.is_max()) out.push_back({r.last.next(), false});
  return out;
}

Observed with_empty_vips() {
  Observed o = fresh_machine();
  o.tables[rules::arp_table_id()].sets["vips"] = plain_v4_set();
  return o;
}

// Every element that overlaps any region of `area`, by looking at each.
std::vector<nft::Element> brute_overlapping_area(const ObservedSet& set, const std::vector<IpRange>& area) {
  std::vector<nft::Element> out;
  for (const nft::Element& e : set.all_elements()) {
    if (std::any_of(area.begin(), area.end(), [&](const IpRange& r) { return r.overlaps(e.addresses); })) out.push_back(e);
  }
  return out;
}

void check_overlapping_against_brute_force(std::mt19937& rng, const ObservedSet& set) {
  for (int q = 0; q < 8; ++q) {
    const IpRange query = random_range(rng);
    CAPTURE(query.str());
    CHECK(set.elements_overlapping(query) == brute_overlapping(set, query));
  }
  // Several regions at once (sorted and merged, as a diff's scope is): each
  // element that overlaps any of them, once, in order.
  std::vector<IpRange> queries;
  for (int q = std::uniform_int_distribution<int>(0, 4)(rng); q > 0; --q) queries.push_back(random_range(rng));
  const std::vector<IpRange> area = merge_ranges(queries);
  CHECK(set.elements_overlapping(area) == brute_overlapping_area(set, area));
}

}  // namespace

TEST_CASE("property: any sequence of point additions and removals keeps elements_overlapping a filter of all_elements") {
  for (unsigned seed = 1; seed <= 200; ++seed) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    Observed o = with_empty_vips();
    for (int step = 0; step < 40; ++step) {
      std::vector<std::pair<IpAddress, bool>> points;
      if (std::uniform_int_distribution<int>(0, 3)(rng) == 0) {
        points.push_back({random_address(rng), std::uniform_int_distribution<int>(0, 1)(rng) == 1});  // a lone point
      } else {
        points = points_of(random_range(rng));  // a whole range, maybe overlapping others
      }
      if (std::uniform_int_distribution<int>(0, 2)(rng) == 0) {
        apply_delta(o, delta::ElementsRemoved{kArpVips, points, {}});
      } else {
        apply_delta(o, delta::ElementsAdded{kArpVips, points, {}});
      }
      check_overlapping_against_brute_force(rng, arp_vips(o));
    }
  }
}

TEST_CASE("property: adding and removing whole, disjoint ranges touches every element that came or went") {
  for (unsigned seed = 1; seed <= 200; ++seed) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    Observed o = with_empty_vips();
    for (int step = 0; step < 40; ++step) {
      const std::vector<nft::Element> before = arp_vips(o).all_elements();
      Touched t;
      if (!before.empty() && std::uniform_int_distribution<int>(0, 2)(rng) == 0) {
        const IpRange gone = before[std::uniform_int_distribution<size_t>(0, before.size() - 1)(rng)].addresses;
        t = apply_delta(o, delta::ElementsRemoved{kArpVips, points_of(gone), {}});
      } else {
        const IpRange r = random_range(rng);
        if (!arp_vips(o).elements_overlapping(r).empty()) continue;  // the kernel refuses overlaps
        t = apply_delta(o, delta::ElementsAdded{kArpVips, points_of(r), {}});
      }
      const std::vector<nft::Element> after = arp_vips(o).all_elements();
      std::vector<nft::Element> came_or_went;
      std::set_symmetric_difference(before.begin(), before.end(), after.begin(), after.end(),
                                    std::back_inserter(came_or_went));
      CHECK(t.changed == !came_or_went.empty());
      for (const nft::Element& e : came_or_went) {
        CAPTURE(e.str());
        CHECK(std::any_of(t.regions.begin(), t.regions.end(), [&](const IpRange& r) { return r.overlaps(e.addresses); }));
      }
      check_overlapping_against_brute_force(rng, arp_vips(o));
    }
  }
}

TEST_CASE("property: the elements overlapping an area of many regions, searched region by region or walked, are the same") {
  // A set large beside the area is searched per region; one small beside it is walked.
  for (unsigned seed = 1; seed <= 50; ++seed) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    ObservedSet set = plain_v4_set();
    uint32_t at = std::uniform_int_distribution<uint32_t>(0, 3)(rng);
    for (int i = 0; i < 1000; ++i) {
      const uint32_t length = std::uniform_int_distribution<uint32_t>(1, 4)(rng);
      set.points.insert({IpAddress::v4(at), true});
      set.points.insert({IpAddress::v4(at + length), false});
      at += length + std::uniform_int_distribution<uint32_t>(0, 3)(rng);  // adjacent at times
    }
    for (int q = 0; q < 20; ++q) {
      std::vector<IpRange> queries;
      const int regions = q < 10 ? std::uniform_int_distribution<int>(1, 20)(rng) : std::uniform_int_distribution<int>(200, 900)(rng);
      for (int r = 0; r < regions; ++r) {
        const uint32_t first = std::uniform_int_distribution<uint32_t>(0, at + 2)(rng);
        queries.push_back({IpAddress::v4(first), IpAddress::v4(first + std::uniform_int_distribution<uint32_t>(0, 9)(rng))});
      }
      const std::vector<IpRange> area = merge_ranges(queries);
      CHECK(set.elements_overlapping(area) == brute_overlapping_area(set, area));
    }
  }
}
