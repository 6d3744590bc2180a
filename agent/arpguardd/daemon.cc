#include "agent/arpguardd/daemon.h"

#include <fmt/format.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <ctime>
#include <fstream>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <set>

#include "agent/common/log.h"
#include "core/desired.h"
#include "core/diff.h"
#include "kernel/make_dirs.h"

namespace arpguard {

namespace {

constexpr double kDebounceSeconds = 0.001;  // coalesces a burst (`ip addr flush`) into one repair
constexpr double kRetrySeconds = 1.0;
constexpr int kEventReceiveBuffer = 1 << 20;
constexpr size_t kCausesShown = 3;
constexpr size_t kRecentRepairsKept = 10;
constexpr double kStatusMaxAge = 0.25;
constexpr int kCheckTimeoutMs = 500;

double now_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

bool watch(int epoll_fd, int fd) {
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = fd;
  return epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event) == 0;
}

std::string joined(const std::vector<std::string>& items, size_t shown) {
  std::vector<std::string> head(items.begin(), items.begin() + std::min(shown, items.size()));
  std::string out = fmt::format("{}", fmt::join(head, "; "));
  if (items.size() > shown) out += fmt::format("; and {} more", items.size() - shown);
  return out;
}

}  // namespace

Daemon::~Daemon() {
  for (int fd : {epoll_fd_, signal_fd_, debounce_fd_, retry_fd_, poll_fd_, check_fd_, watchdog_fd_}) {
    if (fd >= 0) close(fd);
  }
}

bool Daemon::load(Policy& out) {
  PolicyResult result = load_policy(policy_file_);
  if (result.policy && engine_) {
    auto checked = engine_->check(*result.policy);
    if (!checked) {
      log::error("cannot check policy against the kernel: {}", checked.error().message());
      return false;
    }
    result.errors = std::move(*checked);
  }
  for (const Diagnostic& error : result.errors) log::error("{}", error.str());
  if (!result.errors.empty()) return false;
  out = std::move(*result.policy);
  return true;
}

void Daemon::arm(int timer_fd, double seconds, double interval) const {
  auto to_timespec = [](double s) {
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(s);
    ts.tv_nsec = static_cast<long>((s - std::floor(s)) * 1e9);
    return ts;
  };
  itimerspec spec{};
  // A zero it_value disarms a timerfd: the smallest delay is one nanosecond.
  spec.it_value = seconds > 0 ? to_timespec(seconds) : timespec{0, 1};
  spec.it_interval = to_timespec(interval);
  timerfd_settime(timer_fd, 0, &spec, nullptr);
}

bool Daemon::open_event_loop() {
  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGHUP, SIGTERM, SIGINT}) sigaddset(&mask, sig);
  if (sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) return false;
  signal_fd_ = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  debounce_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  retry_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  poll_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  check_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  watchdog_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (signal_fd_ < 0 || debounce_fd_ < 0 || retry_fd_ < 0 || poll_fd_ < 0 || check_fd_ < 0 || watchdog_fd_ < 0 ||
      epoll_fd_ < 0) {
    return false;
  }

  auto links = EventSocket::open(EventSocket::Kind::kRtnetlink, kEventReceiveBuffer);
  auto nft = EventSocket::open(EventSocket::Kind::kNftables, kEventReceiveBuffer);
  if (!links || !nft) {
    log::error("{}", (!links ? links.error() : nft.error()).message());
    return false;
  }
  link_events_ = std::move(*links);
  nft_events_ = std::move(*nft);
  own_portids_ = kernel_->own_portids();
  servers_ = std::make_unique<Servers>(ServerHooks{[this] { return status(); },
                                                   [this](bool draining) { set_draining(draining); }});
  if (Status s = servers_->open(policy_); !s) {
    log::error("{}", s.message());
    errno = 0;
    return false;
  }
  std::vector<int> fds{signal_fd_, debounce_fd_, retry_fd_, poll_fd_, check_fd_, watchdog_fd_,
                       link_events_->fd(), nft_events_->fd()};
  for (int fd : servers_->fds()) fds.push_back(fd);
  for (int fd : fds) {
    if (!watch(epoll_fd_, fd)) return false;
  }
  const double poll = policy_.agent.sysctl_poll_ms / 1000.0;
  arm(poll_fd_, poll, poll);
  arm_service_checks();
  uint64_t watchdog_usec = 0;
  if (sd_watchdog_enabled(0, &watchdog_usec) > 0) {
    arm(watchdog_fd_, watchdog_usec / 2e6, watchdog_usec / 2e6);
  }
  return true;
}

