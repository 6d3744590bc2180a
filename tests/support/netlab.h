// Test support for the integration suite: commands, network namespaces, a
// real-server/client segment, packet captures and background processes.
//
// Everything here cleans up in its destructor, so a failing test still removes
// what it made. Namespace names are "agt-<pid>-<n>-<role>": unique per test
// run, and sweep_stale_namespaces() removes those of runs that died.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace arpguard::testing {

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

/// Runs `command` with /bin/sh; captures stdout and stderr.
CommandResult run(const std::string& command);
/// Single-quotes `text` for /bin/sh.
std::string quote(const std::string& text);

/// The built binaries (from the environment meson sets).
std::string arpguard_bin();
std::string arpguardd_bin();

/// Removes agt-* namespaces whose creating process is gone.
void sweep_stale_namespaces();

class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  /// Writes `text` to path()/name and returns the full path.
  std::string write(const std::string& name, const std::string& text) const;

 private:
  std::string path_;
};

class Netns {
 public:
  explicit Netns(const std::string& role);
  ~Netns();
  Netns(const Netns&) = delete;
  Netns& operator=(const Netns&) = delete;

  const std::string& name() const { return name_; }
  /// Runs a shell command inside the namespace.
  CommandResult exec(const std::string& command) const;
  /// Like exec(), but the test fails (throws) unless it exits 0.
  std::string must(const std::string& command) const;
  std::string prefix() const { return "ip netns exec " + name_ + " "; }

 private:
  std::string name_;
};

/// A background process; killed (SIGTERM, then SIGKILL) if still running at destruction.
class Process {
 public:
  /// Starts `command` under /bin/sh with stdout and stderr into `log_file`.
  Process(const std::string& command, std::string log_file);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  /// Sends `signal` to the process group.
  void signal(int sig) const;
  /// Waits up to `seconds` for exit; returns the exit code, -1 on timeout.
  int wait(double seconds);
  std::string log() const;
  /// Waits until the log contains `text`; false after `seconds`.
  bool wait_for_log(const std::string& text, double seconds) const;

 private:
  pid_t pid_ = -1;
  int exit_code_ = -1;
  std::string log_file_;
};

/// tcpdump of ARP on an interface of a namespace, as text lines with link-level headers.
class ArpCapture {
 public:
  ArpCapture(const Netns& ns, const std::string& interface, const std::string& log_file);
  /// Stops the capture and returns one line per frame.
  std::vector<std::string> stop();

 private:
  std::string out_file_;
  Process process_;
};

/// Two namespaces on one Ethernet segment: a real server "rs" (eth0 192.0.2.1/24,
/// MAC 02:00:00:00:00:01) and a client "cl" (eth0 192.0.2.2/24, MAC 02:00:00:00:00:02).
struct Segment {
  static constexpr const char* kRsIp = "192.0.2.1";
  static constexpr const char* kRsMac = "02:00:00:00:00:01";
  static constexpr const char* kClientIp = "192.0.2.2";

  Segment();
  Netns rs{"rs"};
  Netns client{"cl"};

  /// MACs that answered `arping ip` from the client (one per reply).
  std::vector<std::string> arp_replies(const std::string& ip) const;
};

/// Seconds since an arbitrary epoch, for bounded waits.
double now_seconds();
/// Polls `predicate` every 10 ms until true or `seconds` elapse.
template <class F>
bool eventually(F predicate, double seconds = 5.0);

}  // namespace arpguard::testing

#include <thread>

template <class F>
bool arpguard::testing::eventually(F predicate, double seconds) {
  const double deadline = now_seconds() + seconds;
  while (now_seconds() < deadline) {
    if (predicate()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return predicate();
}
