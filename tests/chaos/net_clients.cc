#include "tests/chaos/net_clients.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace arpguard::chaos {

void enter_netns(const std::string& name) {
  const std::string path = "/run/netns/" + name;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("open " + path + ": " + std::strerror(errno));
  const int r = ::setns(fd, CLONE_NEWNET);
  const int saved = errno;
  ::close(fd);
  if (r != 0) throw std::runtime_error("setns " + path + ": " + std::strerror(saved));
}

double wall_now() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

namespace {

int remaining_ms(double deadline) {
  const double left = deadline - wall_now();
  return left <= 0 ? 0 : static_cast<int>(left * 1000) + 1;
}

}  // namespace

Connection::~Connection() { close(); }

bool Connection::connect_tcp(const std::string& ip, int port, double timeout) {
  close();
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, ip.c_str(), &addr.sin_addr) != 1) {
    error_ = "bad address " + ip;
    return false;
  }
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) {
    error_ = std::string("socket: ") + std::strerror(errno);
    return false;
  }
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) return true;
  if (errno != EINPROGRESS) {
    error_ = std::string("connect: ") + std::strerror(errno);
    close();
    return false;
  }
  pollfd p{fd_, POLLOUT, 0};
  if (::poll(&p, 1, static_cast<int>(timeout * 1000)) != 1) {
    error_ = "connect: timed out";
    close();
    return false;
  }
  int err = 0;
  socklen_t len = sizeof(err);
  ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    error_ = std::string("connect: ") + std::strerror(err);
    close();
    return false;
  }
  return true;
}

bool Connection::connect_unix(const std::string& path) {
  close();
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    error_ = std::string("connect: ") + std::strerror(errno);
    close();
    return false;
  }
  return true;
}

bool Connection::send_all(const std::string& bytes, double timeout) {
  const double deadline = wall_now() + timeout;
  size_t done = 0;
  while (fd_ >= 0 && done < bytes.size()) {
    const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      error_ = std::string("send: ") + std::strerror(errno);
      peer_closed_ = true;
      return false;
    }
    pollfd p{fd_, POLLOUT, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) != 1) {
      error_ = "send: timed out";
      return false;
    }
  }
  return fd_ >= 0;
}

std::string Connection::read_all(double timeout, size_t max_bytes) {
  std::string out = std::move(pending_);
  pending_.clear();
  const double deadline = wall_now() + timeout;
  char buffer[4096];
  while (fd_ >= 0 && out.size() < max_bytes) {
    const ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
    if (n > 0) {
      out.append(buffer, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {
      peer_closed_ = true;
      break;
    }
    if (errno != EAGAIN && errno != EINTR) {
      error_ = std::string("recv: ") + std::strerror(errno);
      peer_closed_ = true;
      break;
    }
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) != 1) {
      error_ = "recv: timed out";
      break;
    }
  }
  return out;
}

std::optional<std::string> Connection::read_http_response(double timeout) {
  const double deadline = wall_now() + timeout;
  std::string data = std::move(pending_);
  pending_.clear();
  char buffer[4096];
  for (;;) {
    const size_t head_end = data.find("\r\n\r\n");
    if (head_end != std::string::npos) {
      size_t length = 0;
      std::string head = data.substr(0, head_end);
      for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (const size_t at = head.find("\r\ncontent-length:"); at != std::string::npos) {
        length = std::strtoul(head.c_str() + at + 17, nullptr, 10);
      }
      const size_t total = head_end + 4 + length;
      if (data.size() >= total) {
        pending_ = data.substr(total);
        return data.substr(0, total);
      }
    }
    if (fd_ < 0) return std::nullopt;
    const ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
    if (n > 0) {
      data.append(buffer, static_cast<size_t>(n));
      continue;
    }
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
      error_ = n == 0 ? "closed before a whole response" : std::string("recv: ") + std::strerror(errno);
      peer_closed_ = true;
      return std::nullopt;
    }
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) != 1) {
      error_ = "no whole response in time";
      return std::nullopt;
    }
  }
}

void Connection::close(bool reset) {
  if (fd_ < 0) return;
  if (reset) {
    linger l{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  }
  ::close(fd_);
  fd_ = -1;
}

int http_status(const std::string& response) {
  if (response.rfind("HTTP/1.", 0) != 0 || response.size() < 12) return 0;
  return std::atoi(response.c_str() + 9);
}

}  // namespace arpguard::chaos
