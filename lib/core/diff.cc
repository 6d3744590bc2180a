#include "core/diff.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>

#include "rules/tables.h"

namespace arpguard {

nft::TableId suppression_table(const IpPrefix& prefix) {
  return prefix.family() == Family::kV4 ? rules::arp_table_id() : rules::ndp_table_id();
}

bool set_covers(const ObservedSet& set, const IpRange& range) {
  // Elements do not overlap: sorted, they must chain from range.first to range.last.
  std::vector<nft::Element> found = set.elements_overlapping(range);
  IpAddress next = range.first;
  for (const nft::Element& e : found) {
    if (e.addresses.first > next) return false;
    if (e.addresses.last >= range.last) return true;
    if (e.addresses.last >= next) next = e.addresses.last.next();
  }
  return false;
}

namespace {

// REQUIRES: `regions` sorted and merged (merge_ranges): O(log regions).
bool overlaps_any(const std::vector<IpRange>& regions, const IpRange& range) {
  auto it = std::lower_bound(regions.begin(), regions.end(), range.first,
                             [](const IpRange& r, const IpAddress& a) { return r.last < a; });
  return it != regions.end() && it->overlaps(range);
}

// A scope's regions sorted and merged: a deleted table touches every element,
// and 100,000 regions looked through one by one per VIP was quadratic.
DiffScope normalized(const DiffScope& scope) {
  DiffScope out{scope.everything, scope.host, {}};
  if (!scope.everything) out.regions = merge_ranges(scope.regions);
  return out;
}

// Every entry of `ordered` (a set or map ordered by an IpPrefix first) whose
// prefix overlaps `region`: those starting inside it, found by lower_bound,
// and those starting before it that contain region.first, one candidate
// prefix per length. O(bits * log n + k), never a walk over all of them.
// Only the lengths in `lengths` are tried.
template <class Ordered, class PrefixOf, class LowestKey, class Visit>
void for_each_overlapping(const Ordered& ordered, const IpRange& region, const PrefixLengths& lengths, PrefixOf prefix_of,
                          LowestKey lowest_key, Visit visit) {
  const int bits = region.first.bits();
  for (int length = 0; length < bits; ++length) {
    if (!lengths.has(region.first.family, length)) continue;
    const IpPrefix candidate{IpPrefix{region.first, static_cast<uint8_t>(length)}.first(), static_cast<uint8_t>(length)};
    if (candidate.address == region.first) continue;  // starts inside the region: the walk below finds it
    for (auto it = ordered.lower_bound(lowest_key(candidate)); it != ordered.end() && prefix_of(*it) == candidate; ++it) {
      visit(*it);
    }
  }
  for (auto it = ordered.lower_bound(lowest_key(IpPrefix{region.first, 0}));
       it != ordered.end() && prefix_of(*it).address.family == region.first.family && prefix_of(*it).address <= region.last;
       ++it) {
    visit(*it);
  }
}

// Indices of the bound VIPs in scope, in order.
std::vector<size_t> vips_in_scope(const DesiredVips& vips, const DiffScope& scope) {
  std::vector<size_t> out;
  if (scope.everything) {
    out.resize(vips.bound.size());
    for (size_t i = 0; i < out.size(); ++i) out[i] = i;
    return out;
  }
  for (const IpRange& region : scope.regions) {
    // The first VIP that may overlap: the one containing region.first, or the next after it.
    auto it = std::upper_bound(vips.bound.begin(), vips.bound.end(), region.first,
                               [](const IpAddress& a, const DesiredVip& v) { return a < v.prefix.first(); });
    if (it != vips.bound.begin() && std::prev(it)->prefix.contains(region.first)) --it;
    for (; it != vips.bound.end() && it->prefix.first() <= region.last; ++it) {
      if (IpRange::of(it->prefix).overlaps(region)) out.push_back(static_cast<size_t>(it - vips.bound.begin()));
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// What arpguard manages and may delete: its state record, and local routes carrying its protocol mark.
// REQUIRES: scope normalized.
std::vector<ManagedVip> managed_in_scope(const Observed& observed, const DiffScope& scope) {
  std::vector<ManagedVip> out;
  auto take_vip = [&](const ManagedVip& vip) { out.push_back(vip); };
  auto take_route = [&](const std::pair<const RouteKey, RouteInfo>& route) {
    if (route.second.protocol != kRouteProtoArpguard) return;
    const Link* link = observed.link_at(route.second.link_index);
    out.push_back({route.first.destination, VipKind::kRoute, link ? link->name : "lo"});
  };
  // Two runs, the record's VIPs and then the routes: each in order almost
  // always (the record is a set, routes come by destination, and the regions
  // are sorted), so merged in O(n) rather than sorted.
  std::ptrdiff_t routes_from = 0;
  // A scope of many regions (a deleted table) is cheaper walked than looked up.
  const bool walk = scope.everything ||
                    scope.regions.size() * 33 > observed.state.vips.size() + observed.local_routes.size();
  if (walk) {
    auto wanted = [&](const IpPrefix& p) { return scope.everything || overlaps_any(scope.regions, IpRange::of(p)); };
    for (const ManagedVip& vip : observed.state.vips) {
      if (wanted(vip.prefix)) take_vip(vip);
    }
    routes_from = static_cast<std::ptrdiff_t>(out.size());
    for (const auto& route : observed.local_routes) {
      if (wanted(route.first.destination)) take_route(route);
    }
  } else {
    for (const IpRange& region : scope.regions) {
      for_each_overlapping(
          observed.state.vips, region, observed.managed_lengths, [](const ManagedVip& v) { return v.prefix; },
          [](const IpPrefix& p) { return ManagedVip{p, VipKind::kAddress, ""}; }, take_vip);
    }
    routes_from = static_cast<std::ptrdiff_t>(out.size());
    for (const IpRange& region : scope.regions) {
      for_each_overlapping(
          observed.local_routes, region, observed.managed_lengths, [](const auto& route) { return route.first.destination; },
          [](const IpPrefix& p) { return RouteKey{p, 0}; }, take_route);
    }
  }
  const auto middle = out.begin() + routes_from;
  if (!std::is_sorted(out.begin(), middle)) std::sort(out.begin(), middle);
  if (!std::is_sorted(middle, out.end())) std::sort(middle, out.end());
  std::inplace_merge(out.begin(), middle, out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace

bool concerns_arpguard(const Desired& desired, const Observed& observed, const IpRange& region) {
  const DiffScope scope = DiffScope::of({region}, false);
  if (!vips_in_scope(desired.vips, scope).empty()) return true;
  const std::vector<IpPrefix>& redirected = desired.vips.redirected;  // sorted, apart
  auto after = std::upper_bound(redirected.begin(), redirected.end(), region.last,
                                [](const IpAddress& a, const IpPrefix& p) { return a < p.first(); });
  if (after != redirected.begin() && IpRange::of(*std::prev(after)).overlaps(region)) return true;
  if (!managed_in_scope(observed, scope).empty()) return true;
  for (const auto& [id, table] : observed.tables) {
    for (const auto& [name, set] : table.sets) {
      if (!set.elements_overlapping(region).empty()) return true;
    }
  }
  return false;
}

namespace {

class Differ {
 public:
  Differ(const Desired& desired, const Observed& observed, const DiffScope& scope)
      : desired_(desired), observed_(observed), scope_(normalized(scope)), route_cursor_(observed.local_routes.begin()) {
    for (const auto& [index, link] : observed.links) links_by_name_[link.name] = &link;
  }

  Plan run() {
    diff_bound_vips();
    diff_redirected();
    diff_unwanted();
    if (scope_.everything || scope_.host) {
      diff_source_routing();
      diff_sysctls();
    }
    diff_tables();
    Plan plan;
    plan.actions.reserve(deletions_.size() + routing_.size() + sysctls_.size() + nft_.size() + additions_.size());
    for (auto* part : {&deletions_, &routing_, &sysctls_, &nft_, &additions_}) {
      for (Action& action : *part) plan.actions.push_back(std::move(action));
    }
    return plan;
  }

 private:
  const Link* link(const std::string& name) const {
    auto it = links_by_name_.find(name);
    return it == links_by_name_.end() ? nullptr : it->second;
  }
  std::string link_name(int index) const {
    const Link* l = observed_.link_at(index);
    return l ? l->name : fmt::format("ifindex {}", index);
  }
  bool in_scope(const IpRange& range) const { return scope_.everything || overlaps_any(scope_.regions, range); }

  using RouteIt = std::map<RouteKey, RouteInfo>::const_iterator;
  // The first local route to `prefix` or after it. Asked for VIPs in order,
  // so a step or two on from the last answer instead of a search from the root.
  RouteIt routes_from(const IpPrefix& prefix) {
    const RouteKey key{prefix, 0};
    const auto& routes = observed_.local_routes;
    if (route_cursor_ == routes.begin() || std::prev(route_cursor_)->first < key) {
      RouteIt it = route_cursor_;
      for (int step = 0; step < 4; ++step, ++it) {
        if (it == routes.end() || !(it->first < key)) return route_cursor_ = it;
      }
    }
    return route_cursor_ = routes.lower_bound(key);
  }

  // ---- VIPs ----

  void diff_bound_vips() {
    for (size_t i : vips_in_scope(desired_.vips, scope_)) {
      const DesiredVip& vip = desired_.vips.bound[i];
      const Link* device = link(vip.device);
      if (vip.kind == VipKind::kAddress) {
        diff_address_vip(vip, device);
      } else if (device) {
        diff_route_vip(vip, *device);
      }
    }
  }

  void diff_address_vip(const DesiredVip& vip, const Link* device) {
    bool present = false;
    bool replace = false;
    bool there = false;  // on its device already, in some form
    for (const auto& [key, info] : observed_.addresses_of(vip.prefix.address)) {
      if (device && key.link_index == device->index && key.length == vip.prefix.length) {
        there = true;
        if (vip.prefix.family() == Family::kV4 && info.scope != vip.scope) {
          deletions_.emplace_back(DelAddress{key, vip.device, DelReason::kWrongAttributes, {}});
        } else {
          present = true;
          replace = vip.prefix.family() == Family::kV6 && info.deprecated() != vip.deprecated;
        }
      } else if (key.length == vip.prefix.length && (!device || key.link_index != device->index)) {
        deletions_.emplace_back(DelAddress{key, link_name(key.link_index), DelReason::kMisplaced, vip.device});
      }
    }
    if (device && (!present || replace)) {
      // Someone else's address put right (its scope, its lifetimes) stays someone else's.
      const bool adopted = there && !is_managed(vip.managed());
      additions_.emplace_back(AddAddress{AddressKey{vip.prefix.address, vip.prefix.length, device->index}, vip.device,
                                         vip.scope, vip.deprecated, replace, adopted});
    }
  }

  void diff_route_vip(const DesiredVip& vip, const Link& device) {
    bool present = false;
    for (auto it = routes_from(vip.prefix);
         it != observed_.local_routes.end() && it->first.destination == vip.prefix; ++it) {
      const auto& [key, info] = *it;
      if (info.protocol == kRouteProtoArpguard && info.link_index != device.index) {
        deletions_.emplace_back(DelRoute{key, info.link_index, link_name(info.link_index), DelReason::kWrongAttributes});
      } else {
        present = true;  // ours, or a foreign one that makes the prefix local all the same
      }
    }
    if (!present) additions_.emplace_back(AddRoute{RouteKey{vip.prefix, 0}, device.index, vip.device});
  }

  bool is_managed(const ManagedVip& vip) const {
    return observed_.state.vips.count(vip) != 0 ||
           (vip.kind == VipKind::kRoute && [&] {
             auto it = observed_.local_routes.lower_bound(RouteKey{vip.prefix, 0});
             return it != observed_.local_routes.end() && it->first.destination == vip.prefix &&
                    it->second.protocol == kRouteProtoArpguard;
           }());
  }

  // A redirected VIP is configured nowhere: where arpguard configured it, it goes.
  void diff_redirected() {
    for (const IpPrefix& prefix : desired_.vips.redirected) {
      if (!in_scope(IpRange::of(prefix))) continue;
      for (const auto& [key, info] : observed_.addresses_of(prefix.address)) {
        const std::string device = link_name(key.link_index);
        if (key.length == prefix.length && is_managed({prefix, VipKind::kAddress, device})) {
          deletions_.emplace_back(DelAddress{key, device, DelReason::kRedirected, {}});
        }
      }
      for (auto it = observed_.local_routes.lower_bound(RouteKey{prefix, 0});
           it != observed_.local_routes.end() && it->first.destination == prefix; ++it) {
        if (it->second.protocol == kRouteProtoArpguard) {
          deletions_.emplace_back(
              DelRoute{it->first, it->second.link_index, link_name(it->second.link_index), DelReason::kRedirected});
        }
      }
    }
  }

  // VIPs arpguard manages that the policy no longer has.
  void diff_unwanted() {
    size_t hint = 0;
    for (const ManagedVip& vip : managed_in_scope(observed_, scope_)) {
      const DesiredVip* wanted = desired_.vips.bound_containing(vip.prefix.address, hint);
      if (wanted && wanted->prefix == vip.prefix && wanted->kind == vip.kind) continue;  // wanted (moved if misplaced)
      if (desired_.vips.is_redirected(vip.prefix.address)) continue;                     // diff_redirected's
      if (vip.kind == VipKind::kAddress) {
        const Link* device = link(vip.device);
        if (!device) continue;
        auto it = observed_.addresses.find(AddressKey{vip.prefix.address, vip.prefix.length, device->index});
        if (it != observed_.addresses.end()) {
          deletions_.emplace_back(DelAddress{it->first, vip.device, DelReason::kNotInPolicy, {}});
        }
      } else {
        for (auto it = routes_from(vip.prefix); it != observed_.local_routes.end() && it->first.destination == vip.prefix;
             ++it) {
          if (it->second.protocol == kRouteProtoArpguard) {
            deletions_.emplace_back(
                DelRoute{it->first, it->second.link_index, link_name(it->second.link_index), DelReason::kNotInPolicy});
          }
        }
      }
    }
  }

  // ---- source routing ----

  // Routes in arpguard's tables and rules it made (protocol 247) that the host
  // no longer wants go; wanted ones missing or different are made. A rule
  // someone else made with the same selector and table serves as well.
  void diff_source_routing() {
    const uint32_t base = desired_.host.source_routing ? desired_.host.source_table_base : 0;
    auto ours_by_table = [&](uint32_t table) {
      return desired_.host.source_routing && table >= base && table - base < kSourceTables;
    };
    for (const auto& [key, info] : observed_.policy_routes) {
      const bool ours = ours_by_table(key.table) || info.protocol == kRouteProtoArpguard;
      if (!ours) continue;
      auto want = desired_.host.source_routes.find(key);
      if (want == desired_.host.source_routes.end() || !(want->second == info)) {
        routing_.emplace_back(RoutingChange{false, PolicyRoute{key, info}, link_name(info.link_index)});
      }
    }
    for (const auto& [key, info] : desired_.host.source_routes) {
      auto have = observed_.policy_routes.find(key);
      if (have == observed_.policy_routes.end() || !(have->second == info)) {
        routing_.emplace_back(RoutingChange{true, PolicyRoute{key, info}, link_name(info.link_index)});
      }
    }
    for (const auto& [key, info] : observed_.rules) {
      if (info.protocol == kRouteProtoArpguard && !desired_.host.source_rules.count(key)) {
        routing_.emplace_back(RoutingChange{false, RoutingRule{key, info}, ""});
      }
    }
    for (const auto& [key, info] : desired_.host.source_rules) {
      if (!observed_.rules.count(key)) routing_.emplace_back(RoutingChange{true, RoutingRule{key, info}, ""});
    }
  }

  // ---- sysctls ----

  void diff_sysctls() {
    for (const auto& [key, value] : desired_.host.sysctls) {
      auto it = observed_.sysctls.find(key);
      if (it != observed_.sysctls.end() && it->second != value) sysctls_.emplace_back(SetSysctl{key, it->second, value});
    }
  }

  // ---- nft tables ----

  void nft(NftChange change) { nft_.emplace_back(std::move(change)); }

  uint32_t create_flags() const {
    // OWNER only with PERSIST: an owned table without it would vanish when its owner exits.
    const bool owned = desired_.host.ownership != TableOwnership::kPlain && observed_.persist_supported;
    return owned ? nft::kTableFlagOwner | nft::kTableFlagPersist : 0;
  }

  // True when the observed table cannot be brought to the spec in place.
  bool must_replace(const nft::TableSpec& spec, const ObservedTable& table) const {
    for (const auto& [name, set] : table.sets) {
      const nft::SetSpec* want = spec.set(name);
      if (!want || !set.matches(*want)) return true;
    }
    for (const auto& [name, chain] : table.chains) {
      const nft::ChainSpec* want = spec.chain(name);
      if (!want || !chain.matches(*want)) return true;
    }
    // The daemon cannot take ownership of a table made without PERSIST (the
    // kernel does not change that flag later): it replaces it.
    return desired_.host.ownership == TableOwnership::kHold && observed_.persist_supported &&
           !observed_.table_is_ours(table) && !table.persistent();
  }

  void create_whole(const nft::TableSpec& spec) {
    nft(nft_change::CreateTable{spec.id, create_flags(), false});
    for (const nft::SetSpec& set : spec.sets) nft(nft_change::CreateSet{spec.id, set});
    for (const nft::ChainSpec& chain : spec.chains) nft(nft_change::CreateChain{spec.id, chain});
    for (const nft::SetSpec& set : spec.sets) {
      auto it = desired_.vips.elements.find(SetRef{spec.id, set.name});
      if (it != desired_.vips.elements.end() && !it->second.empty()) {
        nft(nft_change::AddElements{it->first, set, it->second});
      }
    }
    for (const nft::RuleSpec& rule : spec.rules) nft(nft_change::AddRule{spec.id, rule});
  }

  void diff_tables() {
    for (const nft::TableSpec& spec : desired_.host.tables) {
      const ObservedTable* table = observed_.table(spec.id);
      if (!table) {
        create_whole(spec);
        continue;
      }
      if (scope_.everything || scope_.host) {
        if (must_replace(spec, *table)) {
          // One atomic batch: protection never lapses.
          nft(nft_change::DeleteTable{spec.id});
          create_whole(spec);
          continue;
        }
        diff_structure(spec, *table);
      }
      for (const nft::SetSpec& set : spec.sets) {
        auto observed_set = table->sets.find(set.name);
        diff_elements(spec.id, set, observed_set == table->sets.end() ? nullptr : &observed_set->second);
      }
    }
    // Tables of arpguard's that the policy no longer needs.
    for (const auto& [id, table] : observed_.tables) {
      if (desired_.host.table(id) || !(scope_.everything || scope_.host)) continue;
      if (guards_something_configured(id, table)) continue;  // I8: kept, and reported
      nft(nft_change::DeleteTable{id});
    }
  }

  void diff_structure(const nft::TableSpec& spec, const ObservedTable& table) {
    if (desired_.host.ownership == TableOwnership::kHold && observed_.persist_supported &&
        !observed_.table_is_ours(table)) {
      nft(nft_change::CreateTable{spec.id, nft::kTableFlagOwner | nft::kTableFlagPersist, true});
    }
    for (const nft::SetSpec& set : spec.sets) {
      if (!table.sets.count(set.name)) nft(nft_change::CreateSet{spec.id, set});
    }
    for (const nft::ChainSpec& chain : spec.chains) {
      if (!table.chains.count(chain.name)) nft(nft_change::CreateChain{spec.id, chain});
    }
    // Rules: each chain holds exactly the desired rules, in their order (the log
    // rules of the wire watch come after the rules that protect, or a rewritten
    // sender would be reported as a leak). Order is handle order: arpguard only
    // appends. The observed rules that match the desired ones in order are kept;
    // every other rule goes, and the desired rules after the last one kept are
    // appended, all in the same atomic transaction. Rules of chains arpguard has
    // no use for go too.
    std::map<std::string, std::vector<const ObservedRule*>> observed_by_chain;
    for (const auto& [handle, rule] : table.rules) {
      const bool known = std::any_of(spec.chains.begin(), spec.chains.end(),
                                     [&](const nft::ChainSpec& c) { return c.name == rule.chain; });
      if (known) {
        observed_by_chain[rule.chain].push_back(&rule);
      } else {
        nft(nft_change::DelRule{spec.id, rule.chain, handle, kNotWanted});
      }
    }
    for (const nft::ChainSpec& chain : spec.chains) {
      std::vector<const nft::RuleSpec*> want;
      for (const nft::RuleSpec& rule : spec.rules) {
        if (rule.chain == chain.name) want.push_back(&rule);
      }
      size_t next = 0;  // the first desired rule not yet matched
      for (const ObservedRule* rule : observed_by_chain[chain.name]) {
        if (next < want.size() && want[next]->same_as(rule->chain, rule->exprs)) {
          ++next;
          continue;
        }
        const bool later = std::any_of(want.begin() + static_cast<std::ptrdiff_t>(next), want.end(),
                                       [&](const nft::RuleSpec* w) { return w->same_as(rule->chain, rule->exprs); });
        nft(nft_change::DelRule{spec.id, rule->chain, rule->handle, later ? kOutOfOrder : kNotWanted});
      }
      for (; next < want.size(); ++next) nft(nft_change::AddRule{spec.id, *want[next]});
    }
  }

  static constexpr const char* kNotWanted = "a rule arpguard does not want (someone else's, or for a changed interface)";
  static constexpr const char* kOutOfOrder = "out of order: it is added again after the rules before it";

  static std::vector<nft::Element> overlapping(const std::vector<nft::Element>& sorted, const std::vector<IpRange>& area) {
    std::vector<nft::Element> out;
    // Many regions for the elements: one walk beside them, not a search for each.
    if (area.size() * 16 >= sorted.size()) return elements_in_area(sorted, area);
    for (const IpRange& region : area) {
      // Sorted by address range; ranges of different elements do not overlap except in
      // concatenated sets, where one range repeats (tcp, udp): both monotonic in `last`.
      auto it = std::lower_bound(sorted.begin(), sorted.end(), region.first,
                                 [](const nft::Element& e, const IpAddress& a) { return e.addresses.last < a; });
      for (; it != sorted.end() && it->addresses.first <= region.last; ++it) out.push_back(*it);
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  }

  // Whether every element of `sorted` lies inside one region of `area`
  // (sorted and merged): one walk over both.
  static bool within(const std::vector<nft::Element>& sorted, const std::vector<IpRange>& area) {
    auto region = area.begin();
    for (const nft::Element& e : sorted) {
      while (region != area.end() && region->last < e.addresses.first) ++region;
      if (region == area.end() || e.addresses.first < region->first || region->last < e.addresses.last) return false;
    }
    return true;
  }

  void diff_elements(const nft::TableId& id, const nft::SetSpec& spec, const ObservedSet* set) {
    const SetRef ref{id, spec.name};
    static const std::vector<nft::Element> kNone;
    auto wanted_it = desired_.vips.elements.find(ref);
    const std::vector<nft::Element>& all_wanted = wanted_it == desired_.vips.elements.end() ? kNone : wanted_it->second;
    std::vector<nft::Element> want;
    std::vector<nft::Element> have;
    if (scope_.everything) {
      want = all_wanted;
      if (set) have = set->all_elements();
    } else {
      // Grow the area until it holds whole elements on both sides: replacing an
      // element must also take out whatever it would overlap, in the same batch.
      std::vector<IpRange> area = scope_.regions;  // normalized
      for (int round = 0; round < 8; ++round) {
        want = overlapping(all_wanted, area);
        if (set) have = set->elements_overlapping(area);
        if (within(want, area) && within(have, area)) break;  // usually at once: nothing to grow
        std::vector<IpRange> grown = area;
        for (const auto* list : {&want, &have}) {
          for (const nft::Element& e : *list) grown.push_back(e.addresses);
        }
        grown = merge_ranges(std::move(grown));
        if (grown == area) break;
        area = std::move(grown);
      }
    }
    if (!spec.concatenated()) want = with_kept_orphans(std::move(want), have);

    nft_change::DelElements stale{ref, shape_of(spec), {}};
    std::set_difference(have.begin(), have.end(), want.begin(), want.end(), std::back_inserter(stale.elements));
    nft_change::AddElements missing{ref, shape_of(spec), {}};
    std::set_difference(want.begin(), want.end(), have.begin(), have.end(), std::back_inserter(missing.elements));
    if (!stale.elements.empty()) nft(std::move(stale));
    if (!missing.elements.empty()) nft(std::move(missing));
  }

  static nft::SetSpec shape_of(const nft::SetSpec& spec) { return nft::SetSpec{spec.name, spec.key, spec.data, {}}; }

  // I8: an observed range the policy does not want, whose addresses are still
  // configured here, keeps its suppression (merged with what is wanted); not a
  // VIP of the policy that another method protects now (both -> sysctl).
  std::vector<nft::Element> with_kept_orphans(std::vector<nft::Element> want, const std::vector<nft::Element>& have) const {
    std::vector<IpRange> ranges;
    for (const nft::Element& e : want) ranges.push_back(e.addresses);
    bool kept = false;
    for (const nft::Element& e : have) {
      if (std::binary_search(want.begin(), want.end(), e)) continue;
      // Only what is still local: an interval merged from several VIPs does
      // not keep the whole run for the one of them someone else now holds.
      for (const IpRange& part : uncovered_parts(e.addresses, want)) {
        for (const IpRange& local : observed_.local_ranges_in(part)) {
          if (in_one_bound_vip(local) && sysctls_settled()) continue;
          ranges.push_back(local);
          kept = true;
        }
      }
    }
    if (!kept) return want;
    std::vector<nft::Element> out;
    for (const IpRange& r : merge_ranges(std::move(ranges))) out.push_back(rules::vip_element(r));
    return out;
  }

  // Every sysctl the policy sets already has its value in the kernel: only
  // then may a bound VIP lose its nft layer (the writes of this same plan
  // come before the nft transaction, but may fail).
  bool sysctls_settled() const {
    return std::all_of(desired_.host.sysctls.begin(), desired_.host.sysctls.end(), [&](const auto& entry) {
      auto it = observed_.sysctls.find(entry.first);
      return it != observed_.sysctls.end() && it->second == entry.second;
    });
  }

  bool in_one_bound_vip(const IpRange& part) const {
    const DesiredVip* vip = desired_.vips.bound_containing(part.first);
    return vip && IpRange::of(vip->prefix).last >= part.last;
  }

  // The parts of `range` that no element of `elements` (sorted) covers.
  // From the first element that reaches `range`, found by a search: walked
  // from the front for each of 50,000 elements a reload drops, this was
  // quadratic (3.7 s at 100,000 VIPs).
  static std::vector<IpRange> uncovered_parts(const IpRange& range, const std::vector<nft::Element>& elements) {
    std::vector<IpRange> out;
    IpAddress next = range.first;
    // `last` grows with the order (elements of a plain set do not overlap).
    auto it = std::lower_bound(elements.begin(), elements.end(), range.first,
                               [](const nft::Element& e, const IpAddress& a) { return e.addresses.last < a; });
    for (; it != elements.end(); ++it) {
      const nft::Element& e = *it;
      if (e.addresses.last < next) continue;
      if (e.addresses.first > range.last) break;
      if (e.addresses.first > next) out.push_back({next, e.addresses.first.prev()});
      if (e.addresses.last >= range.last) return out;
      next = e.addresses.last.next();
    }
    out.push_back({next, range.last});
    return out;
  }

  bool guards_something_configured(const nft::TableId& id, const ObservedTable& table) const {
    if (id != rules::arp_table_id() && id != rules::ndp_table_id()) return false;
    auto set = table.sets.find(std::string(rules::kVipSet));
    if (set == table.sets.end()) return false;
    for (const nft::Element& e : set->second.all_elements()) {
      if (observed_.anything_local_in(e.addresses) && !(in_one_bound_vip(e.addresses) && sysctls_settled())) return true;
    }
    return false;
  }

  const Desired& desired_;
  const Observed& observed_;
  const DiffScope scope_;  // normalized
  RouteIt route_cursor_;   // routes_from's last answer
  std::map<std::string, const Link*> links_by_name_;
  std::vector<Action> deletions_, routing_, sysctls_, nft_, additions_;
};

}  // namespace

Plan Diff(const Desired& desired, const Observed& observed, const DiffScope& scope) {
  return Differ(desired, observed, scope).run();
}

Plan plan_removal(const Desired& desired, const Observed& observed) {
  Plan plan;
  // 1. VIPs arpguard manages or the policy names, wherever they are.
  std::set<ManagedVip> ours = observed.state.vips;
  for (const DesiredVip& vip : desired.vips.bound) ours.insert(vip.managed());
  for (const ManagedVip& vip : managed_in_scope(observed, DiffScope::all())) ours.insert(vip);
  for (const ManagedVip& vip : ours) {
    if (vip.kind == VipKind::kAddress) {
      const Link* device = observed.link_named(vip.device);
      if (!device) continue;
      auto it = observed.addresses.find(AddressKey{vip.prefix.address, vip.prefix.length, device->index});
      if (it != observed.addresses.end()) plan.actions.emplace_back(DelAddress{it->first, vip.device, DelReason::kRemoving, {}});
    } else {
      for (auto it = observed.local_routes.lower_bound(RouteKey{vip.prefix, 0});
           it != observed.local_routes.end() && it->first.destination == vip.prefix; ++it) {
        if (it->second.protocol == kRouteProtoArpguard) {
          const Link* link = observed.link_at(it->second.link_index);
          plan.actions.emplace_back(DelRoute{it->first, it->second.link_index, link ? link->name : "?", DelReason::kRemoving});
        }
      }
    }
  }
  if (!plan.empty()) return plan;  // suppression goes in the next step, once the VIPs are gone

  // 2. Suppression, unless it still guards something configured (I8).
  bool kept = false;
  for (const auto& [id, table] : observed.tables) {
    const bool guards = [&] {
      auto set = table.sets.find(std::string(rules::kVipSet));
      if (set == table.sets.end()) return false;
      for (const nft::Element& e : set->second.all_elements()) {
        if (observed.anything_local_in(e.addresses)) return true;
      }
      return false;
    }();
    kept |= guards;
    if (!guards) plan.actions.emplace_back(NftChange{nft_change::DeleteTable{id}});
  }
  // 3. Source routing: the rules and routes arpguard made.
  for (const auto& [key, info] : observed.rules) {
    if (info.protocol == kRouteProtoArpguard) plan.actions.emplace_back(RoutingChange{false, RoutingRule{key, info}, ""});
  }
  for (const auto& [key, info] : observed.policy_routes) {
    if (info.protocol != kRouteProtoArpguard) continue;
    const Link* link = observed.link_at(info.link_index);
    plan.actions.emplace_back(RoutingChange{false, PolicyRoute{key, info}, link ? link->name : "?"});
  }
  if (kept) return plan;
  for (const auto& [key, origin] : observed.state.sysctl_origin) {
    auto it = observed.sysctls.find(key);
    if (it != observed.sysctls.end() && it->second != origin) plan.actions.emplace_back(SetSysctl{key, it->second, origin});
  }
  return plan;
}

// ---- verification ----

std::vector<Reason> sysctl_gaps(const Desired& desired, const SysctlValues& values) {
  std::vector<Reason> reasons;
  for (const auto& [key, value] : desired.host.sysctls) {
    auto it = values.find(key);
    if (it == values.end()) {
      reasons.push_back(not_ready(ReasonKind::kSysctlWrong, fmt::format("sysctl {} cannot be read", key.str())));
    } else if (it->second != value) {
      reasons.push_back(
          not_ready(ReasonKind::kSysctlWrong, fmt::format("sysctl {} is {}, want {}", key.str(), it->second, value)));
    }
  }
  if (!desired.host.uses_sysctls) return reasons;
  for (const std::string& name : desired.host.arp_facing) {
    const int ignore = effective_sysctl(values, name, kArpIgnore);
    if (!arp_ignore_protects(ignore)) {
      reasons.push_back(not_ready(ReasonKind::kArpIgnoreExposes,
                                  fmt::format("arp_ignore on {} is effectively {}, which answers ARP for VIPs", name, ignore)));
    }
    const int announce = effective_sysctl(values, name, kArpAnnounce);
    if (announce < desired.host.arp_announce) {
      reasons.push_back(not_ready(ReasonKind::kArpAnnounceLow, fmt::format("arp_announce on {} is effectively {}, want {}",
                                                                          name, announce, desired.host.arp_announce)));
    }
  }
  return reasons;
}

std::vector<Reason> table_gaps(const Desired& desired, const Observed& observed, const nft::TableId& id) {
  std::vector<Reason> reasons;
  const nft::TableSpec* spec = desired.host.table(id);
  if (!spec) return reasons;
  const ObservedTable* table = observed.table(id);
  if (!table) {
    reasons.push_back(not_ready(ReasonKind::kTableMissing, fmt::format("nft table {} is missing", id.str())));
    return reasons;
  }
  auto mismatch = [&](std::string what) {
    reasons.push_back(not_ready(ReasonKind::kTableMismatch, fmt::format("nft table {}: {}", id.str(), what)));
  };
  for (const nft::SetSpec& set : spec->sets) {
    auto it = table->sets.find(set.name);
    if (it == table->sets.end()) {
      mismatch(fmt::format("set {} is missing", set.name));
    } else if (!it->second.matches(set)) {
      mismatch(fmt::format("set {} has another type", set.name));
    }
  }
  for (const nft::ChainSpec& chain : spec->chains) {
    auto it = table->chains.find(chain.name);
    if (it == table->chains.end()) {
      mismatch(fmt::format("chain {} is missing", chain.name));
    } else if (!it->second.matches(chain)) {
      mismatch(fmt::format("chain {} has another hook, type or priority", chain.name));
    }
  }
  for (const nft::RuleSpec& rule : spec->rules) {
    const bool found = std::any_of(table->rules.begin(), table->rules.end(),
                                   [&](const auto& entry) { return rule.same_as(entry.second.chain, entry.second.exprs); });
    if (!found) mismatch(fmt::format("rule missing in {}: {}", rule.chain, rule.text));
  }
  return reasons;
}

std::vector<Reason> vip_suppression_gaps(const Desired&, const Observed& observed, const DesiredVip& vip) {
  std::vector<Reason> reasons;
  if (!uses_nftables(vip.method)) return reasons;
  const ObservedTable* table = observed.table(suppression_table(vip.prefix));
  const ObservedSet* set = nullptr;
  if (table) {
    auto it = table->sets.find(std::string(rules::kVipSet));
    if (it != table->sets.end()) set = &it->second;
  }
  if (!set || !set_covers(*set, IpRange::of(vip.prefix))) {
    reasons.push_back(not_ready(ReasonKind::kVipNotSuppressed,
                                fmt::format("vip {} not in nft set {} @vips", vip.prefix.str(),
                                            suppression_table(vip.prefix).str())));
  }
  return reasons;
}

}  // namespace arpguard
