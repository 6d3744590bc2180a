// A plan is a value: the ordered kernel changes that take Observed to Desired.
//
// Diff() emits actions in the order invariant I1 requires, and apply_plan()
// (core/apply.h) keeps it: VIP removals, then suppression (sysctls, one nft
// batch), then verification, then VIP additions. describe() gives the one
// line that logs, `apply --dry-run`, status and test failures all show.
#pragma once

#include <string>
#include <variant>
#include <vector>

#include "core/model.h"

namespace arpguard {

struct DelVip {
  VipOnDevice vip;
  int link_index = 0;
  std::string why;      ///< "no longer in policy", "misplaced: belongs on lo"
};

struct SetSysctl {
  SysctlKey key;
  int from = 0;
  int to = 0;
};

/// Creates whichever of table, set and chains are missing (never the rules).
struct NftCreateTable {
  bool table = false;
  bool owned = false;   ///< with the table: flags OWNER|PERSIST
  bool set = false;
  bool input_chain = false;
  bool output_chain = false;
};

/// Takes ownership of a table left orphaned by an earlier owner.
struct NftAdoptTable {};
struct NftDeleteTable {};
struct NftAddElements { std::vector<Ipv4Range> vips; };
struct NftDelElements { std::vector<Ipv4Range> vips; };
struct NftAddRule { rules::ArpRule rule; };
struct NftDelRule {
  uint64_t handle = 0;
  std::string chain;
  std::string what;     ///< the rule as nft prints it, or "foreign rule"
};

struct AddVip {
  VipOnDevice vip;
  int link_index = 0;
  uint8_t scope = kScopeGlobal;
};

using NftChange = std::variant<NftCreateTable, NftAdoptTable, NftDeleteTable, NftAddElements, NftDelElements,
                               NftAddRule, NftDelRule>;
using Action = std::variant<DelVip, SetSysctl, NftChange, AddVip>;

/// What an action changes, for telling who fights over it: "vip 10.0.0.5/32",
/// "sysctl net.ipv4.conf.all.arp_ignore", "nft table arp arpguard".
std::string resource_of(const Action& action);

/// "add vip 10.0.0.5/32 dev lo", "set net.ipv4.conf.all.arp_ignore 0 -> 1", ...
std::string describe(const Action& action);
std::string describe(const NftChange& change);

struct Plan {
  std::vector<Action> actions;
  std::vector<std::string> problems;  ///< what the plan cannot fix (e.g. a missing device)

  bool empty() const { return actions.empty(); }
  /// One line per action.
  std::vector<std::string> lines() const;
};

}  // namespace arpguard
