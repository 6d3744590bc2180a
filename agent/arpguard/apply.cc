#include <fmt/format.h>

#include "agent/arpguard/commands.h"
#include "core/engine.h"
#include "core/policy.h"
#include "kernel/system_kernel.h"

namespace arpguard::cli {

int apply(const std::string& file, bool dry_run) {
  PolicyResult result = load_policy(file);
  for (const Diagnostic& error : result.errors) fmt::print(stderr, "{}\n", error.str());
  if (!result.policy) return 1;
  const Policy& policy = *result.policy;

  auto kernel = SystemKernel::open(policy.agent.state_dir);
  if (!kernel) {
    fmt::print(stderr, "arpguard: {}\n", kernel.error().message());
    return 1;
  }
  Engine engine((*kernel)->apis(), /*daemon=*/false);
  auto checked = engine.check(policy);
  if (!checked) {
    fmt::print(stderr, "arpguard: {}\n", checked.error().message());
    return 1;
  }
  for (const Diagnostic& error : *checked) fmt::print(stderr, "{}\n", error.str());
  if (!checked->empty()) return 1;

  auto report = engine.converge(policy, dry_run);
  if (!report) {
    fmt::print(stderr, "arpguard: {}\n", report.error().message());
    return 1;
  }
  for (const std::string& line : report->plan.lines()) fmt::print("{}\n", line);
  for (const std::string& problem : report->problems) fmt::print(stderr, "arpguard: {}\n", problem);
  if (dry_run) {
    fmt::print("dry run: {} action(s) planned, nothing changed\n", report->plan.actions.size());
    return report->problems.empty() ? 0 : 1;
  }
  if (!report->converged()) return 1;
  fmt::print("converged: {} action(s) applied\n", report->plan.actions.size());
  return 0;
}

}  // namespace arpguard::cli
