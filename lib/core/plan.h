// A plan is a value: the ordered kernel changes that take Observed to Desired.
//
// Diff() emits actions in the order invariant I1 requires and Engine keeps
// it: VIP removals, then suppression (sysctls, one nft batch), then
// verification, then VIP additions. describe() gives the one line that logs,
// `apply --dry-run`, status and test failures all show; resource_of() names
// what an action changes, for telling who fights over it. Every consumer
// dispatches with std::visit and one overload per kind (STYLE 15).
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "core/desired.h"
#include "core/model.h"

namespace arpguard {

/// Why a VIP is deleted: a type, never parsed from text.
enum class DelReason : uint8_t {
  kNotInPolicy,      ///< arpguard made it and the policy no longer has it
  kMisplaced,        ///< a copy on another device, where it may be answered for
  kWrongAttributes,  ///< scope or kind the VIP's protection does not allow; re-added right
  kRedirected,       ///< a redirected VIP must be configured nowhere
  kRemoving,         ///< on_stop = "remove"
};
std::string_view to_string(DelReason reason);

struct DelAddress {
  AddressKey key;
  std::string device;
  DelReason why = DelReason::kNotInPolicy;
  std::string belongs_on;  ///< kMisplaced: the VIP's own device
};

struct DelRoute {
  RouteKey key;
  int link_index = 0;
  std::string device;
  DelReason why = DelReason::kNotInPolicy;
};

struct SetSysctl {
  SysctlKey key;
  int from = 0;
  int to = 0;
};

struct AddAddress {
  AddressKey key;
  std::string device;
  uint8_t scope = kScopeGlobal;
  bool deprecated = false;  ///< IPv6: preferred_lft 0 (and nodad)
  bool replace = false;     ///< present with other lifetimes: changed in place
  /// There before arpguard, not its own: changed as the VIP needs, never
  /// recorded as arpguard's, so never removed by it.
  bool adopted = false;
};

struct AddRoute {
  RouteKey key;
  int link_index = 0;
  std::string device;
};

/// Source routing (arp.source_routing): a route of one of arpguard's tables,
/// or a rule selecting one, added or deleted.
struct PolicyRoute {
  PolicyRouteKey key;
  PolicyRouteInfo info;
};
struct RoutingRule {
  RoutingRuleKey key;
  RoutingRuleInfo info;
};
struct RoutingChange {
  bool add = true;
  std::variant<PolicyRoute, RoutingRule> object;
  std::string device;  ///< the route's interface; empty for a rule
};

namespace nft_change {

/// NEWTABLE: creates the table with `flags`, or on an orphaned persistent
/// table of ours, takes ownership of it (adopt).
struct CreateTable {
  nft::TableId table;
  uint32_t flags = 0;
  bool adopt = false;
};
struct DeleteTable {
  nft::TableId table;
};
struct CreateSet {
  nft::TableId table;
  nft::SetSpec set;  ///< no elements
};
struct CreateChain {
  nft::TableId table;
  nft::ChainSpec chain;
};
struct AddElements {
  SetRef set;
  nft::SetSpec shape;  ///< the set's key and data types, no elements
  std::vector<nft::Element> elements;
};
struct DelElements {
  SetRef set;
  nft::SetSpec shape;
  std::vector<nft::Element> elements;
};
struct AddRule {
  nft::TableId table;
  nft::RuleSpec rule;
};
struct DelRule {
  nft::TableId table;
  std::string chain;
  uint64_t handle = 0;
  std::string what;  ///< the rule as nft prints it, or "a rule arpguard did not write"
};

}  // namespace nft_change

using NftChange = std::variant<nft_change::CreateTable, nft_change::DeleteTable, nft_change::CreateSet,
                               nft_change::CreateChain, nft_change::AddElements, nft_change::DelElements,
                               nft_change::AddRule, nft_change::DelRule>;

using Action = std::variant<DelAddress, DelRoute, RoutingChange, SetSysctl, NftChange, AddAddress, AddRoute>;

/// What an action changes: a VIP, a sysctl key, an nft table.
struct Resource {
  enum class Kind : uint8_t { kVip, kSysctl, kTable, kRouting };
  Kind kind = Kind::kVip;
  /// "10.0.0.5/32", "net.ipv4.conf.all.arp_ignore", "arp arpguard", "rule from 192.0.2.11 lookup 5003 priority 1000"
  std::string name;

  auto operator<=>(const Resource&) const = default;
  /// "vip 10.0.0.5/32", "sysctl net.ipv4.conf.all.arp_ignore", "nft table arp arpguard"
  std::string str() const;
};

Resource resource_of(const Action& action);

/// "add vip 10.0.0.5/32 dev lo", "set net.ipv4.conf.all.arp_ignore 0 -> 1", ...
std::string describe(const Action& action);
std::string describe(const NftChange& change);

struct Plan {
  std::vector<Action> actions;

  bool empty() const { return actions.empty(); }
  /// One line per action. With `shown_per_kind`, a run of more actions of one
  /// kind than that is cut short with "... and N more" (for logs).
  std::vector<std::string> lines(size_t shown_per_kind = SIZE_MAX) const;
};

}  // namespace arpguard
