// The verbs of the arpguard CLI, one file each. Each returns the exit code:
// 0 success, 1 failure; usage errors (2) are main.cc's.
#pragma once

#include <string>

namespace arpguard::cli {

/// check-config FILE: 0 valid, 1 invalid (located errors on stderr).
int check_config(const std::string& file, bool offline);

/// apply --policy FILE [--dry-run]: the plan on stdout, one line per action;
/// 0 converged, 1 failed.
int apply(const std::string& file, bool dry_run);

/// status [--json]: asks the daemon; monitoring-plugin exit codes
/// (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN when the daemon cannot be reached).
int status(const std::string& socket, const std::string& policy_file, bool json);

/// drain / resume: tells the daemon, which tells the director through readiness.
int set_draining(const std::string& socket, const std::string& policy_file, bool draining);

}  // namespace arpguard::cli
