#include "agent/arpguardd/daemon.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <fstream>

#include "agent/common/log.h"
#include "core/overloaded.h"
#include "kernel/make_dirs.h"
#include "kernel/policy_file.h"

namespace arpguard {

namespace {

constexpr int kMaxEvents = 64;
// The name of arpguardd's claim on a network namespace: abstract unix
// sockets are per network namespace, and vanish with their process.
constexpr char kNamespaceClaim[] = "arpguardd";

// Replies written but not yet read by their peers, beyond which a status of every VIP waits.
constexpr std::size_t kMaxPendingReplyBytes = 64u << 20;
constexpr char kTooManyStatusReplies[] = "too many status replies are waiting to be read: try again later";

double monotonic() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

double unix_time() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

bool watch(int epoll_fd, int fd) {
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = fd;
  return epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event) == 0;
}

std::pair<sockaddr_storage, socklen_t> socket_address(const Endpoint& endpoint) {
  sockaddr_storage storage{};
  const auto bytes = endpoint.address.bytes();
  if (endpoint.address.family == Family::kV4) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&storage);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(endpoint.port);
    std::memcpy(&sin->sin_addr, bytes.data(), 4);
    return {storage, sizeof(sockaddr_in)};
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&storage);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(endpoint.port);
  std::memcpy(&sin6->sin6_addr, bytes.data(), 16);
  return {storage, sizeof(sockaddr_in6)};
}

// True when process `pid` holds CAP_NET_ADMIN (bit 12 of CapEff in /proc/PID/status).
bool has_net_admin(pid_t pid) {
  std::ifstream status(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("CapEff:", 0) != 0) continue;
    const uint64_t caps = std::strtoull(line.c_str() + 7, nullptr, 16);
    return (caps >> 12) & 1;
  }
  return false;
}

// What to do about an error that says arpguardd lacks a privilege.
std::string with_hint(const Error& error) {
  std::string text = error.message();
  if (error.errno_value == EPERM || error.errno_value == EACCES) {
    text += " (arpguardd needs CAP_NET_ADMIN for netlink and nftables: run it as root, or grant it, as the "
            "unit does with AmbientCapabilities=CAP_NET_ADMIN)";
  } else if (error.errno_value == EPROTONOSUPPORT) {
    text += " (the kernel lacks nfnetlink: load nf_tables, modprobe nf_tables)";
  }
  return text;
}

}  // namespace

void Daemon::probe(const std::vector<command::ProbeTarget>& targets) {
  if (!prober_ && !prober_failed_) {
    auto opened = Prober::open();
    if (!opened) {
      prober_failed_ = true;
      log::warning("wire: cannot ask the wire who holds the VIPs: {}", with_hint(opened.error()));
      return;
    }
    prober_ = std::move(*opened);
  }
  if (!prober_) return;
  for (const command::ProbeTarget& t : targets) {
    const Status sent = t.target.family == Family::kV4 && t.source_ip ? prober_->ask_arp(t.ifindex, t.source_mac, *t.source_ip, t.target)
                        : t.target.family == Family::kV4 ? Status()
                                                       : prober_->ask_ndp(t.ifindex, t.source_mac, t.target);
    // A probe that cannot leave (queue full, link down) is only a question not
    // asked: the next sweep asks again. Said once, not once per sweep.
    if (!sent && !probe_warned_) {
      probe_warned_ = true;
      log::warning("wire: probe for {} on {}: {} (further failures are not logged)", t.target.str(), t.interface,
                   sent.message());
    }
  }
}

void Daemon::drain_wire() {
  // Bounded per wake-up: a flood of logged frames shares the loop with everything else.
  constexpr size_t kFramesPerWake = 512;
  input::Wire in;
  if (Status s = nflog_->drain(in.frames, in.lost, kFramesPerWake); !s) {
    log::warning("wire: {}", s.message());
  }
  if (!in.frames.empty() || in.lost) driver_->feed(std::move(in));
}

Daemon::~Daemon() {
  driver_.reset();
  peers_.reset();
  checks_.reset();
  for (int fd : {epoll_fd_, signal_fd_, lock_fd_}) {
    if (fd >= 0) ::close(fd);
  }
}

std::string Daemon::drain_file() const { return policy_.agent.state_dir + "/draining"; }

