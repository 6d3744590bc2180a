// Diff: the pure heart of arpguard. Compares what the policy wants with what
// the kernel holds and returns the ordered plan that converges them.
// No syscalls; table-tested in tests/unit/diff_test.cc.
#pragma once

#include <string>
#include <vector>

#include "core/model.h"
#include "core/plan.h"

namespace arpguard {

/// The plan from `observed` to `desired`, ordered for invariant I1:
/// DelVip, SetSysctl, nft changes (one atomic batch), AddVip.
/// An empty plan means converged (invariant I4).
Plan Diff(const Desired& desired, const Observed& observed);

/// Why the VIPs are not yet hidden from ARP; empty when suppression is in place
/// on every ARP-facing interface for the policy's method.
std::vector<std::string> verify_suppression(const Desired& desired, const Observed& observed);

/// The sysctl half of verify_suppression(): why `values` do not protect the VIPs.
/// Cheap enough to poll: reads nothing but `values`.
std::vector<std::string> verify_sysctls(const Desired& desired, const SysctlValues& values);

/// The plan that undoes arpguard (on_stop = "remove"): VIPs first, then the nft
/// table, then each recorded sysctl back to its value before arpguard.
Plan plan_removal(const Desired& desired, const Observed& observed);

}  // namespace arpguard
