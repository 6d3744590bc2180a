// The status snapshot arpguardd serves, as a typed value, and every view of
// it: JSON (the control socket, GET /status), the monitoring-plugin text and
// exit code of `arpguard status`, Prometheus metrics and the HAProxy
// agent-check line. Views are pure functions of the snapshot, so every
// consumer sees the same facts; none of them can throw or abort, and every
// string is made valid UTF-8 before it reaches JSON.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/kernel_api.h"
#include "core/reason.h"
#include "core/text.h"

namespace arpguard {

struct VipStatus {
  std::string vip;      ///< "192.0.2.10/32"
  std::string device;   ///< empty for a redirected VIP
  std::string kind;     ///< "address", "route", "redirect"
  std::string method;
  bool present = false;  ///< configured (bound), or its NAT elements in place (redirected)
  bool ready = false;
  std::vector<Reason> reasons;
  std::optional<bool> check_ok;
};

struct InterfaceStatus {
  std::string name;
  int arp_ignore = 0;
  int arp_announce = 0;
  int arp_filter = 0;
  std::string real_ip;  ///< the ARP sender for VIPs; empty when none
};

/// One of the host's own IPv4 addresses on an ARP-facing interface, and
/// which interfaces answer ARP for it (core/flux.h).
struct AddressAnswerStatus {
  std::string address;
  std::string device;
  std::vector<std::string> answered_by;
  std::string why;  ///< empty when exactly its own interface answers
};

struct RuleStatus {
  std::string table;
  std::string chain;
  std::string role;       ///< nft::RuleRole's name, or "foreign"
  std::string interface;
  std::string text;
  uint64_t packets = 0;
};

struct TableStatus {
  std::string table;  ///< "arp arpguard"
  bool present = false;
  bool owned = false;
  uint64_t elements = 0;
};

struct RepairRecord {
  double at = 0;  ///< unix time
  std::string cause;
  std::vector<std::string> actions;
};

struct ContestedStatus {
  std::string resource;
  int repairs = 0;
};

struct ClaimStatus {
  std::string vip;
  std::string mac;
  std::string origin;  ///< "this_host", "director", "other"
  uint64_t frames = 0;
  double last_seen = 0;  ///< unix time
};

struct StatusSnapshot {
  std::string version;
  std::string policy;
  std::string method;
  bool ready = false;
  bool draining = false;
  std::vector<Reason> reasons;       ///< server-wide first, then a bounded sample of per-VIP ones
  double state_age_seconds = 0;
  double uptime_seconds = 0;
  double now = 0;                    ///< unix time the snapshot was made
  uint64_t vips_total = 0;
  uint64_t vips_ready = 0;
  bool vips_complete = true;         ///< `vips` lists every VIP (else: not-ready ones first, bounded)
  std::vector<VipStatus> vips;
  std::vector<InterfaceStatus> interfaces;
  std::vector<AddressAnswerStatus> addresses;  ///< the host's own, and who answers ARP for each
  std::vector<TableStatus> tables;
  std::vector<RuleStatus> rules;
  uint64_t repairs_total = 0;
  uint64_t repair_failures_total = 0;
  uint64_t cache_divergence_total = 0;
  uint64_t audits_total = 0;  ///< audits done: full reads compared with the cache
  uint64_t audits_inconclusive_total = 0;  ///< audit reads not compared: the kernel changed during them
  std::vector<RepairRecord> recent_repairs;  ///< newest first
  std::vector<ContestedStatus> contested;
  std::optional<ConntrackFill> conntrack;
  std::vector<ClaimStatus> claims;
  std::vector<std::string> learned_directors;  ///< MACs taken for the director without readiness.director_macs
  uint64_t watch_probes_total = 0;             ///< probes the watch sent
  uint64_t watch_frames_total = 0;             ///< frames its log rules handed over
  int metrics_vip_limit = 1000;
};

/// "vip_missing", ... and back; unknown text reads as kStale (fails closed).
std::string_view to_string(ReasonKind kind);
ReasonKind reason_kind_from(std::string_view text);

nlohmann::json to_json(const StatusSnapshot& status);
/// Reads what to_json wrote; tolerant of missing or mistyped keys (they take
/// defaults that fail closed: not ready). Never throws.
StatusSnapshot status_from_json(const nlohmann::json& json);
/// JSON text, valid UTF-8 whatever bytes the strings held.
std::string dump_json(const nlohmann::json& json, int indent = -1);

/// Seconds within which a repair makes `arpguard status` say WARNING.
inline constexpr double kRecentRepairSeconds = 300;

/// Monitoring-plugin exit code: 0 OK, 1 WARNING (draining, warnings, repaired
/// recently), 2 CRITICAL (not ready for any other reason, contested).
int status_exit_code(const StatusSnapshot& status);
/// "ARPGUARD OK - 2/2 VIPs ready, method both | perfdata", then readable details.
std::string render_status_text(const StatusSnapshot& status);
/// Prometheus text exposition format 0.0.4.
std::string render_metrics(const StatusSnapshot& status);
/// One HAProxy agent-check reply: "up ready 100%", "drain" or "down #reason".
std::string agent_check_line(bool ready, bool only_draining, const std::string& first_reason);

}  // namespace arpguard