bool Daemon::claim_namespace() {
  lock_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (lock_fd_ < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path + 1, kNamespaceClaim, sizeof(kNamespaceClaim) - 1);
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + sizeof(kNamespaceClaim));
  if (::bind(lock_fd_, reinterpret_cast<sockaddr*>(&addr), len) == 0 && ::listen(lock_fd_, 4) == 0) return true;
  const int saved = errno;
  ::close(lock_fd_);
  lock_fd_ = -1;
  if (saved != EADDRINUSE) {
    log::error("cannot claim this network namespace for arpguardd: {}", std::strerror(saved));
    return false;
  }
  // Who holds it: its credentials come with a connection. Abstract names have
  // no permissions, so anyone may squat this one: only a holder that could
  // guard the namespace (CAP_NET_ADMIN) is taken for another arpguardd. Never
  // blocks: a full backlog is a holder that does not answer.
  const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  std::optional<ucred> holder;
  if (probe >= 0 && ::connect(probe, reinterpret_cast<sockaddr*>(&addr), len) == 0) {
    ucred cred{};
    socklen_t cred_len = sizeof(cred);
    if (getsockopt(probe, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) == 0) holder = cred;
  }
  if (probe >= 0) ::close(probe);
  if (holder && holder->pid > 0 && has_net_admin(holder->pid)) {
    log::error("another arpguardd (pid {}) already guards this network namespace; this one stops and changes "
               "nothing (stop the other first: systemctl stop arpguardd)",
               holder->pid);
    return false;
  }
  log::warning("the namespace claim @{} is held by {}, which cannot be an arpguardd (no CAP_NET_ADMIN, or it does "
               "not answer): guarding anyway",
               kNamespaceClaim, holder ? fmt::format("pid {} (uid {})", holder->pid, holder->uid) : "a process");
  return true;
}

bool Daemon::open_loop() {
  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGHUP, SIGTERM, SIGINT}) sigaddset(&mask, sig);
  if (sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) return false;
  signal_fd_ = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (signal_fd_ < 0 || epoll_fd_ < 0) {
    log::error("event loop setup: {}", std::strerror(errno));
    return false;
  }
  // Subscribed before the first dump: nothing that happens after it goes unseen.
  const int buffer = policy_.agent.event_buffer_kb * 1024;
  auto rtnl = EventSocket::open(EventSocket::Kind::kRtnetlink, buffer);
  if (!rtnl) {
    log::error("{}", with_hint(rtnl.error()));
    return false;
  }
  auto nft = EventSocket::open(EventSocket::Kind::kNftables, buffer);
  if (!nft) {
    log::error("{}", with_hint(nft.error()));
    return false;
  }
  rtnl_events_ = std::move(*rtnl);
  nft_events_ = std::move(*nft);
  kernel_->nft().tell_own_commits(nft_events_.get());
  if (policy_.watch.enabled) {
    // The watch is advice on top of protection: without it arpguard still guards, and says so.
    auto nflog = NflogSocket::open(policy_.watch.log_group, buffer);
    if (nflog) {
      nflog_ = std::move(*nflog);
      if (!watch(epoll_fd_, nflog_->fd())) {
        log::error("event loop setup: {}", std::strerror(errno));
        return false;
      }
    } else {
      log::warning("wire: not watching the wire: {}", with_hint(nflog.error()));
    }
  }
  for (int fd : {signal_fd_, rtnl_events_->fd(), nft_events_->fd(), lock_fd_}) {
    if (fd >= 0 && !watch(epoll_fd_, fd)) {
      log::error("event loop setup: {}", std::strerror(errno));
      return false;
    }
  }
  checks_ = std::make_unique<CheckRunner>(epoll_fd_, [this](const IpPrefix& vip, CheckResult result) {
    driver_->feed(input::CheckDone{vip, std::move(result)});
  });
  return true;
}

