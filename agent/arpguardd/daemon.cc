#include "agent/arpguardd/daemon.h"

#include <fmt/format.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "agent/common/log.h"

namespace arpguard {

namespace {

constexpr int kRetrySeconds = 1;

bool add_to_epoll(int epoll_fd, int fd) {
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = fd;
  return epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event) == 0;
}

}  // namespace

Daemon::~Daemon() {
  for (int fd : {epoll_fd_, signal_fd_, retry_fd_}) {
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

bool Daemon::start() {
  // The policy is parsed before anything is opened; the kernel checks follow.
  if (!load(policy_)) return false;
  auto kernel = SystemKernel::open(policy_.agent.state_dir);
  if (!kernel) {
    log::error("{}", kernel.error().message());
    return false;
  }
  kernel_ = std::move(*kernel);
  engine_ = std::make_unique<Engine>(kernel_->apis(), /*own_table=*/true);
  if (!load(policy_)) return false;

  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGHUP, SIGTERM, SIGINT}) sigaddset(&mask, sig);
  if (sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) {
    log::error("sigprocmask: {}", std::strerror(errno));
    return false;
  }
  signal_fd_ = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  retry_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (signal_fd_ < 0 || retry_fd_ < 0 || epoll_fd_ < 0 || !add_to_epoll(epoll_fd_, signal_fd_) ||
      !add_to_epoll(epoll_fd_, retry_fd_)) {
    log::error("event loop setup: {}", std::strerror(errno));
    return false;
  }
  log::info("policy {}: {} VIP(s), method {}, on_stop {}", policy_file_, policy_.vips.size(),
            to_string(policy_.arp.method), to_string(policy_.agent.on_stop));
  if (policy_.vips.empty()) log::notice("no VIPs in the policy: nothing to guard, idling");
  return true;
}

void Daemon::arm_retry(bool on) {
  itimerspec spec{};
  if (on) spec.it_value.tv_sec = kRetrySeconds;
  timerfd_settime(retry_fd_, 0, &spec, nullptr);
}

void Daemon::converge(const char* why) {
  auto report = engine_->converge(policy_, /*dry_run=*/false);
  if (!report) {
    log::error("{}: {}", why, report.error().message());
    arm_retry(true);
    return;
  }
  for (const std::string& line : report->plan.lines()) log::notice("{}: {}", why, line);
  if (!report->converged()) {
    for (const std::string& problem : report->problems) log::warning("not converged: {}", problem);
    arm_retry(true);
    sd_notifyf(0, "STATUS=not ready: %s", report->problems.front().c_str());
    return;
  }
  arm_retry(false);
  const std::string status = fmt::format("guarding {} VIP(s), method {}", policy_.vips.size(),
                                         to_string(policy_.arp.method));
  if (!ready_) {
    ready_ = true;
    log::info("ready: {}", status);
    sd_notifyf(0, "READY=1\nSTATUS=%s", status.c_str());
  } else {
    sd_notifyf(0, "STATUS=%s", status.c_str());
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
    policy_ = std::move(next);
    log::info("reloaded {}: {} VIP(s), method {}", policy_file_, policy_.vips.size(), to_string(policy_.arp.method));
    converge("reload");
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
  converge("start");
  for (;;) {
    epoll_event events[4];
    const int n = epoll_wait(epoll_fd_, events, 4, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      log::error("epoll_wait: {}", std::strerror(errno));
      return 1;
    }
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == retry_fd_) {
        uint64_t expirations = 0;
        if (read(retry_fd_, &expirations, sizeof(expirations)) > 0) converge("retry");
      } else if (fd == signal_fd_) {
        signalfd_siginfo info{};
        while (read(signal_fd_, &info, sizeof(info)) == sizeof(info)) {
          if (info.ssi_signo == SIGHUP) {
            reload();
          } else {
            stop();
            return 0;
          }
        }
      }
    }
  }
}

}  // namespace arpguard
