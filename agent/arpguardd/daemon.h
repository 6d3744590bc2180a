// arpguardd's main loop: apply the policy, keep it applied, stop as told.
//
// One thread. An epoll loop over a signalfd (SIGHUP reload, SIGTERM/SIGINT
// stop) and a retry timer for a policy not yet met.
#pragma once

#include <memory>
#include <string>

#include "core/engine.h"
#include "core/policy.h"
#include "kernel/system_kernel.h"

namespace arpguard {

class Daemon {
 public:
  explicit Daemon(std::string policy_file) : policy_file_(std::move(policy_file)) {}
  ~Daemon();

  /// Runs until SIGTERM/SIGINT; returns the process exit code.
  int run();

 private:
  bool start();
  /// Loads and checks the policy file; logs located errors and returns false when bad.
  bool load(Policy& out);
  void converge(const char* why);
  void reload();
  void stop();
  void arm_retry(bool on);

  std::string policy_file_;
  Policy policy_;
  std::unique_ptr<SystemKernel> kernel_;
  std::unique_ptr<Engine> engine_;
  int epoll_fd_ = -1;
  int signal_fd_ = -1;
  int retry_fd_ = -1;
  bool ready_ = false;
};

}  // namespace arpguard
