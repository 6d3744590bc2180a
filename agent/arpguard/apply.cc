#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "agent/arpguard/commands.h"
#include "core/diff.h"
#include "core/engine.h"
#include "core/readiness.h"
#include "kernel/policy_file.h"
#include "kernel/system_kernel.h"

namespace arpguard::cli {

namespace {

constexpr int kRounds = 3;  // a VIP's suppression goes one round after the VIP (I8)

// Why the kernel does not meet the policy after converging: every not-ready reason but freshness.
std::vector<std::string> unmet(const Desired& desired, const Observed& observed) {
  ReadinessInputs inputs;
  inputs.fresh = true;
  std::vector<std::string> out;
  auto add = [&](const std::vector<Reason>& reasons) {
    for (const Reason& r : reasons) {
      if (r.severity == Severity::kNotReady && r.kind != ReasonKind::kNoVips) out.push_back(r.text);
    }
  };
  add(server_reasons(desired, observed, inputs));
  for (const DesiredVip& vip : desired.vips.bound) add(vip_reasons(desired, observed, inputs, vip));
  for (const IpPrefix& prefix : desired.vips.redirected) add(redirect_reasons(desired, observed, inputs, prefix));
  return out;
}

// The plan, one line an action, written in large blocks and flushed before
// anything changes: a plan that cannot be shown (a full disk, a closed pipe
// when SIGPIPE is ignored) is not carried out. False, said on stderr, then.
bool print_plan(const Plan& plan) {
  fmt::memory_buffer out;
  auto write = [&] {
    const bool written = std::fwrite(out.data(), 1, out.size(), stdout) == out.size();
    out.clear();
    return written;
  };
  bool ok = true;
  for (const std::string& line : plan.lines()) {
    out.append(line);
    out.push_back('\n');
    if (out.size() >= 64 * 1024) ok = ok && write();
  }
  ok = ok && write() && std::fflush(stdout) == 0;
  if (!ok) fmt::print(stderr, "arpguard: cannot write the plan to standard output: {}\n", std::strerror(errno));
  return ok;
}

}  // namespace

int apply(const std::string& file, bool dry_run) {
  PolicyResult result = load_policy(file);
  for (const Diagnostic& error : result.errors) fmt::print(stderr, "{}\n", error.str());
  if (!result.policy) return 1;
  for (const Diagnostic& warning : result.warnings) fmt::print(stderr, "{} (warning)\n", warning.str());
  const Policy& policy = *result.policy;

  // The set's elements are read back from memory while the ruleset's
  // generation proves arpguard's own commit the only one since they were read.
  auto kernel = SystemKernel::open(policy.agent.state_dir, /*remember_nft_elements=*/true);
  if (!kernel) {
    fmt::print(stderr, "arpguard: {}\n", kernel.error().message());
    return 1;
  }
  Engine engine((*kernel)->apis());
  size_t applied = 0;
  bool failed = false;  // an action failed: the kernel is read once more, every goal not met named, then exit 1
  for (int round = 0;; ++round) {
    auto observed = engine.observe();
    if (!observed) {
      fmt::print(stderr, "arpguard: {}\n", observed.error().message());
      return 1;
    }
    if (round == 0) {
      const std::vector<Diagnostic> errors = check_against_kernel(policy, *observed);
      for (const Diagnostic& error : errors) fmt::print(stderr, "{}\n", error.str());
      if (!errors.empty()) return 1;
    }
    const Desired desired = make_desired(policy, *observed, /*daemon=*/false);
    const Plan plan = Diff(desired, *observed);
    if (dry_run) {
      if (!print_plan(plan)) return 1;
      fmt::print("dry run: {} action(s) planned, nothing changed\n", plan.actions.size());
      return 0;
    }
    if (plan.empty() || round == kRounds || failed) {
      const std::vector<std::string> problems = unmet(desired, *observed);
      for (const std::string& problem : problems) fmt::print(stderr, "arpguard: not met: {}\n", problem);
      if (failed || !plan.empty() || !problems.empty()) return 1;
      fmt::print("converged: {} action(s) applied\n", applied);
      return 0;
    }
    if (!print_plan(plan)) return 1;
    ReadBackVerifier verifier((*kernel)->apis(), desired);
    const ApplyOutcome outcome = engine.apply(plan, verifier);
    size_t held_back = 0;
    for (size_t i = 0; i < outcome.results.size(); ++i) {
      if (outcome.results[i].ok()) {
        ++applied;
      } else if (outcome.skipped[i]) {
        ++held_back;  // not a failure yet: the next round adds them, or names each one still not met
      } else {
        fmt::print(stderr, "arpguard: {}: {}\n", describe(plan.actions[i]), outcome.results[i].message());
      }
    }
    if (outcome.state_error) fmt::print(stderr, "arpguard: cannot record state: {}\n", outcome.state_error->message());
    // VIPs held back because their suppression changed under way (someone
    // took an element away: I1) are not the end: the next round reads the
    // kernel again, puts back what was taken, and adds them. Any other
    // failure ends the rounds: the next read names every goal not met, the
    // held-back VIPs among them, and the exit is 1.
    bool only_held_back = !outcome.state_error;
    for (size_t i = 0; i < outcome.results.size(); ++i) only_held_back &= outcome.results[i].ok() || outcome.skipped[i];
    failed = !outcome.all_ok() && !only_held_back;
    if (held_back > 0) {
      fmt::print(stderr, "arpguard: {} VIP(s) held back, their suppression not verified ({}){}\n", held_back,
                 outcome.blocked.empty() ? "it changed under way" : outcome.blocked.front().text,
                 failed ? "" : ": trying again");
    }
  }
}

}  // namespace arpguard::cli
