// The converge step both programs share: observe the kernel, diff against the
// policy, apply the plan in I1 order, and read back to prove the result.
// Makes no syscalls itself: all kernel access goes through KernelApis.
// Not thread-safe: one Engine per thread.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/kernel_api.h"
#include "core/plan.h"
#include "core/policy.h"

namespace arpguard {

struct ConvergeReport {
  Plan plan;                          ///< what was (or, in a dry run, would be) done
  std::vector<std::string> problems;  ///< why the policy is not fully met afterwards
  Desired desired;                    ///< what the kernel should hold, as last computed
  bool converged() const { return problems.empty(); }
};

/// A plan with what it was made from.
struct Planned {
  Observed observed;
  Desired desired;
  Plan plan;
};

class Engine {
 public:
  /// `daemon`: the caller runs for long and holds the nft table (TableOwnership::kHold).
  Engine(KernelApis kernel, bool daemon) : kernel_(kernel), daemon_(daemon) {}

  /// Reads everything Diff needs from the kernel and the state record.
  Result<Observed> observe();

  /// Checks of the policy against the kernel (e.g. a VIP that is an interface's
  /// own address). Empty when the policy can be applied.
  Result<std::vector<Diagnostic>> check(const Policy& policy);

  /// Converges the kernel to the policy once; with dry_run only plans.
  Result<ConvergeReport> converge(const Policy& policy, bool dry_run);

  /// The first half of converge(): observe and diff.
  Result<Planned> plan(const Policy& policy);
  /// The second half: apply `planned.plan` and read everything back.
  Result<ConvergeReport> execute(const Policy& policy, Planned planned);

  /// Undoes arpguard: VIPs first, then suppression, sysctls back to their origin.
  Result<ConvergeReport> remove(const Policy& policy, bool dry_run);

  /// Applies `plan` in order; before the first VIP is added, suppression must be
  /// read back and verified (I1). `desired` is what the plan was made for.
  Status apply_plan(const Plan& plan, const Desired& desired);

 private:
  /// Links and addresses only: enough for the policy's kernel checks.
  Status observe_addresses(Observed& observed);
  Status record_sysctl_origins(const Plan& plan, ManagedState& state);
  Status verify_before_vips(const Desired& desired);
  Status adopt_policy_vips(const Desired& desired, const Observed& observed);

  KernelApis kernel_;
  bool daemon_;
};

}  // namespace arpguard