bool Daemon::start() {
  // The policy is parsed before anything is opened; the kernel checks follow.
  if (!load(policy_)) return false;
  auto kernel = SystemKernel::open(policy_.agent.state_dir);
  if (!kernel) {
    log::error("{}", kernel.error().message());
    return false;
  }
  kernel_ = std::move(*kernel);
  engine_ = std::make_unique<Engine>(kernel_->apis(), /*daemon=*/true);
  if (!load(policy_)) return false;
  started_ = static_cast<double>(std::time(nullptr));
  draining_ = access(drain_file().c_str(), F_OK) == 0;
  if (draining_) log::notice("draining, as the operator asked before this start (arpguard resume ends it)");
  // Subscribed before the first apply: nothing that happens after it goes unseen.
  if (!open_event_loop()) {
    if (errno != 0) log::error("event loop setup: {}", std::strerror(errno));
    return false;
  }
  tracker_ = RepairTracker(policy_.agent.contested_repairs, policy_.agent.contested_window_ms / 1000.0);
  log::info("policy {}: {} VIP(s), method {}, on_stop {}", policy_file_, policy_.vips.size(),
            to_string(policy_.arp.method), to_string(policy_.agent.on_stop));
  if (policy_.vips.empty()) log::notice("no VIPs in the policy: nothing to guard, idling");
  return true;
}

void Daemon::mark_dirty(std::string cause) {
  causes_.push_back(std::move(cause));
  if (!debounce_armed_) {
    arm(debounce_fd_, kDebounceSeconds);
    debounce_armed_ = true;
  }
}

void Daemon::on_events(EventSocket& socket) {
  std::vector<KernelEvent> events;
  bool overrun = false;
  if (Status status = socket.drain(events, overrun); !status) log::error("{}", status.message());
  if (overrun) {
    log::warning("kernel events were lost (socket overrun): full resync");
    mark_dirty("kernel events lost (socket overrun)");
  }
  for (KernelEvent& event : events) {
    const bool ours = std::find(own_portids_.begin(), own_portids_.end(), event.sender_portid) != own_portids_.end();
    if (!ours) mark_dirty(std::move(event.what));
  }
}

void Daemon::on_sysctl_poll() {
  for (const std::string& calmed : tracker_.expire(now_seconds())) log::notice("no longer contested: {}", calmed);
  if (!uses_sysctls(desired_.method)) return;
  std::vector<std::string> scopes{"all"};
  scopes.insert(scopes.end(), desired_.arp_facing.begin(), desired_.arp_facing.end());
  auto values = kernel_->sysctls().read(scopes);
  if (!values) {
    log::error("sysctl poll: {}", values.error().message());
    return;
  }
  std::vector<std::string> reasons = verify_sysctls(desired_, *values);
  if (reasons.empty()) return;
  for (std::string& reason : reasons) causes_.push_back(std::move(reason));
  reconcile("drift");
}

void Daemon::log_repair(const char* trigger, const Plan& plan) {
  if (std::string(trigger) == "drift" || std::string(trigger) == "retry") {
    const std::string cause = causes_.empty() ? std::string(trigger) : joined(causes_, kCausesShown);
    log::notice("repair after {}: {}", cause, fmt::join(plan.lines(), "; "));
    ++repairs_total_;
    recent_repairs_.push_back({static_cast<double>(std::time(nullptr)), cause, plan.lines()});
    if (recent_repairs_.size() > kRecentRepairsKept) recent_repairs_.erase(recent_repairs_.begin());
  } else {
    for (const std::string& line : plan.lines()) log::notice("{}: {}", trigger, line);
  }
  for (const Action& action : plan.actions) {
    const auto* del = std::get_if<DelVip>(&action);
    if (del && del->why.rfind("misplaced", 0) == 0) {
      log::warning("VIP {} was on {}, which may answer ARP for it: removed there; it belongs on {}",
                   del->vip.prefix.address.str(), del->vip.device, del->why.substr(del->why.rfind(' ') + 1));
    }
  }
}

void Daemon::set_ready(bool ready, const std::string& status) {
  if (ready && !ready_) {
    log::info("ready: {}", status);
    sd_notifyf(0, "READY=1\nSTATUS=%s", status.c_str());
  } else {
    sd_notifyf(0, "STATUS=%s%s", ready ? "" : "not ready: ", status.c_str());
  }
  ready_ = ready_ || ready;
}

