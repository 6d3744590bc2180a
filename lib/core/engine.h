// Carrying out a plan in I1 order, and reading the whole kernel state.
//
// Engine makes no syscalls itself: all kernel access goes through
// KernelApis. apply() runs VIP deletions, then sysctls (their values before
// arpguard recorded first), then the nft changes as one transaction, then
// asks a Verifier whether suppression is in place, and only then adds VIPs.
// Every action gets its own typed outcome. Not thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "core/desired.h"
#include "core/kernel_api.h"
#include "core/plan.h"
#include "core/reason.h"

namespace arpguard {

/// Asked after suppression was written and before any VIP is added.
class Verifier {
 public:
  virtual ~Verifier() = default;
  /// For each VIP about to be added that is not yet protected, why; the others are.
  virtual std::map<IpPrefix, std::vector<Reason>> gaps_before_adding(const std::vector<IpPrefix>& vips) = 0;
  /// Someone else changed what arpguard protects since the apply began: the
  /// VIPs not yet added wait for a plan that has seen it (what was taken from
  /// those already added is put back first).
  virtual bool interrupted() { return false; }
  /// Between two windows of an rtnetlink phase: an apply of thousands of VIPs
  /// takes seconds, and a daemon answers the readiness queries waiting meanwhile.
  virtual void between_windows() {}
};

struct ApplyOutcome {
  std::vector<Status> results;        ///< one per plan action
  std::vector<bool> skipped;          ///< per plan action: a VIP addition held back by I1 (not a failure)
  std::vector<Reason> blocked;        ///< why some VIP additions were skipped (I1); empty when none was
  std::optional<Error> state_error;   ///< recording ownership failed
  StateChange state;                  ///< what the record now says in addition

  size_t failures() const;
  bool all_ok() const { return failures() == 0 && blocked.empty() && !state_error; }
};

class Engine {
 public:
  explicit Engine(KernelApis kernel) : kernel_(kernel) {}

  /// Reads everything: links, addresses, routes, sysctls, arpguard's tables, the state record.
  Result<Observed> observe();

  /// Carries out `plan` in order; see the file comment.
  ApplyOutcome apply(const Plan& plan, Verifier& verifier);

 private:
  KernelApis kernel_;
  size_t last_elements_ = SIZE_MAX;  ///< set elements the last observe() read; unknown at first
};

/// The Verifier of one-shot runs: reads sysctls and the tables' structure
/// back from the kernel and checks them against `desired`. The sets'
/// elements are those `planned` saw, with the element changes of the
/// transaction the kernel acknowledged: reading 100,000 back would cost the
/// kernel 0.3 s, and the run's last round reads them all anyway.
class ReadBackVerifier final : public Verifier {
 public:
  ReadBackVerifier(KernelApis kernel, const Desired& desired) : kernel_(kernel), desired_(desired) {}
  /// Reads the sysctls back, and arpguard's tables when the ruleset's
  /// generation moved since they were last read.
  std::map<IpPrefix, std::vector<Reason>> gaps_before_adding(const std::vector<IpPrefix>& vips) override;

 private:
  KernelApis kernel_;
  const Desired& desired_;
  Observed readback_;                         ///< sysctls and tables as last read
  std::optional<uint32_t> tables_generation_;  ///< the generation the tables were read at (or after)
};

/// For each of `vips` (being added) not protected by every layer of its method
/// in `observed` (sysctls, table structure, its elements), why. Pure.
std::map<IpPrefix, std::vector<Reason>> gaps_before_adding(const Desired& desired, const Observed& observed,
                                                           const std::vector<IpPrefix>& vips);

}  // namespace arpguard
