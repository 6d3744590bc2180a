#include "world.h"

#include <cstdio>  // libnftnl/expr.h needs FILE
#include <cstring>

#include <fmt/format.h>
#include <libnftnl/expr.h>
#include <linux/netfilter/nf_tables.h>

#include "core/engine.h"
#include "core/overloaded.h"
#include "rules/expr.h"
#include "rules/tables.h"

namespace arpguard::world {

IpAddress ip(std::string_view text) {
  auto parsed = IpAddress::parse(text);
  REQUIRE_MESSAGE(parsed.has_value(), std::string(text));
  return *parsed;
}

IpPrefix prefix(std::string_view text) {
  auto parsed = IpPrefix::parse(text);
  REQUIRE_MESSAGE(parsed.has_value(), std::string(text));
  return *parsed;
}

IpRange range(std::string_view first, std::string_view last) { return {ip(first), ip(last)}; }

Policy policy_of(std::string_view text) {
  PolicyResult result = parse_policy(text, "policy.toml");
  for (const Diagnostic& d : result.errors) FAIL_CHECK(d.str());
  REQUIRE(result.policy.has_value());
  return *result.policy;
}

std::string vip(std::string_view address, std::string_view extra) {
  return fmt::format("[[vip]]\naddress = \"{}\"\n{}", address, extra);
}

namespace {

void put_kernel_route(Observed& observed, const IpAddress& address, int link) {
  observed.local_routes[RouteKey{IpPrefix::host(address), 0}] = RouteInfo{link, kRouteProtoKernel, kScopeHost};
}

}  // namespace

void add_address(Observed& observed, const IpPrefix& p, int link, uint8_t scope, bool deprecated) {
  uint32_t flags = kAddrFlagPermanent;
  if (deprecated) flags |= kAddrFlagNoDad | kAddrFlagDeprecated;
  observed.put_address(AddressKey{p.address, p.length, link}, AddressInfo{scope, flags});
  put_kernel_route(observed, p.address, link);
}

void remove_address(Observed& observed, const IpPrefix& p, int link) {
  observed.remove_address(AddressKey{p.address, p.length, link});
  // The kernel's local route goes with the last address of that value.
  if (!observed.addresses_of(p.address).empty()) return;
  auto route = observed.local_routes.find(RouteKey{IpPrefix::host(p.address), 0});
  if (route != observed.local_routes.end() && route->second.protocol == kRouteProtoKernel) {
    observed.local_routes.erase(route);
  }
}

namespace {

bool concatenated(const ObservedSet& set) { return (set.flags & NFT_SET_CONCAT) != 0; }

std::pair<IpAddress, bool> start_of(const IpRange& r) { return {r.first, true}; }
std::pair<IpAddress, bool> end_of(const IpRange& r) { return {r.last.next(), false}; }

}  // namespace

void add_elements(ObservedSet& set, const std::vector<nft::Element>& elements) {
  for (const nft::Element& e : elements) {
    if (concatenated(set)) {
      set.elements.insert(e);
      continue;
    }
    set.points.insert(start_of(e.addresses));
    if (!e.addresses.last.is_max()) set.points.insert(end_of(e.addresses));
  }
}

void remove_elements(ObservedSet& set, const std::vector<nft::Element>& elements) {
  for (const nft::Element& e : elements) {
    if (concatenated(set)) {
      set.elements.erase(e);
      continue;
    }
    set.points.erase(start_of(e.addresses));
    if (!e.addresses.last.is_max()) set.points.erase(end_of(e.addresses));
  }
}

std::vector<nft::Expr> as_dumped(const std::vector<nft::Expr>& sent) {
  auto is_register = [](const nft::Expr& e, uint16_t type) {
    if (e.name == "payload") return type == NFTNL_EXPR_PAYLOAD_DREG || type == NFTNL_EXPR_PAYLOAD_SREG;
    if (e.name == "meta") return type == NFTNL_EXPR_META_DREG || type == NFTNL_EXPR_META_SREG;
    if (e.name == "cmp") return type == NFTNL_EXPR_CMP_SREG;
    if (e.name == "immediate") return type == NFTNL_EXPR_IMM_DREG;
    if (e.name == "lookup") return type == NFTNL_EXPR_LOOKUP_SREG || type == NFTNL_EXPR_LOOKUP_DREG;
    if (e.name == "byteorder") return type == NFTNL_EXPR_BYTEORDER_SREG || type == NFTNL_EXPR_BYTEORDER_DREG;
    if (e.name == "redir") return type == NFTNL_EXPR_REDIR_REG_PROTO_MIN || type == NFTNL_EXPR_REDIR_REG_PROTO_MAX;
    return false;
  };
  std::vector<nft::Expr> out = sent;
  for (nft::Expr& e : out) {
    for (nft::ExprAttr& attr : e.attrs) {
      if (!is_register(e, attr.type) || attr.bytes.size() != 4) continue;
      uint32_t reg = 0;
      std::memcpy(&reg, attr.bytes.data(), 4);
      if (reg == NFT_REG_VERDICT) continue;
      // nft_parse_register(), then nft_dump_register(): 32-bit slots, a 16-byte
      // register wherever a slot starts one.
      const uint32_t slot = reg < NFT_REG32_00 ? reg * 4 : reg - NFT_REG32_00 + 4;
      const uint32_t dumped = slot % 4 == 0 ? slot / 4 : slot - 4 + NFT_REG32_00;
      attr.bytes = nft::u32_bytes(dumped);
    }
  }
  return nft::normalized(std::move(out));
}

namespace {

// The nft part of a plan: one transaction, refused whole on the first error.
class NftBatch {
 public:
  explicit NftBatch(Observed& observed) : o_(observed) {}

