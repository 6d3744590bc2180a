// Latency of an HTTP endpoint, one request at a time.
//
//   http_probe HOST PORT PATH COUNT [close|keepalive]
//
// close (default): every request on a new TCP connection, as keepalived's
// HTTP_GET and most health checkers do: connect, send, read to end of stream.
// keepalive: COUNT requests on one connection (HTTP/1.1, Content-Length).
// Prints "COUNT P50 P99 MAX MEAN CODE" in ms, CODE being the status of the
// last answer; exits 1 on any error or if statuses differ.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

double now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "http_probe: %s\n", message.c_str());
  std::exit(1);
}

int connect_to(const sockaddr_in& addr) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die(std::string("socket: ") + std::strerror(errno));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    die(std::string("connect: ") + std::strerror(errno));
  }
  return fd;
}

void send_all(int fd, const std::string& text) {
  for (size_t off = 0; off < text.size();) {
    const ssize_t n = send(fd, text.data() + off, text.size() - off, MSG_NOSIGNAL);
    if (n <= 0) die(std::string("send: ") + std::strerror(errno));
    off += static_cast<size_t>(n);
  }
}

int status_of(const std::string& response) {
  if (response.rfind("HTTP/1.", 0) != 0 || response.size() < 12) die("not an HTTP response: " + response.substr(0, 40));
  return std::atoi(response.c_str() + 9);
}

// One response on a kept-alive connection: headers, then Content-Length bytes.
std::string read_response(int fd, std::string& pending) {
  char buf[8192];
  for (;;) {
    const size_t end = pending.find("\r\n\r\n");
    if (end != std::string::npos) {
      size_t length = 0;
      std::string head = pending.substr(0, end);
      std::string lower = head;
      std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
      if (size_t at = lower.find("content-length:"); at != std::string::npos) length = std::strtoul(head.c_str() + at + 15, nullptr, 10);
      if (pending.size() >= end + 4 + length) {
        std::string response = pending.substr(0, end + 4 + length);
        pending.erase(0, end + 4 + length);
        return response;
      }
    }
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) die("connection closed mid-response");
    pending.append(buf, static_cast<size_t>(n));
  }
}

double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::max(1.0, std::ceil(q * static_cast<double>(v.size()))));
  return v[std::min(v.size(), rank) - 1];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) die("usage: http_probe HOST PORT PATH COUNT [close|keepalive]");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[2])));
  if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) die(std::string("bad host ") + argv[1]);
  const std::string path = argv[3];
  const int count = std::atoi(argv[4]);
  const bool keepalive = argc > 5 && std::string(argv[5]) == "keepalive";
  std::vector<double> times;
  int code = 0;
  if (keepalive) {
    const int fd = connect_to(addr);
    std::string pending;
    const std::string request = "GET " + path + " HTTP/1.1\r\nHost: " + argv[1] + "\r\n\r\n";
    for (int i = 0; i < count; ++i) {
      const double t0 = now_ms();
      send_all(fd, request);
      const int c = status_of(read_response(fd, pending));
      times.push_back(now_ms() - t0);
      if (code && c != code) die("status changed from " + std::to_string(code) + " to " + std::to_string(c));
      code = c;
    }
    close(fd);
  } else {
    const std::string request = "GET " + path + " HTTP/1.1\r\nHost: " + argv[1] + "\r\nConnection: close\r\n\r\n";
    char buf[8192];
    for (int i = 0; i < count; ++i) {
      const double t0 = now_ms();
      const int fd = connect_to(addr);
      send_all(fd, request);
      std::string response;
      for (;;) {
        const ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0) die(std::string("recv: ") + std::strerror(errno));
        if (n == 0) break;
        response.append(buf, static_cast<size_t>(n));
      }
      close(fd);
      times.push_back(now_ms() - t0);
      const int c = status_of(response);
      if (code && c != code) die("status changed from " + std::to_string(code) + " to " + std::to_string(c));
      code = c;
    }
  }
  double mean = 0;
  for (double t : times) mean += t / static_cast<double>(times.size());
  std::printf("%zu %.3f %.3f %.3f %.3f %d\n", times.size(), quantile(times, 0.5), quantile(times, 0.99),
              *std::max_element(times.begin(), times.end()), mean, code);
  return 0;
}
