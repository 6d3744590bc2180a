// Diff: the pure heart of arpguard. Compares what the policy wants with what
// the kernel holds and returns the ordered plan that converges them; and
// tells, for readiness and for the check before VIPs are added, whether a
// VIP's protection is in place. No syscalls; table-tested in
// tests/unit/diff_test.cc.
//
// A full diff is O(n log n) in VIPs; a diff scoped to the regions events
// touched is O(k log n), so a repair costs the same at 10 VIPs and 100,000.
#pragma once

#include <vector>

#include "core/desired.h"
#include "core/model.h"
#include "core/plan.h"
#include "core/reason.h"

namespace arpguard {

/// What to diff: everything, or the parts events touched.
struct DiffScope {
  bool everything = true;
  /// Sysctls and the structure of the nft tables (cheap: O(interfaces + rules)).
  bool host = true;
  /// Address regions whose VIPs, addresses, routes and set elements to diff.
  std::vector<IpRange> regions;

  static DiffScope all() { return {}; }
  static DiffScope of(std::vector<IpRange> regions, bool host) { return {false, host, std::move(regions)}; }
};

/// The plan from `observed` to `desired`, ordered for invariant I1:
/// VIP deletions, sysctls, nft changes (one atomic batch), VIP additions.
/// An empty plan means converged (invariant I4). Suppression of an address
/// is never removed while that address is configured anywhere (I8).
Plan Diff(const Desired& desired, const Observed& observed, const DiffScope& scope = DiffScope::all());

/// True when a diff scoped to `region` could plan anything there: it overlaps
/// a VIP of the policy, one arpguard manages, or an element of one of its sets.
/// An address someone adds on a busy NIC outside all of them is not news.
bool concerns_arpguard(const Desired& desired, const Observed& observed, const IpRange& region);

/// The plan that undoes arpguard (on_stop = "remove"), one step of it: while
/// VIPs arpguard manages are present it deletes them; once they are gone it
/// deletes the tables and restores the recorded sysctls, keeping the
/// suppression of anything still configured that it guards.
Plan plan_removal(const Desired& desired, const Observed& observed);

/// Why the sysctls do not protect IPv4 VIPs; empty when they do or are not used.
std::vector<Reason> sysctl_gaps(const Desired& desired, const SysctlValues& values);

/// Why table `id` is not what it should be (absent, other shape, rules
/// missing); empty when it is. Elements are not compared.
std::vector<Reason> table_gaps(const Desired& desired, const Observed& observed, const nft::TableId& id);

/// Why `vip` is not protected by every layer of its method: server-wide
/// layers (sysctls, table structure) are not repeated here; this checks the
/// VIP's own elements. Empty when protected.
std::vector<Reason> vip_suppression_gaps(const Desired& desired, const Observed& observed, const DesiredVip& vip);

/// The table a VIP's nft layer lives in: arp arpguard or ip6 arpguard.
nft::TableId suppression_table(const IpPrefix& prefix);

/// True when the elements of `set` in `observed` cover every address of `range`.
bool set_covers(const ObservedSet& set, const IpRange& range);

}  // namespace arpguard