void Daemon::reconcile(const char* trigger) {
  debounce_armed_ = false;
  status_read_at_ = -1;
  const double now = now_seconds();
  auto planned = engine_->plan(policy_);
  if (!planned) {
    log::error("{}: {}", trigger, planned.error().message());
    arm(retry_fd_, kRetrySeconds);
    return;
  }
  std::vector<std::string> resources;
  for (const Action& action : planned->plan.actions) resources.push_back(resource_of(action));
  std::sort(resources.begin(), resources.end());
  resources.erase(std::unique(resources.begin(), resources.end()), resources.end());
  const double allowed = tracker_.next_allowed(resources, now);
  if (allowed > now) {
    if (!backing_off_) log::warning("backing off {:.0f} ms before repairing a contested resource", (allowed - now) * 1000);
    backing_off_ = true;
    arm(retry_fd_, allowed - now);
    return;
  }
  backing_off_ = false;

  const bool repaired = !planned->plan.empty();
  auto report = engine_->execute(policy_, std::move(*planned));
  if (!report) {
    log::error("{}: {}", trigger, report.error().message());
    arm(retry_fd_, kRetrySeconds);
    return;
  }
  if (repaired) log_repair(trigger, report->plan);
  causes_.clear();
  desired_ = report->desired;
  for (const std::string& resource : resources) {
    if (repaired && tracker_.record(resource, now)) {
      log::warning("contested: {} undone again and again (more than {} repairs in {} ms); still repairing, with backoff",
                   resource, policy_.agent.contested_repairs, policy_.agent.contested_window_ms);
    }
  }
  if (!report->converged()) {
    for (const std::string& problem : report->problems) log::warning("not converged: {}", problem);
    set_ready(false, report->problems.front());
    arm(retry_fd_, kRetrySeconds);
    return;
  }
  set_ready(true, draining_ ? std::string("draining")
                            : fmt::format("guarding {} VIP(s), method {}", policy_.vips.size(), to_string(policy_.arp.method)));
}

nlohmann::json Daemon::status() {
  const double now = now_seconds();
  if (status_read_at_ >= 0 && now - status_read_at_ < kStatusMaxAge) return status_cache_;
  auto observed = engine_->observe();
  if (!observed) {
    log::error("status: {}", observed.error().message());
    return status_cache_.is_null() ? nlohmann::json{{"ready", false},
                                                    {"draining", draining_},
                                                    {"reasons", {observed.error().message()}},
                                                    {"vips", nlohmann::json::array()}}
                                   : status_cache_;
  }
  const Desired desired = make_desired(policy_, *observed, /*daemon=*/true);
  ReadinessInputs inputs{draining_, tracker_.contested(), checks_};
  const Readiness readiness = assess_readiness(desired, *observed, inputs);
  status_cache_ = build_status({policy_, desired, *observed, readiness, recent_repairs_, repairs_total_,
                                inputs.contested, checks_, static_cast<double>(std::time(nullptr)), started_});
  status_read_at_ = now;
  return status_cache_;
}

void Daemon::set_draining(bool draining) {
  // The operator's intent outlives a restart of the daemon: it is kept as a file.
  if (draining) {
    if (Status s = make_dirs(policy_.agent.state_dir); !s) log::error("drain: {}", s.message());
    std::ofstream(drain_file()) << "drained by arpguard drain\n";
  } else {
    unlink(drain_file().c_str());
  }
  if (draining != draining_) {
    log::notice("{}", draining ? "draining: the director is told to send no new connections"
                               : "resumed: the director may send new connections again");
  }
  draining_ = draining;
  status_read_at_ = -1;
  sd_notifyf(0, "STATUS=%s", draining ? "draining" : "resumed");
}

void Daemon::arm_service_checks() {
  // Idle means idle: the timer runs only while some VIP has a check.
  const bool any = std::any_of(policy_.vips.begin(), policy_.vips.end(), [](const VipPolicy& v) { return v.check_port; });
  if (!any) {
    itimerspec off{};
    timerfd_settime(check_fd_, 0, &off, nullptr);
    return;
  }
  const double interval = policy_.agent.check_interval_ms / 1000.0;
  arm(check_fd_, 0, interval);
}

