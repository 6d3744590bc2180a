// Service checks as non-blocking participants of the event loop: each is a
// TCP connect with a deadline, watched with EPOLLOUT; a check that cannot
// finish in time is a failure, never a stall. At most one check per VIP is in
// flight. Not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "core/supervisor.h"

namespace arpguard {

class CheckRunner {
 public:
  using Done = std::function<void(const IpPrefix&, CheckResult)>;

  /// REQUIRES: `epoll_fd` outlives this object. `done` is called with each result.
  CheckRunner(int epoll_fd, Done done) : epoll_fd_(epoll_fd), done_(std::move(done)) {}
  ~CheckRunner();
  CheckRunner(const CheckRunner&) = delete;
  CheckRunner& operator=(const CheckRunner&) = delete;

  void start(const std::vector<CheckTarget>& targets, double timeout, double now);
  /// True when `fd` is one of the checks'; finishes it.
  bool handle(int fd);
  double next_deadline() const;
  /// Fails every check past its deadline.
  void expire(double now);

 private:
  struct InFlight {
    IpPrefix vip;
    uint16_t port = 0;
    double deadline = 0;
  };
  void finish(int fd, int error);

  int epoll_fd_;
  Done done_;
  std::map<int, InFlight> in_flight_;  ///< by socket
};

}  // namespace arpguard
