// Cleanup for a chaos run killed from outside (meson's timeout sends SIGTERM,
// an operator SIGINT): no destructor runs then, so the process groups the test
// started are killed here, its namespaces deleted and its directory removed.
//
// Thread-safety: construct and destroy on the test's thread; the handler uses
// only async-signal-safe calls.
#pragma once

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

namespace arpguard::chaos {

struct KilledCleanup {
  static constexpr int kMax = 16;
  static inline pid_t groups[kMax] = {};
  static inline char netns[2][64] = {};
  static inline char ip_path[32] = {};
  static inline char temp_dir[256] = {};
  static inline volatile sig_atomic_t count = 0;

  KilledCleanup(const std::vector<pid_t>& pgids, const std::vector<std::string>& names, const std::string& dir) {
    std::snprintf(temp_dir, sizeof(temp_dir), "%s", dir.c_str());
    for (pid_t g : pgids) {
      if (count < kMax) {
        groups[count] = g;
        count = count + 1;
      }
    }
    for (size_t i = 0; i < names.size() && i < 2; ++i) std::snprintf(netns[i], sizeof(netns[i]), "%s", names[i].c_str());
    std::snprintf(ip_path, sizeof(ip_path), "%s", ::access("/usr/sbin/ip", X_OK) == 0 ? "/usr/sbin/ip" : "/sbin/ip");
    struct sigaction action {};
    action.sa_handler = on_signal;
    sigaction(SIGTERM, &action, &previous_term_);
    sigaction(SIGINT, &action, &previous_int_);
  }
  ~KilledCleanup() {
    sigaction(SIGTERM, &previous_term_, nullptr);
    sigaction(SIGINT, &previous_int_, nullptr);
    count = 0;
  }
  static void on_signal(int sig) {
    for (int i = 0; i < count; ++i) ::kill(-groups[i], SIGKILL);
    for (const char* name : netns) {
      if (!*name) continue;
      const pid_t child = ::fork();
      if (child == 0) {
        ::execl(ip_path, "ip", "netns", "del", name, static_cast<char*>(nullptr));
        ::_exit(127);
      }
      if (child > 0) ::waitpid(child, nullptr, 0);
    }
    if (*temp_dir) {
      const pid_t child = ::fork();
      if (child == 0) {
        ::execl("/bin/rm", "rm", "-rf", temp_dir, static_cast<char*>(nullptr));
        ::_exit(127);
      }
      if (child > 0) ::waitpid(child, nullptr, 0);
    }
    ::signal(sig, SIG_DFL);
    ::raise(sig);
  }

 private:
  struct sigaction previous_term_ {}, previous_int_ {};
};

}  // namespace arpguard::chaos
