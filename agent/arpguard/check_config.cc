#include <fmt/format.h>

#include "agent/arpguard/commands.h"
#include "core/desired.h"
#include "kernel/policy_file.h"
#include "kernel/rtnl.h"

namespace arpguard::cli {

int check_config(const std::string& file, bool offline) {
  PolicyResult result = load_policy(file);
  if (result.policy && !offline) {
    // The checks that need this machine's view: a VIP that is, or contains, an interface's own address.
    auto rtnl = Rtnl::open();
    if (!rtnl) {
      fmt::print(stderr, "arpguard: cannot read interfaces: {} (use --offline)\n", rtnl.error().message());
      return 1;
    }
    Observed observed;
    auto links = (*rtnl)->links();
    auto addresses = (*rtnl)->addresses();
    if (!links || !addresses) {
      fmt::print(stderr, "arpguard: {}\n", (!links ? links.error() : addresses.error()).message());
      return 1;
    }
    observed.links = std::move(*links);
    observed.set_addresses(std::move(*addresses));
    result.errors = check_against_kernel(*result.policy, observed);
  }
  for (const Diagnostic& error : result.errors) fmt::print(stderr, "{}\n", error.str());
  if (!result.errors.empty()) return 1;
  for (const Diagnostic& warning : result.warnings) fmt::print(stderr, "{} (warning)\n", warning.str());
  const Policy& policy = *result.policy;
  fmt::print("{}: valid ({} VIP(s), method {})\n", file, policy.vips.size(), to_string(policy.arp.method));
  return 0;
}

}  // namespace arpguard::cli
