// The daemon's decisions as a pure state machine (no syscalls, no clock).
//
// Inputs (decoded kernel events, timer expiries, results of the commands it
// asked for, control requests) go in with the current monotonic time;
// commands come out: observe, read sysctls, apply a plan, arm a timer, run
// service checks, reply, notify systemd, log, exit. agent/arpguardd runs the
// loop and carries commands out; tests/unit drives it against a fake kernel.
//
// What it keeps: the cache of kernel state (fed by events, rebuilt by
// dumps), the desired state, what events touched since the last diff, the
// repair trackers, readiness. Invariants it holds (docs/design.md):
//   I1  plans come from Diff, applied in order by Engine;
//   I6  readiness is derived from state no older than a bound, else "not ready";
//   I8  a failed repair is reported as failed and retried, never counted as done.
// Not thread-safe: one owner.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "core/desired.h"
#include "core/diff.h"
#include "core/engine.h"
#include "core/kernel_api.h"
#include "core/observed_delta.h"
#include "core/plan.h"
#include "core/policy.h"
#include "core/readiness.h"
#include "core/repair_tracker.h"
#include "core/status_snapshot.h"
#include "core/wire.h"
#include "core/wire_watch.h"

namespace arpguard {

enum class TimerId : uint8_t { kDebounce, kRetry, kSysctlPoll, kChecks, kAudit, kExpire, kWatchSweep };

enum class LogLevel : uint8_t { kError = 3, kWarning = 4, kNotice = 5, kInfo = 6, kDebug = 7 };

/// A service check to run: connect to `target`:`port` within `timeout` seconds.
struct CheckTarget {
  IpPrefix vip;
  IpAddress target;
  uint16_t port = 0;
};

/// The answer to a reload asked over the control socket (0: SIGHUP, no one waits).
struct ReloadReply {
  uint64_t request = 0;
  bool accepted = false;   ///< the new policy is in force
  bool converged = false;  ///< and the kernel meets it
  std::vector<std::string> errors;    ///< located errors of a rejected policy
  std::vector<std::string> problems;  ///< why an accepted one is not met yet
};

namespace input {
struct Observed {
  Result<arpguard::Observed> observed;
  /// No notification came while it was read: a picture to compare the cache with.
  bool quiet = true;
};
struct Events {
  std::vector<KernelEvent> events;
  bool lost = false;
  /// Another process committed to nftables while arpguard's own big commit
  /// was muted (kernel/nft_tables.h): its notifications were not heard.
  bool unheard = false;
  std::optional<Error> error;
  /// The nftables notifications read so far end at a transaction's end
  /// (NFT_MSG_NEWGEN): no more of those commits is on its way.
  bool nftables_whole = false;
};
struct Sysctls { Result<SysctlValues> values; };
struct Conntrack { Result<std::optional<ConntrackFill>> fill; };
struct Applied { ApplyOutcome outcome; };
struct Timer { TimerId id; };
struct CheckDone { IpPrefix vip; CheckResult result; };
struct Drain { bool draining = false; };
struct Reload { PolicyResult policy; uint64_t request = 0; };
struct Stop {};
/// Frames the wire watch's log rules handed over; `lost`: the socket overran.
struct Wire { std::vector<WireFrame> frames; bool lost = false; };
/// The answers to command::LookupRoutes.
struct Routes { RouteAnswers answers; };
}  // namespace input

using Input = std::variant<input::Observed, input::Events, input::Sysctls, input::Conntrack, input::Applied,
                           input::Timer, input::CheckDone, input::Drain, input::Reload, input::Stop, input::Wire, input::Routes>;

namespace command {
struct ObserveAll {};
struct ReadSysctls { std::vector<std::string> scopes; };
struct ReadConntrack {};
struct Apply { Plan plan; };
struct ArmTimer { TimerId id; double at = 0; };
struct CancelTimer { TimerId id; };
struct RunChecks { std::vector<CheckTarget> targets; double timeout = 1; };
struct ReplyReload { ReloadReply reply; };
struct PersistDrain { bool draining = false; };
struct Notify { std::string text; };  ///< sd_notify text: "READY=1\nSTATUS=...", "STATUS=..."
struct Log { LogLevel level = LogLevel::kInfo; std::string text; };
struct Exit { int code = 0; };
/// Ask the segment who holds each target: an ARP request from `source_ip`, or
/// for IPv6 a neighbour solicitation; answers come back as claims.
struct ProbeTarget {
  int ifindex = 0;
  std::string interface;
  MacAddress source_mac;
  std::optional<IpAddress> source_ip;  ///< IPv4 only: the interface's real address
  IpAddress target;
};
struct Probe { std::vector<ProbeTarget> targets; };
/// `ip route get ASKER from ADDRESS` for each query (ARP flux analysis).
struct LookupRoutes { std::vector<RouteQuery> queries; };
/// Everything arpguard removed on stop: its record forgets the VIPs and the
/// sysctl origins it restored (a later run must not "restore" them again).
struct ForgetState {};
}  // namespace command

using Command = std::variant<command::ObserveAll, command::ReadSysctls, command::ReadConntrack, command::Apply,
                             command::ArmTimer, command::CancelTimer, command::RunChecks, command::ReplyReload,
                             command::PersistDrain, command::Notify, command::Log, command::Exit, command::Probe,
                             command::LookupRoutes, command::ForgetState>;

/// A cheap answer for /ready and agent-check.
struct ReadySummary {
  bool ready = false;
  bool only_draining = false;
  std::vector<Reason> reasons;  ///< not-ready ones first; bounded
};

class Supervisor {
 public:
  struct Options {
    std::vector<uint32_t> own_portids;  ///< events carrying these are arpguard's own doing
    double started = 0;                 ///< unix time, for uptime
    double unix_offset = 0;             ///< unix time minus monotonic time
    bool draining = false;              ///< the operator's drain outlives restarts
  };

