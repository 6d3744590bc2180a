#include "tests/peers/peer_loop.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <utility>

namespace arpguard::testing {

namespace {

// Before main: SIGPIPE kills (a parent may have left it ignored, and an ignored
// disposition survives exec), and enough fds for hundreds of test connections.
[[maybe_unused]] const bool process_prepared = [] {
  std::signal(SIGPIPE, SIG_DFL);
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = std::min<rlim_t>(files.rlim_max, 65536);
    setrlimit(RLIMIT_NOFILE, &files);
  }
  return true;
}();

}  // namespace

double monotonic_now() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) / 1e9;
}

ListenAddress free_tcp_address(const std::string& host) {
  ListenAddress address;
  const bool v6 = host.find(':') != std::string::npos;
  if (v6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&address.storage);
    in6->sin6_family = AF_INET6;
    inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr);
    address.length = sizeof(sockaddr_in6);
  } else {
    auto* in4 = reinterpret_cast<sockaddr_in*>(&address.storage);
    in4->sin_family = AF_INET;
    inet_pton(AF_INET, host.c_str(), &in4->sin_addr);
    address.length = sizeof(sockaddr_in);
  }
  // Let the kernel pick a port, then give it back for the server to bind.
  const int probe = socket(address.storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0 || bind(probe, address.get(), address.length) != 0) throw std::runtime_error("probe bind failed");
  socklen_t length = address.length;
  getsockname(probe, reinterpret_cast<sockaddr*>(&address.storage), &length);
  close(probe);
  return address;
}

PeerLoop::PeerLoop(PeerHandlers handlers, PeerLimits limits) : epoll_fd_(epoll_create1(EPOLL_CLOEXEC)) {
  REQUIRE(epoll_fd_ >= 0);
  server_ = std::make_unique<PeerServer>(epoll_fd_, std::move(handlers), limits);
}

PeerLoop::~PeerLoop() {
  server_.reset();
  close(epoll_fd_);
}

void PeerLoop::run_once(double max_wait) {
  const double now = monotonic_now();
  const double wait = std::clamp(server_->next_deadline() - now, 0.0, max_wait);
  epoll_event events[128];
  const int ready = epoll_wait(epoll_fd_, events, 128, static_cast<int>(std::ceil(wait * 1000)));
  const double woke = monotonic_now();
  events_handled_ += std::max(ready, 0);
  for (int i = 0; i < ready; ++i) {
    if (!server_->handle(events[i].data.fd, events[i].events, woke)) ++foreign_events_;
  }
  server_->expire(monotonic_now());
}

bool PeerLoop::run_until(const std::function<bool()>& done, double seconds) {
  const double end = monotonic_now() + seconds;
  while (!done()) {
    if (monotonic_now() >= end) return false;
    run_once(0.002);
  }
  return true;
}

void PeerLoop::run_for(double seconds) {
  run_until([] { return false; }, seconds);
}

TestClient TestClient::tcp(const ListenAddress& address) {
  const int fd = socket(address.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  const int rc = connect(fd, address.get(), address.length);
  REQUIRE((rc == 0 || errno == EINPROGRESS));
  return TestClient(fd);
}

TestClient TestClient::unix_stream(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  return TestClient(fd);
}

TestClient::TestClient(TestClient&& other) noexcept
    : fd(std::exchange(other.fd, -1)), received(std::move(other.received)), server_closed(other.server_closed) {}

TestClient::~TestClient() {
  if (fd >= 0) close(fd);
}

void TestClient::send(std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t sent = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (sent < 0 && errno == EAGAIN) {
      // Still connecting: wait for the handshake, which needs no help from the server.
      fd_set writable;
      FD_ZERO(&writable);
      FD_SET(fd, &writable);
      timeval limit{1, 0};
      REQUIRE(select(fd + 1, nullptr, &writable, nullptr, &limit) == 1);
      continue;
    }
    REQUIRE(sent > 0);
    bytes.remove_prefix(static_cast<std::size_t>(sent));
  }
}

void TestClient::read_available() {
  char chunk[65536];
  while (fd >= 0) {
    const ssize_t got = recv(fd, chunk, sizeof(chunk), MSG_DONTWAIT);
    if (got > 0) {
      received.append(chunk, static_cast<std::size_t>(got));
      continue;
    }
    if (got == 0 || (errno != EAGAIN && errno != EINTR && errno != ENOTCONN)) server_closed = true;
    return;
  }
}

void TestClient::hang_up(bool reset) {
  if (fd < 0) return;
  if (reset) {
    const linger abortive{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &abortive, sizeof(abortive));
  }
  close(fd);
  fd = -1;
}

bool TestClient::connected() const {
  int error = 0;
  socklen_t length = sizeof(error);
  sockaddr_storage peer{};
  socklen_t peer_length = sizeof(peer);
  return getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error == 0 &&
         getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_length) == 0;
}

namespace {

// A whole response at the front of `bytes`: its length, or 0 when more is needed.
std::size_t complete_response_length(const std::string& bytes, bool head) {
  const std::size_t head_end = bytes.find("\r\n\r\n");
  if (head_end == std::string::npos) return 0;
  std::size_t body_length = 0;
  const std::size_t field = bytes.find("\r\nContent-Length: ");
  if (field != std::string::npos && field < head_end) body_length = std::stoul(bytes.substr(field + 18));
  const std::size_t total = head_end + 4 + (head ? 0 : body_length);
  return bytes.size() >= total ? total : 0;
}

}  // namespace

bool await_response(PeerLoop& loop, TestClient& client, ClientResponse& response, bool head, double seconds) {
  const bool done = loop.run_until(
      [&] {
        client.read_available();
        return complete_response_length(client.received, head) != 0;
      },
      seconds);
  if (!done) return false;
  const std::size_t length = complete_response_length(client.received, head);
  const std::size_t head_end = client.received.find("\r\n\r\n");
  response.head = client.received.substr(0, head_end + 2);
  response.body = client.received.substr(head_end + 4, length - head_end - 4);
  response.status = std::stoi(client.received.substr(9, 3));
  client.received.erase(0, length);
  return true;
}

bool await_server_close(PeerLoop& loop, TestClient& client, double seconds) {
  return loop.run_until(
      [&] {
        client.read_available();
        return client.server_closed;
      },
      seconds);
}

}  // namespace arpguard::testing
