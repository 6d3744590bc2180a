#include "core/driver.h"

#include <malloc.h>

#include <cmath>

#include "core/overloaded.h"

namespace arpguard {

namespace {
constexpr size_t kChurnBeforeTrim = 4096;
}  // namespace

// Before VIPs are added: the kernel's own notifications since the plan was
// made, folded into the Supervisor's cache, and sysctls read afresh.
class Driver::Verifier final : public arpguard::Verifier {
 public:
  explicit Verifier(Driver& driver) : driver_(driver), foreign_at_start_(driver.supervisor_.foreign_changes()) {}
  bool interrupted() override {
    driver_.pull_events();
    return driver_.supervisor_.foreign_changes() != foreign_at_start_;
  }
  void between_windows() override { driver_.host_.serve_queries(); }
  std::map<IpPrefix, std::vector<Reason>> gaps_before_adding(const std::vector<IpPrefix>& vips) override {
    driver_.pull_events();
    Supervisor& supervisor = driver_.supervisor_;
    driver_.enqueue(supervisor.handle(input::Sysctls{driver_.kernel_.sysctls.read(supervisor.sysctl_scopes())},
                                      driver_.host_.now()));
    return supervisor.gaps_before_adding(vips);
  }

 private:
  Driver& driver_;
  uint64_t foreign_at_start_;  ///< changes by others to what arpguard protects, when the apply began
};

Driver::Driver(KernelApis kernel, ConntrackApi& conntrack, Host& host, Policy policy, Supervisor::Options options)
    : kernel_(kernel),
      conntrack_(conntrack),
      host_(host),
      engine_(kernel),
      supervisor_(std::move(policy), std::move(options)) {}

void Driver::start() {
  enqueue(supervisor_.start(host_.now()));
  execute();
}

void Driver::enqueue(std::vector<Command> commands) {
  for (Command& command : commands) queue_.push_back(std::move(command));
}

void Driver::feed(Input input) {
  pull_events();  // a reload, drain or stop acts on a cache with nothing waiting
  enqueue(supervisor_.handle(std::move(input), host_.now()));
  execute();
}

void Driver::execute() {
  if (executing_) return;  // the outer call carries on with what was queued
  executing_ = true;
  while (!queue_.empty() && !exit_code_) {
    Command command = std::move(queue_.front());
    queue_.pop_front();
    carry_out(std::move(command));
  }
  executing_ = false;
  // A dump or an apply of thousands of objects leaves megabytes of freed heap
  // that glibc keeps: at 100,000 VIPs, 270 MiB resident where 100 are in use.
  if (churned_ >= kChurnBeforeTrim) {
    churned_ = 0;
    ::malloc_trim(0);
  }
}

void Driver::pull_events() {
  input::Events events = host_.drain_events();
  if (events.events.empty() && !events.lost && !events.error) return;
  enqueue(supervisor_.handle(std::move(events), host_.now()));
}

void Driver::drain_events() {
  pull_events();
  execute();
}

void Driver::refresh_for_query() {
  // Sysctls send no notification: an answer reads them (a few small files) every time.
  pull_events();
  enqueue(supervisor_.handle(input::Sysctls{kernel_.sysctls.read(supervisor_.sysctl_scopes())}, host_.now()));
  execute();
}

void Driver::carry_out(Command command) {
  auto feed_back = [&](Input input) { enqueue(supervisor_.handle(std::move(input), host_.now())); };
  std::visit(Overloaded{
                 [&](command::ObserveAll&) {
                   // The cache first takes every notification sent before the read;
                   // those sent during it follow the read (it may or may not show them).
                   pull_events();
                   Result<Observed> observed = engine_.observe();
                   if (observed) churned_ += observed->local_routes.size() + observed->addresses.size();
                   input::Events during = host_.drain_events();
                   const bool quiet = during.events.empty() && !during.lost && !during.error;
                   feed_back(input::Observed{std::move(observed), quiet});
                   if (!quiet) enqueue(supervisor_.handle(std::move(during), host_.now()));
                 },
                 [&](command::ReadSysctls& c) { feed_back(input::Sysctls{kernel_.sysctls.read(c.scopes)}); },
                 [&](command::ReadConntrack&) { feed_back(input::Conntrack{conntrack_.read()}); },
                 [&](command::Apply& c) {
                   Verifier verifier(*this);
                   ApplyOutcome outcome = engine_.apply(c.plan, verifier);
                   churned_ += c.plan.actions.size();
                   // Our own changes come back as notifications: folded in before the outcome.
                   pull_events();
                   // Sysctls send none, and an apply of thousands of VIPs outlasts the
                   // freshness bound: read again, or readiness could not vouch for them.
                   feed_back(input::Sysctls{kernel_.sysctls.read(supervisor_.sysctl_scopes())});
                   feed_back(input::Applied{std::move(outcome)});
                 },
                 [&](command::ArmTimer& c) { timers_[c.id] = c.at; },
                 [&](command::CancelTimer& c) { timers_.erase(c.id); },
                 [&](command::RunChecks& c) { host_.run_checks(c.targets, c.timeout); },
                 [&](command::ReplyReload& c) { replies_[c.reply.request] = std::move(c.reply); },
                 [&](command::PersistDrain& c) { host_.persist_drain(c.draining); },
                 [&](command::Notify& c) { host_.notify(c.text); },
                 [&](command::Log& c) { host_.log(c.level, c.text); },
                 [&](command::Exit& c) { exit_code_ = c.code; },
                 [&](command::ForgetState&) {
                   StateChange forget;
                   forget.clear = true;
                   if (Status s = kernel_.state.record(forget); !s) {
                     host_.log(LogLevel::kError, "stop: cannot clear the state record: " + s.message());
                   }
                 },
                 [&](command::Probe& c) { host_.probe(c.targets); },
                 [&](command::LookupRoutes& c) { feed_back(input::Routes{kernel_.netlink.route_lookups(c.queries)}); },
             },
             command);
}

void Driver::fire_due_timers(double now) {
  std::vector<TimerId> due;
  for (const auto& [id, at] : timers_) {
    if (at <= now) due.push_back(id);
  }
  if (!due.empty()) pull_events();  // those the loop let wait (events_can_wait)
  for (TimerId id : due) {
    timers_.erase(id);
    enqueue(supervisor_.handle(input::Timer{id}, now));
  }
  execute();
}

double Driver::next_timer() const {
  double soonest = INFINITY;
  for (const auto& [id, at] : timers_) soonest = std::min(soonest, at);
  return soonest;
}

std::optional<ReloadReply> Driver::take_reply(uint64_t request) {
  auto it = replies_.find(request);
  if (it == replies_.end()) return std::nullopt;
  ReloadReply reply = std::move(it->second);
  replies_.erase(it);
  return reply;
}

}  // namespace arpguard