  Supervisor(Policy policy, Options options);

  /// The first commands: observe everything, start the timers.
  std::vector<Command> start(double now);
  /// One input; the commands it leads to.
  std::vector<Command> handle(Input input, double now);

  /// The sysctl scopes to read (all, and every ARP-facing interface).
  std::vector<std::string> sysctl_scopes() const;

  ReadySummary ready_summary(double now);
  /// Readiness of the VIP holding `address`; nullopt when no VIP holds it.
  std::optional<VipStatus> vip_status(const IpAddress& address, double now);
  /// The whole status. `all_vips`: every VIP (else not-ready ones first, bounded).
  /// `orphans`: warn of addresses left in the sets (a walk through every
  /// element, address and route: /metrics, which shows no reasons, goes without).
  StatusSnapshot snapshot(double now, bool all_vips, bool orphans = true);

  /// The daemon's Verifier consults this after feeding it fresh events and sysctls.
  std::map<IpPrefix, std::vector<Reason>> gaps_before_adding(const std::vector<IpPrefix>& vips) const;
  /// How many changes others made to what arpguard protects (since the last complete repair).
  uint64_t foreign_changes() const { return foreign_changes_; }

  const Policy& policy() const { return policy_; }
  bool converged() const { return converged_; }
  /// Only changes of nothing arpguard's came since the last round: the next
  /// notifications may wait in their sockets until the debounce reads them.
  /// A change of its own is read as it comes (a deleted table at 100,000 VIPs
  /// sends more than a socket holds).
  bool events_can_wait() const { return debounce_at_ >= 0 && !pending_any_ && !applying_; }

 private:
  using Out = std::vector<Command>;
  void log(Out& out, LogLevel level, std::string text) const;
  void on_observed(Result<Observed> observed, bool quiet, double now, Out& out);
  void on_events(const input::Events& events, double now, Out& out);
  void on_sysctls(Result<SysctlValues> values, double now, Out& out);
  /// A change the kernel makes as a consequence of another (local routes of addresses).
  bool is_side_effect(const KernelEvent& event) const;
  void on_applied(const ApplyOutcome& outcome, double now, Out& out);
  void on_timer(TimerId id, double now, Out& out);
  void on_reload(input::Reload reload, double now, Out& out);
  void on_stop(double now, Out& out);
  void on_check(const input::CheckDone& done, double now, Out& out);
  void on_wire(const input::Wire& wire, double now, Out& out);
  /// Probe commands for `requests`, from each interface's MAC and real address.
  void probe(const std::vector<ProbeRequest>& requests, Out& out) const;
  void arm_sweep(double now, Out& out) const;
  /// Looks at ARP flux again if something it depends on changed.
  void analyse_flux(Out& out);
  void on_routes(RouteAnswers answers, double now, Out& out);
  /// The VIP that holds `address`, bound or redirected.
  std::optional<IpPrefix> vip_holding(const IpAddress& address) const;

