// Start-to-READY time of a daemon that speaks sd_notify.
//
//   ready_launch LOGFILE TIMEOUT_S GUARD_WAIT_S -- PROGRAM ARGS...
//
// Binds a datagram socket in the abstract namespace, starts PROGRAM with
// NOTIFY_SOCKET naming it and its stderr appended to LOGFILE, and waits for
// READY=1 and for STATUS=guarding... (arpguardd sends READY=1 after its first
// round even when not ready, with a STATUS saying why; "guarding" is ready).
// Prints "PID READY_MS GUARDING_MS": the daemon's pid and the times from just
// before fork() to each datagram (CLOCK_MONOTONIC; GUARDING_MS -1 when it did
// not come within GUARD_WAIT_S after READY=1), then exits and leaves the
// daemon running (stop it by its pid). Exits 1 if the program exits first or
// READY=1 does not come within TIMEOUT_S.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

double now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "ready_launch: %s\n", message.c_str());
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 6 || std::strcmp(argv[4], "--") != 0) {
    die("usage: ready_launch LOGFILE TIMEOUT_S GUARD_WAIT_S -- PROGRAM ARGS...");
  }
  const char* log = argv[1];
  const double timeout_ms = std::atof(argv[2]) * 1000;
  const double guard_wait_ms = std::atof(argv[3]) * 1000;

  const std::string name = "arpguard-bench-notify-" + std::to_string(getpid());
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path + 1, name.data(), name.size());
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) die(std::string("bind: ") + std::strerror(errno));
  setenv("NOTIFY_SOCKET", ("@" + name).c_str(), 1);

  const int log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) die(std::string(log) + ": " + std::strerror(errno));

  const double start = now_ms();
  const pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    dup2(log_fd, 2);
    // Nothing of the caller's: a shell reading this program's stdout must see it end.
    const int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    setsid();  // its own process group: the caller's terminal signals do not reach it
    execvp(argv[5], argv + 5);
    std::fprintf(stderr, "ready_launch: exec %s: %s\n", argv[5], std::strerror(errno));
    _exit(127);
  }
  char buf[4096];
  double ready_at = -1, guarding_at = -1;
  for (;;) {
    if (ready_at >= 0 && now_ms() > ready_at + guard_wait_ms) {
      std::printf("%d %.2f -1\n", static_cast<int>(pid), ready_at - start);
      return 0;
    }
    const double left = std::min(start + timeout_ms, ready_at < 0 ? 1e300 : ready_at + guard_wait_ms + 1) - now_ms();
    if (left <= 0 && ready_at < 0) {
      kill(pid, SIGTERM);
      die("no READY=1 within the timeout");
    }
    pollfd p{fd, POLLIN, 0};
    const int ready = poll(&p, 1, static_cast<int>(std::clamp(left, 0.0, 100.0)) + 1);
    if (ready > 0) {
      const ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
      const double at = now_ms();
      if (n > 0) {
        buf[n] = '\0';
        const std::string text = "\n" + std::string(buf);
        if (ready_at < 0 && text.find("\nREADY=1") != std::string::npos) ready_at = at;
        if (guarding_at < 0 && text.find("\nSTATUS=guarding") != std::string::npos) guarding_at = at;
        if (ready_at >= 0 && guarding_at >= 0) {
          std::printf("%d %.2f %.2f\n", static_cast<int>(pid), ready_at - start, guarding_at - start);
          return 0;
        }
      }
    }
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) die("the program exited before READY=1 (see " + std::string(log) + ")");
  }
}
