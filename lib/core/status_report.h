// The status snapshot arpguardd serves, and every view of it.
//
// build_status() makes one JSON object from the daemon's state; the control
// socket and GET /status serve it as is, and the other views are pure
// functions of it: the monitoring-plugin text and exit code of
// `arpguard status`, Prometheus metrics, and the HAProxy agent-check line.
// So every consumer sees the same facts.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/model.h"
#include "core/policy.h"
#include "core/readiness.h"

namespace arpguard {

struct RepairRecord {
  double at = 0;                     ///< unix time
  std::string cause;                 ///< what drifted
  std::vector<std::string> actions;  ///< what was done
};

struct StatusInputs {
  const Policy& policy;
  const Desired& desired;
  const Observed& observed;
  const Readiness& readiness;
  const std::vector<RepairRecord>& recent_repairs;  ///< newest last
  uint64_t repairs_total = 0;
  const std::map<std::string, int>& contested;
  const std::map<Ipv4Prefix, CheckResult>& service_checks;
  double now = 0;      ///< unix time
  double started = 0;  ///< unix time the daemon started
};

nlohmann::json build_status(const StatusInputs& inputs);

/// Seconds within which a repair makes `arpguard status` say WARNING.
inline constexpr double kRecentRepairSeconds = 300;

/// Monitoring-plugin exit code: 0 OK, 1 WARNING (draining, repaired recently),
/// 2 CRITICAL (not ready, contested). `now` is unix time.
int status_exit_code(const nlohmann::json& status, double now);
/// "ARPGUARD OK - 2/2 VIPs ready, method both | perfdata", then readable details.
std::string render_status_text(const nlohmann::json& status, double now);
/// Prometheus text exposition format 0.0.4.
std::string render_metrics(const nlohmann::json& status);
/// One HAProxy agent-check reply: "up ready 100%", "drain" or "down #reason".
std::string agent_check_line(const nlohmann::json& status);

}  // namespace arpguard