  /// Diffs what is pending and applies it, or records that nothing is needed.
  void reconcile(double now, Out& out, bool follow_up = false);
  void continue_removal(double now, Out& out);
  void forget_failures_not_in(const Plan& plan, const DiffScope& scope, Out& out);
  void request_resync(Out& out, const char* why);
  void schedule_debounce(double now, Out& out, double delay);
  void arm_retry(double at, Out& out);
  void rebuild_desired_host();
  /// desired_.vips, and what is derived from it.
  void set_desired_vips(DesiredVips vips);
  /// Brings the not-ready sets up to date for what changed since last time.
  void refresh_readiness(double now);
  bool route_vips_lost_silently(const Delta& d) const;

  static constexpr uint64_t kClaimLogsPerMinute = 20;
  double claim_log_window_ = -1e9;      ///< start of the minute new-claimant lines are counted in
  uint64_t claim_logs_in_window_ = 0;
  uint64_t claim_logs_suppressed_ = 0;
  void notify_ready_state(double now, Out& out);
  std::vector<std::string> problems() const;
  ReadinessInputs readiness_inputs(double now) const;
  bool fresh(double now) const;

  enum class Phase { kStarting, kRunning, kStopping, kStopped };

  Policy policy_;
  Options options_;
  Phase phase_ = Phase::kStarting;
  Observed cache_;
  bool have_cache_ = false;
  std::optional<std::string> observe_error_;
  Desired desired_;
  std::set<std::string> route_vip_devices_v4_;  ///< devices holding IPv4 route VIPs
  double sysctls_read_at_ = -1;
  std::optional<std::string> sysctl_error_;

  // What is pending for the next diff.
  DiffScope pending_ = DiffScope::all();
  bool pending_any_ = true;
  std::vector<std::string> causes_;   ///< foreign changes since the last reconcile, for the repair log
  uint64_t foreign_changes_ = 0;      ///< changes others made since the last reconcile
  double debounce_at_ = -1;  ///< when the armed debounce fires; -1 when none is
  bool applying_ = false;
  bool resync_in_flight_ = false;
  bool audit_in_flight_ = false;
  bool lost_during_read_ = false;  ///< events were lost while a read was under way: only a full read will do
  bool reloading_ = false;
  bool first_round_done_ = false;
  int immediate_rounds_ = 0;
  int churn_streak_ = 0;          ///< times in a row changes did not hold
  double churn_logged_at_ = 0;
  bool need_observe_ = false;     ///< the next retry reads everything again
  std::optional<Plan> in_flight_;
  DiffScope in_flight_scope_;
  bool in_flight_repair_ = false;

  // Repairs, failures, fights.
  RepairTracker contest_;
  std::map<Resource, std::string> failing_;
  std::map<Resource, int> failure_streak_;
  std::map<Resource, double> failure_logged_at_;
  std::string last_blocked_;
  std::optional<std::string> record_error_;  ///< why the state record lacks what arpguard did, while it does
  double last_failure_at_ = 0;
  double retry_at_ = -1;
  uint64_t repairs_total_ = 0;
  uint64_t repair_failures_total_ = 0;
  uint64_t divergence_total_ = 0;
  uint64_t audits_total_ = 0;
  uint64_t audits_inconclusive_ = 0;  ///< audits not compared: the kernel changed while they read
  std::deque<RepairRecord> recent_repairs_;

  // Readiness and what it feeds.
  bool draining_ = false;
  std::map<IpPrefix, CheckResult> checks_;
  std::optional<ConntrackFill> conntrack_;
  bool converged_ = false;
  bool ready_notified_ = false;
  std::string last_status_;
  std::vector<uint64_t> pending_reloads_;
  int removal_steps_ = 0;
  // Incremental readiness: the VIPs (indices into desired_.vips) that are not ready.
  std::set<size_t> not_ready_bound_;
  std::set<size_t> not_ready_redirect_;
  bool readiness_all_dirty_ = true;
  std::vector<IpRange> readiness_dirty_;
  std::map<Resource, int> contested_cache_;
  std::vector<IpPrefix> tracked_failing_;
  std::vector<IpPrefix> tracked_contested_;

  // ARP flux (core/flux.h): who answers for the host's own addresses.
  bool flux_dirty_ = true;
  bool flux_in_flight_ = false;
  std::vector<AddressAnswer> flux_;
  std::vector<Reason> flux_reasons_;

  // The wire watch.
  WireWatch watch_;
  double lost_logged_at_ = -1e9;
};

}  // namespace arpguard