bool Daemon::open_peers() {
  PeerHandlers handlers{[this](const HttpRequest& r) { return on_http(r); }, [this] { return on_agent_check(); },
                        [this](std::string_view line) { return on_control(line); }, [] { return monotonic(); }};
  peers_ = std::make_unique<PeerServer>(epoll_fd_, std::move(handlers));
  const std::string& path = policy_.agent.control_socket;
  if (Status s = make_dirs(path.substr(0, path.rfind('/'))); !s) {
    log::error("control socket {}: {}", path, with_hint(s.error()));
    return false;
  }
  if (Status s = peers_->listen_control(path); !s) {
    log::error("{}", s.message());
    return false;
  }
  for (const Endpoint& endpoint : policy_.readiness.listen) {
    auto [addr, len] = socket_address(endpoint);
    if (Status s = peers_->listen_http(reinterpret_cast<sockaddr*>(&addr), len, "http " + endpoint.str()); !s) {
      log::error("{}", s.message());
      return false;
    }
  }
  for (const Endpoint& endpoint : policy_.readiness.agent_check_listen) {
    auto [addr, len] = socket_address(endpoint);
    if (Status s = peers_->listen_agent_check(reinterpret_cast<sockaddr*>(&addr), len, "agent-check " + endpoint.str());
        !s) {
      log::error("{}", s.message());
      return false;
    }
  }
  return true;
}

bool Daemon::start() {
  PolicyResult loaded = load_policy(policy_file_);
  for (const Diagnostic& d : loaded.errors) log::error("{}", d.str());
  if (!loaded.policy) return false;
  for (const Diagnostic& d : loaded.warnings) log::warning("{}", d.str());
  policy_ = std::move(*loaded.policy);
  if (!claim_namespace()) return false;
  auto kernel = SystemKernel::open(policy_.agent.state_dir);
  if (!kernel) {
    log::error("{}", with_hint(kernel.error()));
    return false;
  }
  kernel_ = std::move(*kernel);
  if (!open_loop() || !open_peers()) return false;

  Supervisor::Options options;
  options.own_portids = kernel_->own_portids();
  options.started = unix_time();
  options.unix_offset = unix_time() - monotonic();
  options.draining = ::access(drain_file().c_str(), F_OK) == 0;
  driver_ = std::make_unique<Driver>(kernel_->apis(), kernel_->conntrack(), *this, policy_, options);
  // The supervisor holds the VIPs from now on; this copy of them would only take memory.
  policy_.vips = {};
  if (notifier_.watchdog_interval()) next_watchdog_ = monotonic();
  driver_->start();
  return true;
}

double Daemon::now() const { return monotonic(); }

void Daemon::log(LogLevel level, const std::string& text) { log::line(static_cast<log::Priority>(level), text); }

input::Events Daemon::drain_events() {
  input::Events in;
  for (EventSocket* socket : {rtnl_events_.get(), nft_events_.get()}) {
    if (Status s = socket->drain(in.events, in.lost); !s) in.error = s.error();
  }
  in.nftables_whole = nft_events_->between_transactions();
  in.unheard = nft_events_->take_unheard();
  return in;
}

void Daemon::run_checks(const std::vector<CheckTarget>& targets, double timeout) {
  checks_->start(targets, timeout, monotonic());
}

void Daemon::persist_drain(bool draining) {
  // The operator's intent outlives a restart of the daemon: it is kept as a file.
  if (draining) {
    if (Status s = make_dirs(policy_.agent.state_dir); !s) log::error("drain: {}", s.message());
    const int fd = ::open(drain_file().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
      log::error("drain: cannot record it in {}: {}", drain_file(), std::strerror(errno));
      return;
    }
    const char text[] = "drained by arpguard drain\n";
    (void)!::write(fd, text, sizeof(text) - 1);
    ::close(fd);
  } else {
    ::unlink(drain_file().c_str());
  }
}

