#include "core/observed_delta.h"

#include <fmt/format.h>

#include "core/overloaded.h"

namespace arpguard {

void Touched::merge(Touched other) {
  all |= other.all;
  regions.insert(regions.end(), other.regions.begin(), other.regions.end());
  host |= other.host;
  changed |= other.changed;
  resync |= other.resync;
  every_vip |= other.every_vip;
  routing |= other.routing;
  link_addresses |= other.link_addresses;
}

namespace {

Touched region(const IpRange& range, bool changed) { return Touched{false, {range}, false, changed}; }
Touched host_only(bool changed) { return Touched{false, {}, true, changed}; }
// Source routing's objects: host state, and what ARP flux depends on.
Touched routing(bool changed) {
  Touched t = host_only(changed);
  t.routing = true;
  return t;
}
// A change to a table, set or chain: every VIP's suppression is in question.
Touched structure(bool changed) { return Touched{false, {}, true, changed, false, true}; }
// A change to something of a table the cache does not hold: a late event, or a missed one.
Touched unknown_table() { return Touched{false, {}, true, false, true, false}; }

ObservedTable* table_of(Observed& observed, const nft::TableId& id) {
  auto it = observed.tables.find(id);
  return it == observed.tables.end() ? nullptr : &it->second;
}

ObservedSet* set_of(Observed& observed, const SetRef& ref) {
  ObservedTable* table = table_of(observed, ref.table);
  if (!table) return nullptr;
  auto it = table->sets.find(ref.set);
  return it == table->sets.end() ? nullptr : &it->second;
}

// The addresses an interval point stands for: a start is its own; an end
// (one past a range) also touches the range's last address.
void point_regions(const std::vector<std::pair<IpAddress, bool>>& points, Touched& touched) {
  for (const auto& [key, is_start] : points) {
    touched.regions.push_back(IpRange::single(key));
    if (!is_start && key.value != 0) touched.regions.push_back(IpRange::single(key.prev()));
  }
}

bool is_loopback(const Observed& observed, int index) {
  const Link* link = observed.link_at(index);
  return link && link->loopback;
}

Touched address_region(const Observed& observed, const AddressKey& key, bool changed) {
  Touched t = region(IpRange::single(key.address), changed);
  t.link_addresses = !is_loopback(observed, key.link_index);
  return t;
}

}  // namespace

Touched apply_delta(Observed& observed, const Delta& change) {
  return std::visit(
      Overloaded{
          [&](const delta::LinkUpsert& d) {
            auto it = observed.links.find(d.link.index);
            // Up or down counts too: each VIP on the device is ready or not with it.
            const bool everything = it == observed.links.end() || it->second.name != d.link.name ||
                                    it->second.loopback != d.link.loopback || it->second.noarp != d.link.noarp ||
                                    it->second.up != d.link.up;
            const bool changed = it == observed.links.end() || !(it->second == d.link);
            observed.links[d.link.index] = d.link;
            // A new, renamed, raised or downed link moves VIPs and ARP-facing interfaces: everything is in question.
            return Touched{everything, {}, true, changed};
          },
          [&](const delta::LinkRemoved& d) {
            const bool changed = observed.links.erase(d.index) != 0;
            std::vector<AddressKey> gone;
            for (const auto& [key, info] : observed.addresses) {
              if (key.link_index == d.index) gone.push_back(key);
            }
            for (const AddressKey& key : gone) observed.remove_address(key);
            // The kernel sends no RTM_DELROUTE for the routes that go with a link.
            size_t routes = std::erase_if(observed.local_routes, [&](const auto& entry) {
              return entry.second.link_index == d.index;
            });
            routes += std::erase_if(observed.policy_routes, [&](const auto& entry) {
              return entry.second.link_index == d.index;
            });
            return Touched{true, {}, true, changed || !gone.empty() || routes != 0};
          },
          [&](const delta::AddressUpsert& d) {
            auto it = observed.addresses.find(d.key);
            const bool changed = it == observed.addresses.end() || !(it->second == d.info);
            observed.put_address(d.key, d.info);
            return address_region(observed, d.key, changed);
          },
          [&](const delta::AddressRemoved& d) {
            const bool changed = observed.addresses.count(d.key) != 0;
            observed.remove_address(d.key);
            return address_region(observed, d.key, changed);
          },
          [&](const delta::RouteUpsert& d) {
            auto it = observed.local_routes.find(d.key);
            const bool changed = it == observed.local_routes.end() || !(it->second == d.info);
            observed.local_routes[d.key] = d.info;
            if (d.info.protocol == kRouteProtoArpguard) observed.managed_lengths.add(d.key.destination);
            return region(IpRange::of(d.key.destination), changed);
          },
          [&](const delta::RouteRemoved& d) {
            const bool changed = observed.local_routes.erase(d.key) != 0;
            return region(IpRange::of(d.key.destination), changed);
          },
          [&](const delta::PolicyRouteUpsert& d) {
            auto it = observed.policy_routes.find(d.key);
            const bool changed = it == observed.policy_routes.end() || !(it->second == d.info);
            observed.policy_routes[d.key] = d.info;
            return routing(changed);
          },
          [&](const delta::PolicyRouteRemoved& d) { return routing(observed.policy_routes.erase(d.key) != 0); },
          [&](const delta::RoutingRuleUpsert& d) {
            auto it = observed.rules.find(d.key);
            const bool changed = it == observed.rules.end() || !(it->second == d.info);
            observed.rules[d.key] = d.info;
            return routing(changed);
          },
          [&](const delta::RoutingRuleRemoved& d) { return routing(observed.rules.erase(d.key) != 0); },
          [&](const delta::Undecodable&) {
            Touched t;
            t.resync = true;
            return t;
          },
          [&](const delta::RoutingChanged&) {
            ++observed.routing_changes;
            Touched t;
            t.routing = true;
            return t;
          },
          [&](const delta::TableUpsert& d) {
            const bool existed = observed.tables.count(d.table) != 0;
            ObservedTable& table = observed.tables[d.table];
            const bool changed = !existed || table.flags != d.flags || table.owner != d.owner;
            table.flags = d.flags;
            table.owner = d.owner;
            return structure(changed);
          },
          [&](const delta::TableRemoved& d) {
            return structure(observed.tables.erase(d.table) != 0);
          },
          [&](const delta::ChainUpsert& d) {
            // Late, for a table the cache does not hold: read everything again rather than invent it.
            ObservedTable* table = table_of(observed, d.table);
            if (!table) return unknown_table();
            auto it = table->chains.find(d.name);
            const bool changed = it == table->chains.end() || !(it->second == d.chain);
            table->chains[d.name] = d.chain;
            return structure(changed);
          },
          [&](const delta::ChainRemoved& d) {
            ObservedTable* table = table_of(observed, d.table);
            return structure(table && table->chains.erase(d.name) != 0);
          },
          [&](const delta::SetUpsert& d) {
            ObservedTable* table = table_of(observed, d.table);
            if (!table) return unknown_table();
            auto it = table->sets.find(d.name);
            const bool changed = it == table->sets.end() || it->second.flags != d.set.flags ||
                                 it->second.key_type != d.set.key_type || it->second.key_len != d.set.key_len ||
                                 it->second.data_type != d.set.data_type || it->second.data_len != d.set.data_len;
            ObservedSet& set = table->sets[d.name];
            // A definition: the elements this cache holds stay.
            set.flags = d.set.flags;
            set.key_type = d.set.key_type;
            set.key_len = d.set.key_len;
            set.data_type = d.set.data_type;
            set.data_len = d.set.data_len;
            return structure(changed);
          },
          [&](const delta::SetRemoved& d) {
            ObservedTable* table = table_of(observed, d.table);
            return structure(table && table->sets.erase(d.name) != 0);
          },
          [&](const delta::RuleUpsert& d) {
            ObservedTable* table = table_of(observed, d.table);
            if (!table) return unknown_table();
            auto it = table->rules.find(d.rule.handle);
            const bool changed = it == table->rules.end() || it->second.chain != d.rule.chain ||
                                 it->second.exprs != d.rule.exprs;
            table->rules[d.rule.handle] = d.rule;  // counters move on; they are news to no one
            return host_only(changed);
          },
          [&](const delta::RuleRemoved& d) {
            ObservedTable* table = table_of(observed, d.table);
            return host_only(table && table->rules.erase(d.handle) != 0);
          },
          [&](const delta::ElementsAdded& d) {
            Touched t;
            ObservedSet* set = set_of(observed, d.set);
            if (!set) return Touched{false, {}, true, false, true};  // a set we do not know: read again
            for (const auto& point : d.points) t.changed |= set->points.insert(point).second;
            for (const nft::Element& e : d.elements) {
              t.changed |= set->elements.insert(e).second;
              t.regions.push_back(e.addresses);
            }
            point_regions(d.points, t);
            return t;
          },
          [&](const delta::ElementsRemoved& d) {
            Touched t;
            ObservedSet* set = set_of(observed, d.set);
            if (!set) return Touched{false, {}, true, false, true};
            for (const auto& point : d.points) t.changed |= set->points.erase(point) != 0;
            for (const nft::Element& e : d.elements) {
              t.changed |= set->elements.erase(e) != 0;
              t.regions.push_back(e.addresses);
            }
            point_regions(d.points, t);
            return t;
          },
      },
      change);
}

std::vector<std::pair<IpAddress, bool>> interval_points(const nft::Element& element) {
  std::vector<std::pair<IpAddress, bool>> out{{element.addresses.first, true}};
  if (!element.addresses.last.is_max()) out.emplace_back(element.addresses.last.next(), false);
  return out;
}

std::optional<Delta> committed_delta(const NftChange& change) {
  auto split = [](const nft::SetSpec& shape, const std::vector<nft::Element>& elements, auto& into) {
    for (const nft::Element& e : elements) {
      if (shape.concatenated()) {
        into.elements.push_back(e);
      } else {
        for (auto& point : interval_points(e)) into.points.push_back(point);
      }
    }
  };
  if (const auto* add = std::get_if<nft_change::AddElements>(&change)) {
    delta::ElementsAdded out{add->set, {}, {}};
    split(add->shape, add->elements, out);
    return Delta{std::move(out)};
  }
  if (const auto* del = std::get_if<nft_change::DelElements>(&change)) {
    delta::ElementsRemoved out{del->set, {}, {}};
    split(del->shape, del->elements, out);
    return Delta{std::move(out)};
  }
  return std::nullopt;
}

std::string describe(const Delta& change, const Observed& observed) {
  auto device = [&](int index) {
    const Link* link = observed.link_at(index);
    return link ? link->name : fmt::format("ifindex {}", index);
  };
  return std::visit(
      Overloaded{
          [&](const delta::LinkUpsert& d) {
            return fmt::format("RTM_NEWLINK {} (index {}, {})", d.link.name, d.link.index, d.link.up ? "up" : "down");
          },
          [&](const delta::LinkRemoved& d) { return fmt::format("RTM_DELLINK {}", device(d.index)); },
          [&](const delta::AddressUpsert& d) {
            return fmt::format("RTM_NEWADDR {} dev {}", d.key.prefix().str(), device(d.key.link_index));
          },
          [&](const delta::AddressRemoved& d) {
            return fmt::format("RTM_DELADDR {} dev {}", d.key.prefix().str(), device(d.key.link_index));
          },
          [&](const delta::RouteUpsert& d) {
            return fmt::format("RTM_NEWROUTE local {} table local", d.key.destination.str());
          },
          [&](const delta::RouteRemoved& d) {
            return fmt::format("RTM_DELROUTE local {} table local", d.key.destination.str());
          },
          [&](const delta::PolicyRouteUpsert& d) {
            return fmt::format("RTM_NEWROUTE {} dev {} table {}", d.key.destination.str(), device(d.info.link_index),
                               d.key.table);
          },
          [&](const delta::PolicyRouteRemoved& d) {
            return fmt::format("RTM_DELROUTE {} table {}", d.key.destination.str(), d.key.table);
          },
          [&](const delta::RoutingRuleUpsert& d) { return "RTM_NEWRULE " + d.key.str(); },
          [&](const delta::RoutingRuleRemoved& d) { return "RTM_DELRULE " + d.key.str(); },
          [&](const delta::RoutingChanged&) { return std::string("a route or rule changed"); },
          [&](const delta::Undecodable& d) { return "undecodable notification: " + d.what; },
          [&](const delta::TableUpsert& d) { return fmt::format("NFT_MSG_NEWTABLE {}", d.table.str()); },
          [&](const delta::TableRemoved& d) { return fmt::format("NFT_MSG_DELTABLE {}", d.table.str()); },
          [&](const delta::ChainUpsert& d) { return fmt::format("NFT_MSG_NEWCHAIN {} {}", d.table.str(), d.name); },
          [&](const delta::ChainRemoved& d) { return fmt::format("NFT_MSG_DELCHAIN {} {}", d.table.str(), d.name); },
          [&](const delta::SetUpsert& d) { return fmt::format("NFT_MSG_NEWSET {} {}", d.table.str(), d.name); },
          [&](const delta::SetRemoved& d) { return fmt::format("NFT_MSG_DELSET {} {}", d.table.str(), d.name); },
          [&](const delta::RuleUpsert& d) {
            return fmt::format("NFT_MSG_NEWRULE {} {} handle {}", d.table.str(), d.rule.chain, d.rule.handle);
          },
          [&](const delta::RuleRemoved& d) {
            return fmt::format("NFT_MSG_DELRULE {} handle {}", d.table.str(), d.handle);
          },
          [&](const delta::ElementsAdded& d) {
            return fmt::format("NFT_MSG_NEWSETELEM {}", d.set.str());
          },
          [&](const delta::ElementsRemoved& d) {
            return fmt::format("NFT_MSG_DELSETELEM {}", d.set.str());
          },
      },
      change);
}

namespace {

/// `unsettled(entry)`: an entry the kernel shows in a dump before it notifies
/// it, which no cache kept from notifications can hold yet.
template <class Map, class Describe, class Unsettled>
void compare_maps(const Map& cache, const Map& fresh, const char* what, Describe describe_key,
                  std::vector<std::string>& out, Unsettled unsettled) {
  auto a = cache.begin();
  auto b = fresh.begin();
  while (a != cache.end() || b != fresh.end()) {
    if (b == fresh.end() || (a != cache.end() && a->first < b->first)) {
      if (!unsettled(*a)) out.push_back(fmt::format("{} {} cached but gone", what, describe_key(a->first)));
      ++a;
    } else if (a == cache.end() || b->first < a->first) {
      if (!unsettled(*b)) out.push_back(fmt::format("{} {} present but not cached", what, describe_key(b->first)));
      ++b;
    } else {
      if (!(a->second == b->second) && !unsettled(*a) && !unsettled(*b)) {
        out.push_back(fmt::format("{} {} differs", what, describe_key(a->first)));
      }
      ++a;
      ++b;
    }
  }
}

template <class Map, class Describe>
void compare_maps(const Map& cache, const Map& fresh, const char* what, Describe describe_key,
                  std::vector<std::string>& out) {
  compare_maps(cache, fresh, what, describe_key, out, [](const auto&) { return false; });
}

bool same_definition(const ObservedSet& a, const ObservedSet& b) {
  return a.flags == b.flags && a.key_type == b.key_type && a.key_len == b.key_len && a.data_type == b.data_type &&
         a.data_len == b.data_len;
}

bool same_rules(const ObservedTable& a, const ObservedTable& b) {
  if (a.rules.size() != b.rules.size()) return false;
  for (auto x = a.rules.begin(), y = b.rules.begin(); x != a.rules.end(); ++x, ++y) {
    if (x->first != y->first || x->second.chain != y->second.chain || x->second.exprs != y->second.exprs) return false;
  }
  return true;
}

}  // namespace

std::vector<std::string> divergences(const Observed& cache, const Observed& fresh) {
  std::vector<std::string> out;
  compare_maps(cache.links, fresh.links, "link", [](int index) { return fmt::format("index {}", index); }, out);
  // An IPv6 address under duplicate address detection is in dumps at once,
  // and notified only when DAD is done (a second or so after its link came up).
  compare_maps(cache.addresses, fresh.addresses, "address", [](const AddressKey& k) { return k.prefix().str(); }, out,
               [](const auto& entry) { return entry.second.tentative(); });
  compare_maps(cache.local_routes, fresh.local_routes, "local route",
               [](const RouteKey& k) { return k.destination.str(); }, out);
  compare_maps(cache.policy_routes, fresh.policy_routes, "route",
               [](const PolicyRouteKey& k) { return fmt::format("{} table {}", k.destination.str(), k.table); }, out);
  compare_maps(cache.rules, fresh.rules, "rule", [](const RoutingRuleKey& k) { return k.str(); }, out);
  for (const auto& [id, table] : fresh.tables) {
    const ObservedTable* cached = cache.table(id);
    if (!cached) {
      out.push_back(fmt::format("nft table {} present but not cached", id.str()));
      continue;
    }
    if (cached->flags != table.flags) out.push_back(fmt::format("nft table {} flags differ", id.str()));
    if (!same_rules(*cached, table)) out.push_back(fmt::format("nft table {} rules differ", id.str()));
    compare_maps(cached->chains, table.chains, "nft chain", [&](const std::string& name) { return id.str() + " " + name; },
                 out);
    for (const auto& [name, set] : table.sets) {
      auto it = cached->sets.find(name);
      if (it == cached->sets.end()) {
        out.push_back(fmt::format("nft set {} @{} present but not cached", id.str(), name));
      } else if (!same_definition(it->second, set)) {
        out.push_back(fmt::format("nft set {} @{} definition differs", id.str(), name));
      } else if (it->second.all_elements() != set.all_elements()) {
        out.push_back(fmt::format("nft set {} @{} elements differ", id.str(), name));
      }
    }
    for (const auto& [name, set] : cached->sets) {
      if (!table.sets.count(name)) out.push_back(fmt::format("nft set {} @{} cached but gone", id.str(), name));
    }
  }
  for (const auto& [id, table] : cache.tables) {
    if (!fresh.table(id)) out.push_back(fmt::format("nft table {} cached but gone", id.str()));
  }
  return out;
}

}  // namespace arpguard
