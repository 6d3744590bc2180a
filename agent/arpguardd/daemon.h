// arpguardd's main loop: apply the policy, keep it applied, stop as told.
//
// One thread, one epoll loop over:
//   - rtnetlink and nftables notifications: any change someone else made marks
//     the state dirty (our own, recognised by their sender port, do not);
//   - a short debounce timer, after which the engine re-observes, diffs and
//     applies, logging one line per repair;
//   - a periodic sysctl poll (no notification exists for them);
//   - a retry/backoff timer, for a policy not yet met or a contested resource;
//   - a signalfd: SIGHUP reloads, SIGTERM/SIGINT stop;
//   - the readiness servers (servers.h), a service-check timer and, when
//     systemd asks for it, a watchdog timer.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/engine.h"
#include "core/policy.h"
#include "agent/arpguardd/servers.h"
#include "core/readiness.h"
#include "core/repair_tracker.h"
#include "core/status_report.h"
#include "kernel/netlink_events.h"
#include "kernel/system_kernel.h"

namespace arpguard {

class Daemon {
 public:
  explicit Daemon(std::string policy_file) : policy_file_(std::move(policy_file)) {}
  ~Daemon();

  /// Runs until SIGTERM/SIGINT; returns the process exit code.
  int run();

 private:
  bool start();
  bool open_event_loop();
  /// Loads and checks the policy file; logs located errors and returns false when bad.
  bool load(Policy& out);
  void on_events(EventSocket& socket);
  void on_sysctl_poll();
  void mark_dirty(std::string cause);
  /// Observe, diff, apply; `trigger` names why ("start", "reload", "drift", "retry").
  void reconcile(const char* trigger);
  void log_repair(const char* trigger, const Plan& plan);
  void set_ready(bool ready, const std::string& status);
  void reload();
  void stop();
  void arm(int timer_fd, double seconds, double interval = 0) const;
  /// The status snapshot, read afresh from the kernel at most every 250 ms.
  nlohmann::json status();
  void set_draining(bool draining);
  std::string drain_file() const { return policy_.agent.state_dir + "/draining"; }
  void arm_service_checks();
  void run_service_checks();

  std::string policy_file_;
  Policy policy_;
  std::unique_ptr<SystemKernel> kernel_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<EventSocket> link_events_;
  std::unique_ptr<EventSocket> nft_events_;
  std::vector<uint32_t> own_portids_;
  Desired desired_;                  ///< as last computed: what the sysctl poll checks
  RepairTracker tracker_;            ///< made anew from the policy at start and reload
  std::vector<std::string> causes_;  ///< what drifted since the last reconcile
  bool debounce_armed_ = false;
  bool backing_off_ = false;
  bool ready_ = false;
  int epoll_fd_ = -1;
  int signal_fd_ = -1;
  int debounce_fd_ = -1;
  int retry_fd_ = -1;
  int poll_fd_ = -1;
  int check_fd_ = -1;
  int watchdog_fd_ = -1;

  std::unique_ptr<Servers> servers_;
  bool draining_ = false;
  std::vector<RepairRecord> recent_repairs_;   ///< the last few, newest last
  uint64_t repairs_total_ = 0;
  std::map<Ipv4Prefix, CheckResult> checks_;   ///< last result per VIP with a service check
  double started_ = 0;                         ///< unix time
  nlohmann::json status_cache_;
  double status_read_at_ = -1;                 ///< monotonic; < 0: stale
};

}  // namespace arpguard