HttpResponse Daemon::on_http(const HttpRequest& request) {
  driver_->refresh_for_query();
  Supervisor& supervisor = driver_->supervisor();
  const double now = monotonic();
  auto readiness = [](bool ready, const std::vector<Reason>& reasons) {
    if (ready) return HttpResponse{200, "text/plain; charset=utf-8", "ready\n"};
    std::string body = "not ready:\n";
    for (const Reason& r : reasons) {
      if (r.severity == Severity::kNotReady) body += "  " + printable(r.text) + "\n";
    }
    return HttpResponse{503, "text/plain; charset=utf-8", body};
  };
  const std::string& path = request.path;
  if (path == "/ready") {
    const ReadySummary summary = supervisor.ready_summary(now);
    return readiness(summary.ready, summary.reasons);
  }
  if (path.rfind("/ready/", 0) == 0) {
    const std::string vip = path.substr(7);
    auto prefix = IpPrefix::parse(vip);
    std::optional<VipStatus> status = prefix ? supervisor.vip_status(prefix->address, now) : std::nullopt;
    // An address names the VIP that holds it; a prefix names only itself
    // (10.0.0.1/31 is not the VIP 10.0.0.1/32, nor 10.0.0.1/0).
    const bool with_length = vip.find('/') != std::string::npos;
    if (status && with_length && IpPrefix::parse(status->vip) != prefix) status.reset();
    if (!status) return {404, "text/plain; charset=utf-8", "no such VIP in the policy: " + printable(vip) + "\n"};
    return readiness(status->ready, status->reasons);
  }
  if (path == "/status") {
    return {200, "application/json", dump_json(to_json(supervisor.snapshot(now, false)), 2) + "\n"};
  }
  if (path == "/status/vips") {
    std::optional<std::string> body = all_vips_status(2);
    if (!body) return {503, "text/plain; charset=utf-8", std::string(kTooManyStatusReplies) + "\n"};
    return {200, "application/json", std::move(*body)};
  }
  if (path == "/metrics") {
    return {200, "text/plain; version=0.0.4; charset=utf-8", render_metrics(supervisor.snapshot(now, false, /*orphans=*/false))};
  }
  return {404, "text/plain; charset=utf-8", "not found; try /ready, /ready/<vip>, /status, /status/vips, /metrics\n"};
}

std::optional<std::string> Daemon::all_vips_status(int indent) {
  if (peers_->counters().pending_output_bytes > kMaxPendingReplyBytes) return std::nullopt;
  std::string text = dump_json(to_json(driver_->supervisor().snapshot(monotonic(), true)), indent) + "\n";
  // Its JSON tree, hundreds of MB at 100,000 VIPs, is gone: handed back now, not kept by glibc.
  ::malloc_trim(0);
  return text;
}

std::string Daemon::on_agent_check() {
  driver_->refresh_for_query();
  const ReadySummary summary = driver_->supervisor().ready_summary(monotonic());
  return agent_check_line(summary.ready, summary.only_draining, summary.reasons.empty() ? "" : summary.reasons.front().text);
}

std::string Daemon::on_control(std::string_view line) {
  const std::string command(line.substr(0, line.find_last_not_of(" \r") + 1));
  nlohmann::json reply;
  if (command == "status vips") {
    driver_->refresh_for_query();
    std::optional<std::string> text = all_vips_status(-1);
    return text ? std::move(*text) : dump_json({{"ok", false}, {"error", kTooManyStatusReplies}}) + "\n";
  }
  if (command == "status") {
    driver_->refresh_for_query();
    reply = to_json(driver_->supervisor().snapshot(monotonic(), false));
  } else if (serving_queries_) {
    // Asked while an apply of thousands of VIPs runs: changing course mid-way
    // is not on offer, and an answer now beats one after the apply.
    reply = {{"ok", false}, {"error", "arpguardd is applying a change to thousands of VIPs: try again when it is done "
                                       "(arpguard status shows progress)"}};
  } else if (command == "drain" || command == "resume") {
    driver_->feed(input::Drain{command == "drain"});
    reply = {{"ok", true}, {"draining", command == "drain"}};
  } else if (command == "reload") {
    const uint64_t request = next_request_++;
    driver_->feed(input::Reload{load_policy(policy_file_), request});
    if (std::optional<ReloadReply> r = driver_->take_reply(request)) {
      reply = {{"ok", r->accepted}, {"accepted", r->accepted}, {"converged", r->converged}, {"errors", r->errors},
               {"problems", r->problems}};
    } else {
      reply = {{"ok", true}, {"accepted", true}, {"converged", false},
               {"problems", {"the new policy is in force; its changes wait for a contested resource (arpguard status)"}}};
    }
  } else {
    reply = {{"ok", false}, {"error", "unknown command '" + printable(command) + "' (status, status vips, drain, resume, reload)"}};
  }
  return dump_json(reply) + "\n";
}

void Daemon::on_signal() {
  signalfd_siginfo info{};
  while (::read(signal_fd_, &info, sizeof(info)) == sizeof(info)) {
    if (info.ssi_signo == SIGHUP) {
      driver_->feed(input::Reload{load_policy(policy_file_), 0});
    } else {
      driver_->feed(input::Stop{});
    }
  }
}