  std::optional<std::string> apply(const NftChange& change) {
    using namespace nft_change;
    return std::visit(
        Overloaded{
            [&](const CreateTable& c) -> std::optional<std::string> {
              auto it = o_.tables.find(c.table);
              if (it == o_.tables.end()) {
                if (c.adopt) return "ENOENT: adopt " + c.table.str();
                ObservedTable t;
                t.flags = c.flags;
                if (c.flags & nft::kTableFlagOwner) t.owner = o_.nft_portid;
                o_.tables.emplace(c.table, std::move(t));
                return std::nullopt;
              }
              if (auto denied = foreign_owner(c.table)) return denied;
              if (c.adopt) {
                if (!it->second.persistent()) return "EOPNOTSUPP: adopt a table without PERSIST " + c.table.str();
                it->second.flags |= nft::kTableFlagOwner;
                it->second.owner = o_.nft_portid;
                return std::nullopt;
              }
              if (it->second.flags != c.flags) return "EOPNOTSUPP: other flags on " + c.table.str();
              return std::nullopt;
            },
            [&](const DeleteTable& c) -> std::optional<std::string> {
              if (!o_.tables.count(c.table)) return "ENOENT: delete table " + c.table.str();
              if (auto denied = foreign_owner(c.table)) return denied;
              o_.tables.erase(c.table);
              return std::nullopt;
            },
            [&](const CreateSet& c) -> std::optional<std::string> {
              ObservedTable* t = table(c.table);
              if (!t) return "ENOENT: create set in " + c.table.str();
              if (auto denied = foreign_owner(c.table)) return denied;
              ObservedSet set;
              set.flags = c.set.flags();
              set.key_type = c.set.key_type();
              set.key_len = c.set.key_len();
              set.data_type = c.set.data ? static_cast<uint32_t>(*c.set.data) : 0;
              set.data_len = c.set.data ? 2 : 0;
              auto it = t->sets.find(c.set.name);
              if (it != t->sets.end()) {
                if (!it->second.matches(c.set)) return "EEXIST: set " + c.set.name + " of another type";
                return std::nullopt;
              }
              t->sets.emplace(c.set.name, std::move(set));
              return std::nullopt;
            },
            [&](const CreateChain& c) -> std::optional<std::string> {
              ObservedTable* t = table(c.table);
              if (!t) return "ENOENT: create chain in " + c.table.str();
              if (auto denied = foreign_owner(c.table)) return denied;
              t->chains.try_emplace(c.chain.name, ObservedChain{c.chain.type, c.chain.hook, c.chain.priority, 1, true});
              return std::nullopt;
            },
            [&](const AddElements& c) -> std::optional<std::string> {
              ObservedSet* set = set_of(c.set);
              if (!set) return "ENOENT: add elements to " + c.set.str();
              if (auto denied = foreign_owner(c.set.table)) return denied;
              for (const nft::Element& e : c.elements) {
                for (const nft::Element& other : overlapping(*set, e)) {
                  if (!(other == e)) return fmt::format("EEXIST: {} overlaps {} in {}", e.str(), other.str(), c.set.str());
                }
                add_elements(*set, {e});
              }
              return std::nullopt;
            },
            [&](const DelElements& c) -> std::optional<std::string> {
              ObservedSet* set = set_of(c.set);
              if (!set) return "ENOENT: delete elements from " + c.set.str();
              if (auto denied = foreign_owner(c.set.table)) return denied;
              for (const nft::Element& e : c.elements) {
                const bool present = concatenated(*set)
                                         ? set->elements.count(e) != 0
                                         : set->points.count(start_of(e.addresses)) != 0 &&
                                               (e.addresses.last.is_max() || set->points.count(end_of(e.addresses)) != 0);
                if (!present) return fmt::format("ENOENT: {} not in {}", e.str(), c.set.str());
                remove_elements(*set, {e});
              }
              return std::nullopt;
            },
            [&](const AddRule& c) -> std::optional<std::string> {
              ObservedTable* t = table(c.table);
              if (!t || !t->chains.count(c.rule.chain)) return "ENOENT: add rule to " + c.table.str() + " " + c.rule.chain;
              if (auto denied = foreign_owner(c.table)) return denied;
              const uint64_t handle = t->rules.empty() ? 10 : t->rules.rbegin()->first + 1;
              t->rules[handle] = ObservedRule{handle, c.rule.chain, as_dumped(c.rule.exprs), 0, 0};
              return std::nullopt;
            },
            [&](const DelRule& c) -> std::optional<std::string> {
              ObservedTable* t = table(c.table);
              if (!t || !t->rules.count(c.handle)) return fmt::format("ENOENT: rule handle {} in {}", c.handle, c.table.str());
              if (auto denied = foreign_owner(c.table)) return denied;
              t->rules.erase(c.handle);
              return std::nullopt;
            },
        },
        change);
  }