void Daemon::run_service_checks() {
  for (const VipPolicy& vip : policy_.vips) {
    if (vip.check_port == 0) continue;
    CheckResult result;
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(vip.check_port);
    addr.sin_addr.s_addr = vip.prefix.address.network_order();
    int error = 0;
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      error = errno;
      pollfd wait{fd, POLLOUT, 0};
      if (error == EINPROGRESS) {
        error = poll(&wait, 1, kCheckTimeoutMs) == 1 ? 0 : ETIMEDOUT;
        socklen_t len = sizeof(error);
        if (error == 0) getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
      }
    }
    close(fd);
    result.ok = error == 0;
    result.detail = result.ok ? "" : fmt::format("tcp:{} {}", vip.check_port, std::strerror(error));
    auto previous = checks_.find(vip.prefix);
    if (previous == checks_.end() || previous->second.ok != result.ok) {
      if (result.ok) {
        log::notice("service check on {} tcp:{} passes", vip.prefix.address.str(), vip.check_port);
      } else {
        log::warning("service check on {} failed: {}", vip.prefix.address.str(), result.detail);
      }
      status_read_at_ = -1;
    }
    checks_[vip.prefix] = result;
  }
}

void Daemon::reload() {
  sd_notify(0, "RELOADING=1");
  Policy next;
  if (!load(next)) {
    log::error("reload of {} rejected: the running policy stays in force", policy_file_);
  } else {
    if (next.agent.state_dir != policy_.agent.state_dir) {
      log::warning("agent.state_dir changes take effect at the next start");
      next.agent.state_dir = policy_.agent.state_dir;
    }
    if (next.agent.control_socket != policy_.agent.control_socket ||
        next.readiness.listen.size() != policy_.readiness.listen.size() ||
        next.readiness.agent_check_listen.size() != policy_.readiness.agent_check_listen.size()) {
      log::warning("changes to the control socket and readiness listeners take effect at the next start");
    }
    checks_.clear();
    policy_ = std::move(next);
    tracker_ = RepairTracker(policy_.agent.contested_repairs, policy_.agent.contested_window_ms / 1000.0);
    log::info("reloaded {}: {} VIP(s), method {}", policy_file_, policy_.vips.size(), to_string(policy_.arp.method));
    const double poll = policy_.agent.sysctl_poll_ms / 1000.0;
    arm(poll_fd_, poll, poll);
    arm_service_checks();
    reconcile("reload");
  }
  sd_notify(0, "READY=1");
}

void Daemon::stop() {
  sd_notify(0, "STOPPING=1");
  if (policy_.agent.on_stop == OnStop::kKeep) {
    log::info("stopping; on_stop = \"keep\": VIPs and their protection stay in place");
    return;
  }
  log::info("stopping; on_stop = \"remove\": removing VIPs, then their protection");
  auto report = engine_->remove(policy_, /*dry_run=*/false);
  if (!report) {
    log::error("remove: {}", report.error().message());
    return;
  }
  for (const std::string& line : report->plan.lines()) log::notice("stop: {}", line);
  for (const std::string& problem : report->problems) log::error("stop: {}", problem);
}

int Daemon::run() {
  if (!start()) return 1;
  reconcile("start");
  for (;;) {
    epoll_event events[8];
    const int n = epoll_wait(epoll_fd_, events, 8, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      log::error("epoll_wait: {}", std::strerror(errno));
      return 1;
    }
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      uint64_t expirations = 0;
      if (fd == link_events_->fd()) {
        on_events(*link_events_);
      } else if (fd == nft_events_->fd()) {
        on_events(*nft_events_);
      } else if (fd == debounce_fd_) {
        if (read(fd, &expirations, sizeof(expirations)) > 0) reconcile("drift");
      } else if (fd == retry_fd_) {
        if (read(fd, &expirations, sizeof(expirations)) > 0) reconcile("retry");
      } else if (fd == poll_fd_) {
        if (read(fd, &expirations, sizeof(expirations)) > 0) on_sysctl_poll();
      } else if (fd == check_fd_) {
        if (read(fd, &expirations, sizeof(expirations)) > 0) run_service_checks();
      } else if (fd == watchdog_fd_) {
        if (read(fd, &expirations, sizeof(expirations)) > 0) sd_notify(0, "WATCHDOG=1");
      } else if (fd == signal_fd_) {
        signalfd_siginfo info{};
        while (read(signal_fd_, &info, sizeof(info)) == sizeof(info)) {
          if (info.ssi_signo != SIGHUP) {
            stop();
            return 0;
          }
          reload();
        }
      } else {
        servers_->on_readable(fd);
      }
    }
  }
}

}  // namespace arpguard