// Stops or resumes waking for kernel notifications. Held, they wait in their
// sockets until the debounce reads them (Driver::events_can_wait).
bool Daemon::hold_events(bool hold) {
  auto interest = [&](bool held) {
    for (int fd : {rtnl_events_->fd(), nft_events_->fd()}) {
      epoll_event event{};
      event.events = held ? 0u : static_cast<uint32_t>(EPOLLIN);
      event.data.fd = fd;
      if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &event) != 0) return false;
    }
    return true;
  };
  if (interest(hold)) {
    events_held_ = hold;
    hold_failed_ = false;
    return true;
  }
  if (!hold_failed_) {
    log::error("epoll_ctl: {}: kernel notifications are read at each turn of the loop", std::strerror(errno));
  }
  hold_failed_ = true;
  if (hold) interest(false);  // both sockets wake the loop again, or neither was held
  return false;
}

double Daemon::next_wakeup() const {
  double soonest = driver_->next_timer();
  // Held notifications that could not be resumed: read them every 10 ms.
  if (events_held_ && !driver_->events_can_wait()) soonest = std::min(soonest, monotonic() + 0.01);
  if (peers_) soonest = std::min(soonest, peers_->next_deadline());
  if (checks_) soonest = std::min(soonest, checks_->next_deadline());
  if (next_watchdog_ >= 0) soonest = std::min(soonest, next_watchdog_);
  return soonest;
}

void Daemon::ping_watchdog(double now) {
  if (next_watchdog_ < 0 || next_watchdog_ > now) return;
  // Pinged from the loop itself: a loop that stalls stops pinging.
  notifier_.send("WATCHDOG=1");
  next_watchdog_ = now + *notifier_.watchdog_interval() / 2;
}

void Daemon::serve_queries() {
  if (serving_queries_ || !peers_) return;
  serving_queries_ = true;
  // Only the peers' sockets, without waiting: signals and kernel
  // notifications stay in theirs (the loop is level-triggered) until the
  // apply is done.
  epoll_event events[kMaxEvents];
  const int n = epoll_wait(epoll_fd_, events, kMaxEvents, 0);
  const double now = monotonic();
  for (int i = 0; i < n; ++i) peers_->handle(events[i].data.fd, events[i].events, now);
  peers_->expire(now);
  ping_watchdog(now);
  serving_queries_ = false;
}

int Daemon::run() {
  ::signal(SIGPIPE, SIG_IGN);  // a peer that hangs up costs only its connection
  if (!start()) return 1;
  epoll_event events[kMaxEvents];
  while (!driver_->exit_code()) {
    const double wake = next_wakeup();
    const double now = monotonic();
    const int timeout_ms = std::isinf(wake) ? -1 : static_cast<int>(std::ceil(std::max(0.0, wake - now) * 1000));
    const int n = epoll_wait(epoll_fd_, events, kMaxEvents, timeout_ms);
    if (n < 0 && errno != EINTR) {
      log::error("epoll_wait: {}", std::strerror(errno));
      return 1;
    }
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == signal_fd_) {
        on_signal();
      } else if (fd == rtnl_events_->fd() || fd == nft_events_->fd()) {
        // Read now (held, a socket wakes the loop only with an error, such as
        // an overrun, which the read takes), then let the next ones wait.
        driver_->drain_events();
        if (driver_->events_can_wait() && !events_held_) hold_events(true);  // failed, they keep waking the loop
      } else if (nflog_ && fd == nflog_->fd()) {
        drain_wire();
      } else if (lock_fd_ >= 0 && fd == lock_fd_) {
        const int peer = ::accept4(lock_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (peer >= 0) ::close(peer);  // someone asked who holds the claim: they have their answer
      } else if (!checks_->handle(fd)) {
        // Repairs before queries: what the kernel said and the timers that fell
        // due go first, so many scrapers of a large status wait on each other,
        // not the repairs.
        if (!events_held_) driver_->drain_events();
        driver_->fire_due_timers(monotonic());
        peers_->handle(fd, events[i].events, monotonic());
      }
    }
    const double after = monotonic();
    driver_->fire_due_timers(after);
    if (events_held_ && !driver_->events_can_wait() && !hold_events(false)) driver_->drain_events();
    peers_->expire(after);
    checks_->expire(after);
    ping_watchdog(after);
  }
  return *driver_->exit_code();
}

}  // namespace arpguard
