// arpguardd's shell around the Supervisor (core/supervisor.h), whose commands
// core/driver.h carries out: one thread, one epoll loop, feeding in what
// happens and providing the Driver's Host:
//   - rtnetlink and nftables notifications, decoded into cache changes;
//   - timers the Supervisor arms (a table of deadlines: the epoll timeout);
//   - a signalfd: SIGHUP reloads, SIGTERM/SIGINT stop; SIGPIPE is ignored;
//   - every peer (peers.h): control socket, HTTP, HAProxy agent-check;
//   - non-blocking service checks (checks.h);
//   - the systemd watchdog, pinged from the loop itself.
// Nothing here decides anything the Supervisor could; nothing blocks on a peer.
// A second arpguardd in the same network namespace refuses to start.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "agent/arpguardd/checks.h"
#include "agent/arpguardd/notify.h"
#include "agent/arpguardd/peers.h"
#include "core/driver.h"
#include "kernel/events.h"
#include "kernel/nflog.h"
#include "kernel/prober.h"
#include "kernel/system_kernel.h"

namespace arpguard {

class Daemon final : public Host {
 public:
  explicit Daemon(std::string policy_file) : policy_file_(std::move(policy_file)) {}
  ~Daemon() override;
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  /// Runs until SIGTERM/SIGINT; returns the process exit code.
  int run();

  // Host
  input::Events drain_events() override;
  void run_checks(const std::vector<CheckTarget>& targets, double timeout) override;
  void notify(const std::string& text) override { notifier_.send(text); }
  void log(LogLevel level, const std::string& text) override;
  void persist_drain(bool draining) override;
  void probe(const std::vector<command::ProbeTarget>& targets) override;
  double now() const override;
  void serve_queries() override;

 private:
  bool start();
  bool open_loop();
  bool claim_namespace();
  bool open_peers();
  HttpResponse on_http(const HttpRequest& request);
  std::string on_agent_check();
  std::string on_control(std::string_view line);
  /// The status of every VIP as JSON text (megabytes at 100,000 VIPs; the
  /// caller has refreshed what queries read), its
  /// building's memory handed back; nullopt while too many such replies wait
  /// for their readers.
  std::optional<std::string> all_vips_status(int indent);
  void on_signal();
  void drain_wire();
  bool hold_events(bool hold);
  double next_wakeup() const;
  void ping_watchdog(double now);
  std::string drain_file() const;

  std::string policy_file_;
  Policy policy_;
  std::unique_ptr<SystemKernel> kernel_;
  std::unique_ptr<Driver> driver_;
  std::unique_ptr<EventSocket> rtnl_events_;
  std::unique_ptr<EventSocket> nft_events_;
  std::optional<NflogSocket> nflog_;   ///< frames the watch rules log; none when the watch is off
  std::optional<Prober> prober_;       ///< opened at the first probe
  bool prober_failed_ = false;         ///< said once why probes cannot be sent
  bool probe_warned_ = false;          ///< said once that a probe failed
  std::unique_ptr<PeerServer> peers_;
  std::unique_ptr<CheckRunner> checks_;
  Notifier notifier_;
  int epoll_fd_ = -1;
  int signal_fd_ = -1;
  int lock_fd_ = -1;
  double next_watchdog_ = -1;
  uint64_t next_request_ = 1;
  bool events_held_ = false;  ///< the loop does not wake for kernel notifications (Driver::events_can_wait)
  bool hold_failed_ = false;  ///< said once that epoll_ctl failed
  bool serving_queries_ = false;  ///< inside serve_queries: an apply is under way
};

}  // namespace arpguard
