// The verbs of the arpguard CLI, one file each. Each returns the exit code:
// 0 success, 1 failure; usage errors (2) are main.cc's.
#pragma once

#include <string>
#include <vector>

namespace arpguard::cli {

/// check-config FILE: 0 valid, 1 invalid (located errors on stderr).
int check_config(const std::string& file, bool offline);

/// apply --policy FILE [--dry-run]: the plan on stdout, one line per action;
/// 0 converged, 1 failed.
int apply(const std::string& file, bool dry_run);

/// status [--json] [--vips]: asks the daemon; monitoring-plugin exit codes
/// (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN when the daemon cannot be reached).
int status(const std::string& socket, const std::string& policy_file, bool json, bool all_vips);

/// drain / resume: tells the daemon, which tells the director through readiness.
int set_draining(const std::string& socket, const std::string& policy_file, bool draining);

/// reload: asks the daemon to read its policy again and waits for the result:
/// 0 in force and met, 1 rejected (the running policy stays) or not met.
int reload(const std::string& socket, const std::string& policy_file);

/// probe [VIP...] [--interface IF]... [--policy FILE] [--wait MS] [--json]: asks
/// the wire who answers for the VIPs (the policy's when none are named) from
/// each interface (the policy's ARP-facing ones when none are named), listens
/// `wait_ms` after the last question, and lists every responder: this host, a
/// director (readiness.director_macs) or unknown. Monitoring-plugin exit codes:
/// 0 OK (no answer, or only directors), 1 WARNING (an unknown MAC answers),
/// 2 CRITICAL (this host answers), 3 UNKNOWN (something could not be asked).
int probe(const std::vector<std::string>& vips, const std::vector<std::string>& interfaces,
          const std::string& policy_file, int wait_ms, bool json);

}  // namespace arpguard::cli
