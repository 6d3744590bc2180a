// arpguardd's shell around the Supervisor (core/supervisor.h): one thread,
// one epoll loop, carrying out the commands the Supervisor emits and feeding
// it what happens:
//   - rtnetlink and nftables notifications, decoded into cache changes;
//   - timers the Supervisor arms (a table of deadlines: the epoll timeout);
//   - a signalfd: SIGHUP reloads, SIGTERM/SIGINT stop; SIGPIPE is ignored;
//   - every peer (peers.h): control socket, HTTP, HAProxy agent-check;
//   - non-blocking service checks (checks.h);
//   - the systemd watchdog, pinged from the loop itself.
// Nothing here decides anything the Supervisor could; nothing blocks on a peer.
// A second arpguardd in the same network namespace refuses to start.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "agent/arpguardd/checks.h"
#include "agent/arpguardd/notify.h"
#include "agent/arpguardd/peers.h"
#include "core/engine.h"
#include "core/supervisor.h"
#include "kernel/events.h"
#include "kernel/system_kernel.h"

namespace arpguard {

class Daemon {
 public:
  explicit Daemon(std::string policy_file) : policy_file_(std::move(policy_file)) {}
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  /// Runs until SIGTERM/SIGINT; returns the process exit code.
  int run();

 private:
  class Verifier;

  bool start();
  bool open_loop();
  bool claim_namespace();
  bool open_peers();
  void feed(Input input);
  void execute();
  void carry_out(Command command);
  /// Reads pending kernel notifications and feeds them to the Supervisor.
  void drain_events();
  /// Before a readiness answer: current events, and sysctls no older than the bound.
  void refresh_for_query();
  HttpResponse on_http(const HttpRequest& request);
  std::string on_agent_check();
  std::string on_control(std::string_view line);
  void on_signal();
  double next_wakeup() const;
  void fire_due_timers(double now);
  void persist_drain(bool draining);
  std::string drain_file() const;

  std::string policy_file_;
  Policy policy_;
  std::unique_ptr<SystemKernel> kernel_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Supervisor> supervisor_;
  std::unique_ptr<EventSocket> rtnl_events_;
  std::unique_ptr<EventSocket> nft_events_;
  std::unique_ptr<PeerServer> peers_;
  std::unique_ptr<CheckRunner> checks_;
  Notifier notifier_;
  int epoll_fd_ = -1;
  int signal_fd_ = -1;
  int lock_fd_ = -1;
  std::map<TimerId, double> timers_;
  double next_watchdog_ = -1;
  std::deque<Command> queue_;
  bool executing_ = false;
  std::optional<int> exit_code_;
  uint64_t next_request_ = 1;
  std::map<uint64_t, ReloadReply> reload_replies_;
};

}  // namespace arpguard
