#include "agent/arpguardd/checks.h"

#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>

namespace arpguard {

CheckRunner::~CheckRunner() {
  for (const auto& [fd, check] : in_flight_) ::close(fd);
}

void CheckRunner::start(const std::vector<CheckTarget>& targets, double timeout, double now) {
  for (const CheckTarget& target : targets) {
    const bool busy = std::any_of(in_flight_.begin(), in_flight_.end(),
                                  [&](const auto& entry) { return entry.second.vip == target.vip; });
    if (busy) continue;  // the last one is still under way: its deadline will tell
    const bool v4 = target.target.family == Family::kV4;
    const int fd = ::socket(v4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      done_(target.vip, {false, fmt::format("tcp:{} {}", target.port, std::strerror(errno))});
      continue;
    }
    sockaddr_storage storage{};
    socklen_t len = 0;
    const auto bytes = target.target.bytes();
    if (v4) {
      auto* sin = reinterpret_cast<sockaddr_in*>(&storage);
      sin->sin_family = AF_INET;
      sin->sin_port = htons(target.port);
      std::memcpy(&sin->sin_addr, bytes.data(), 4);
      len = sizeof(sockaddr_in);
    } else {
      auto* sin6 = reinterpret_cast<sockaddr_in6*>(&storage);
      sin6->sin6_family = AF_INET6;
      sin6->sin6_port = htons(target.port);
      std::memcpy(&sin6->sin6_addr, bytes.data(), 16);
      len = sizeof(sockaddr_in6);
    }
    in_flight_[fd] = {target.vip, target.port, now + timeout};
    if (::connect(fd, reinterpret_cast<sockaddr*>(&storage), len) == 0) {
      finish(fd, 0);
      continue;
    }
    if (errno != EINPROGRESS) {
      finish(fd, errno);
      continue;
    }
    epoll_event event{};
    event.events = EPOLLOUT;
    event.data.fd = fd;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) finish(fd, errno);
  }
}

bool CheckRunner::handle(int fd) {
  if (!in_flight_.count(fd)) return false;
  int error = 0;
  socklen_t len = sizeof(error);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0) error = errno;
  finish(fd, error);
  return true;
}

void CheckRunner::finish(int fd, int error) {
  auto it = in_flight_.find(fd);
  if (it == in_flight_.end()) return;
  const InFlight check = it->second;
  in_flight_.erase(it);
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  ::close(fd);
  done_(check.vip, {error == 0, error == 0 ? "" : fmt::format("tcp:{} {}", check.port, std::strerror(error))});
}

double CheckRunner::next_deadline() const {
  double soonest = INFINITY;
  for (const auto& [fd, check] : in_flight_) soonest = std::min(soonest, check.deadline);
  return soonest;
}

void CheckRunner::expire(double now) {
  std::vector<int> late;
  for (const auto& [fd, check] : in_flight_) {
    if (check.deadline <= now) late.push_back(fd);
  }
  for (int fd : late) finish(fd, ETIMEDOUT);
}

}  // namespace arpguard