 private:
  ObservedTable* table(const nft::TableId& id) {
    auto it = o_.tables.find(id);
    return it == o_.tables.end() ? nullptr : &it->second;
  }
  ObservedSet* set_of(const SetRef& ref) {
    ObservedTable* t = table(ref.table);
    if (!t) return nullptr;
    auto it = t->sets.find(ref.set);
    return it == t->sets.end() ? nullptr : &it->second;
  }
  // An owned table answers only its owner's socket.
  std::optional<std::string> foreign_owner(const nft::TableId& id) {
    ObservedTable* t = table(id);
    if (t && t->owned() && t->owner != o_.nft_portid) return "EPERM: " + id.str() + " is owned by another socket";
    return std::nullopt;
  }
  static std::vector<nft::Element> overlapping(const ObservedSet& set, const nft::Element& e) {
    std::vector<nft::Element> out;
    for (const nft::Element& other : set.elements_overlapping(e.addresses)) {
      if (!concatenated(set) ||
          (other.protocol == e.protocol && other.port_first <= e.port_last && e.port_first <= other.port_last)) {
        out.push_back(other);
      }
    }
    return out;
  }

  Observed& o_;
};

ManagedVip managed_of_address(const IpPrefix& p, const std::string& device) { return {p, VipKind::kAddress, device}; }

}  // namespace

Lines apply_to(Observed& observed, const Plan& plan, const Desired* desired) {
  Lines refused;
  std::vector<const Action*> deletions, routing, sysctls, nft, additions;
  for (const Action& action : plan.actions) {
    std::visit(Overloaded{
                   [&](const DelAddress&) { deletions.push_back(&action); },
                   [&](const DelRoute&) { deletions.push_back(&action); },
                   [&](const RoutingChange&) { routing.push_back(&action); },
                   [&](const SetSysctl&) { sysctls.push_back(&action); },
                   [&](const NftChange&) { nft.push_back(&action); },
                   [&](const AddAddress&) { additions.push_back(&action); },
                   [&](const AddRoute&) { additions.push_back(&action); },
               },
               action);
  }
  // 1. VIP deletions; one already gone is done (rtnl's idempotence).
  for (const Action* action : deletions) {
    if (const auto* a = std::get_if<DelAddress>(action)) {
      remove_address(observed, a->key.prefix(), a->key.link_index);
      observed.state.vips.erase(managed_of_address(a->key.prefix(), a->device));
    } else if (const auto* r = std::get_if<DelRoute>(action)) {
      observed.local_routes.erase(r->key);
      observed.state.vips.erase(ManagedVip{r->key.destination, VipKind::kRoute, r->device});
    }
  }
  // 2. Source routing.
  for (const Action* action : routing) {
    const auto& change = std::get<RoutingChange>(*action);
    if (const auto* r = std::get_if<PolicyRoute>(&change.object)) {
      if (change.add) {
        observed.policy_routes[r->key] = r->info;
      } else {
        observed.policy_routes.erase(r->key);
      }
    } else if (const auto* r = std::get_if<RoutingRule>(&change.object)) {
      if (change.add) {
        observed.rules[r->key] = r->info;
      } else {
        observed.rules.erase(r->key);
      }
    }
  }
  // 3. Sysctls, their first origin recorded.
  for (const Action* action : sysctls) {
    const auto& s = std::get<SetSysctl>(*action);
    observed.state.sysctl_origin.emplace(s.key, s.from);
    observed.sysctls[s.key] = s.to;
  }
  // 4. One nft transaction: all or nothing.
  if (!nft.empty()) {
    const auto before = observed.tables;
    NftBatch batch(observed);
    for (const Action* action : nft) {
      if (auto error = batch.apply(std::get<NftChange>(*action))) {
        refused.push_back("nft batch refused: " + *error);
        observed.tables = before;
        break;
      }
    }
  }
  // 5. VIP additions, each only once its suppression is verified (I1).
  std::map<IpPrefix, std::vector<Reason>> gaps;
  if (desired) {
    std::vector<IpPrefix> vips;
    for (const Action* action : additions) {
      if (const auto* a = std::get_if<AddAddress>(action)) vips.push_back(a->key.prefix());
      if (const auto* r = std::get_if<AddRoute>(action)) vips.push_back(r->key.destination);
    }
    gaps = gaps_before_adding(*desired, observed, vips);
  }
  auto blocked = [&](const IpPrefix& p) {
    auto it = gaps.find(p);
    if (it == gaps.end() || it->second.empty()) return false;
    refused.push_back(fmt::format("I1: {} not added: {}", p.str(), it->second.front().text));
    return true;
  };
  for (const Action* action : additions) {
    if (const auto* a = std::get_if<AddAddress>(action)) {
      if (blocked(a->key.prefix())) continue;
      const bool present = observed.addresses.count(a->key) != 0;
      if (!present || a->replace) add_address(observed, a->key.prefix(), a->key.link_index, a->scope, a->deprecated);
      observed.state.vips.insert(managed_of_address(a->key.prefix(), a->device));
    } else if (const auto* r = std::get_if<AddRoute>(action)) {
      if (blocked(r->key.destination)) continue;
      RouteKey key = r->key;
      // IPv6 stores a route asked for with metric 0 at IP6_RT_PRIO_USER.
      if (key.destination.family() == Family::kV6 && key.priority == 0) key.priority = 1024;
      observed.local_routes[key] = RouteInfo{r->link_index, kRouteProtoArpguard, kScopeHost};
      observed.state.vips.insert(ManagedVip{r->key.destination, VipKind::kRoute, r->device});
    }
  }
  return refused;
}

Observed fresh_machine() {
  Observed o;
  o.links[kLo] = Link{kLo, "lo", true, false, true, {}};
  o.links[kEth0] = Link{kEth0, "eth0", false, false, true, {}};
  add_address(o, prefix("127.0.0.1/8"), kLo, kScopeHost);
  o.local_routes[RouteKey{prefix("127.0.0.0/8"), 0}] = RouteInfo{kLo, kRouteProtoKernel, kScopeHost};
  add_address(o, prefix("::1/128"), kLo, kScopeHost);
  add_address(o, prefix("192.0.2.1/24"), kEth0);
  for (const char* scope : {"all", "default", "lo", "eth0"}) {
    for (const char* name : {kArpIgnore, kArpAnnounce, kArpFilter}) o.sysctls[SysctlKey{scope, name}] = 0;
  }
  o.persist_supported = true;
  o.nft_portid = kOurPort;
  return o;
}

Desired desired_of(const Policy& policy, const Observed& observed, bool daemon) {
  return make_desired(policy, observed, daemon);
}

Plan plan_of(const Policy& policy, const Observed& observed, bool daemon, const DiffScope& scope) {
  return Diff(desired_of(policy, observed, daemon), observed, scope);
}

Lines lines_of(const Policy& policy, const Observed& observed, bool daemon, const DiffScope& scope) {
  return plan_of(policy, observed, daemon, scope).lines();
}

void converge_once(Observed& observed, const Policy& policy, bool daemon) {
  const Desired desired = desired_of(policy, observed, daemon);
  const Plan plan = Diff(desired, observed);
  const Lines refused = apply_to(observed, plan, &desired);
  REQUIRE(refused == Lines{});
}

Observed converged(const Policy& policy, bool daemon) {
  Observed o = fresh_machine();
  converge_once(o, policy, daemon);
  return o;
}

ObservedSet& arp_vips(Observed& observed) {
  return observed.tables.at(rules::arp_table_id()).sets.at(std::string(rules::kVipSet));
}

ObservedSet& ndp_vips(Observed& observed) {
  return observed.tables.at(rules::ndp_table_id()).sets.at(std::string(rules::kVipSet));
}

std::multiset<std::string> facts(const Plan& plan) {
  std::multiset<std::string> out;
  for (const Action& action : plan.actions) {
    const auto* change = std::get_if<NftChange>(&action);
    if (const auto* add = change ? std::get_if<nft_change::AddElements>(change) : nullptr) {
      for (const nft::Element& e : add->elements) out.insert("add element " + add->set.str() + " " + e.str());
    } else if (const auto* del = change ? std::get_if<nft_change::DelElements>(change) : nullptr) {
      for (const nft::Element& e : del->elements) out.insert("delete element " + del->set.str() + " " + e.str());
    } else {
      out.insert(describe(action));
    }
  }
  return out;
}

}  // namespace arpguard::world
