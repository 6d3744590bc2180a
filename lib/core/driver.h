// Carries out the Supervisor's commands, in order, against KernelApis and a
// Host for what is not the kernel (events, service checks, notifications,
// logs). The daemon and the unit tests run the same Driver: one over the real
// kernel and the epoll loop, the other over a fake kernel and a fake clock.
//
// Commands are queued and run one at a time; a command's result is fed back
// as an input whose commands join the queue. Timers are a table of
// deadlines the host turns into its wait. Not thread-safe.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <optional>

#include "core/engine.h"
#include "core/kernel_api.h"
#include "core/supervisor.h"

namespace arpguard {

/// What the Driver needs from its host besides the kernel.
class Host {
 public:
  virtual ~Host() = default;
  /// The kernel's notifications received since the last call.
  virtual input::Events drain_events() = 0;
  virtual void run_checks(const std::vector<CheckTarget>& targets, double timeout) = 0;
  virtual void notify(const std::string& text) = 0;
  virtual void log(LogLevel level, const std::string& text) = 0;
  virtual void persist_drain(bool draining) = 0;
  /// Asks the segment about each target (the wire watch hears the answers).
  /// Best effort: a host that cannot send says so in its own log, once.
  virtual void probe(const std::vector<command::ProbeTarget>& targets) = 0;
  virtual double now() const = 0;  ///< monotonic seconds
  /// While an apply of thousands of VIPs runs, between its windows: answers
  /// the readiness and status queries waiting now, from what is known so far.
  /// Nothing else is done there (no signal, no kernel notification's repair).
  virtual void serve_queries() {}
};

class Driver {
 public:
  /// REQUIRES: kernel, conntrack and host outlive the Driver.
  Driver(KernelApis kernel, ConntrackApi& conntrack, Host& host, Policy policy, Supervisor::Options options);

  /// The Supervisor's first commands, carried out.
  void start();
  /// Feeds one input and carries out everything it leads to.
  void feed(Input input);
  /// Kernel notifications pending, fed in, and what they lead to carried out.
  void drain_events();
  /// Before a readiness answer: current events, and sysctls read now, fed in
  /// (a repair they call for runs first).
  void refresh_for_query();
  /// Fires every timer due at `now`, after reading the notifications pending.
  void fire_due_timers(double now);
  /// Notifications may wait in their sockets (Supervisor::events_can_wait):
  /// the debounce reads them all before it fires, so a burst of changes of
  /// nothing arpguard's costs a wake-up per batch, not one per notification.
  bool events_can_wait() const { return supervisor_.events_can_wait(); }
  /// The earliest timer, or +infinity.
  double next_timer() const;
  /// The answer to reload request `request`, once there is one.
  std::optional<ReloadReply> take_reply(uint64_t request);
  std::optional<int> exit_code() const { return exit_code_; }

  Supervisor& supervisor() { return supervisor_; }

 private:
  class Verifier;
  void enqueue(std::vector<Command> commands);
  /// Kernel notifications pending, fed in; their commands queued.
  void pull_events();
  void execute();
  void carry_out(Command command);

  KernelApis kernel_;
  ConntrackApi& conntrack_;
  Host& host_;
  Engine engine_;
  Supervisor supervisor_;
  std::deque<Command> queue_;
  bool executing_ = false;
  size_t churned_ = 0;  ///< objects read or changed in bulk since memory was last given back
  std::map<TimerId, double> timers_;
  std::map<uint64_t, ReloadReply> replies_;
  std::optional<int> exit_code_;
};

}  // namespace arpguard
