#include "agent/arpguardd/servers.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "agent/common/log.h"
#include "kernel/make_dirs.h"

namespace arpguard {

namespace {

constexpr unsigned kHttpConnections = 32;
constexpr unsigned kHttpTimeoutSeconds = 5;
constexpr size_t kHttpMemoryPerConnection = 16 * 1024;  // bounds request line and headers
constexpr size_t kControlRequestBytes = 256;
constexpr int kControlReadTimeoutMs = 500;


Result<int> listen_tcp(const Endpoint& endpoint) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Error{"socket for " + endpoint.str(), errno};
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(endpoint.port);
  addr.sin_addr.s_addr = endpoint.address.network_order();
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 64) != 0) {
    const int saved = errno;
    close(fd);
    return Error{"listen on " + endpoint.str(), saved};
  }
  return fd;
}

// ---- HTTP ----

struct HttpReply {
  unsigned code;
  std::string content_type;
  std::string body;
};

HttpReply route(const std::string& url, const ServerHooks& hooks) {
  const nlohmann::json status = hooks.status();
  auto readiness = [](bool ready, const std::vector<std::string>& reasons) {
    if (ready) return HttpReply{MHD_HTTP_OK, "text/plain; charset=utf-8", "ready\n"};
    std::string body = "not ready:\n";
    for (const std::string& reason : reasons) body += "  " + reason + "\n";
    return HttpReply{MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", body};
  };
  if (url == "/ready") {
    return readiness(status["ready"].get<bool>(), status["reasons"].get<std::vector<std::string>>());
  }
  if (url.rfind("/ready/", 0) == 0) {
    const std::string vip = url.substr(7);
    for (const nlohmann::json& v : status["vips"]) {
      const std::string address = v["address"].get<std::string>();
      if (vip == address || vip == address.substr(0, address.find('/'))) {
        std::vector<std::string> reasons = v["reasons"].get<std::vector<std::string>>();
        if (!v["ready"].get<bool>() && reasons.empty()) reasons = status["reasons"].get<std::vector<std::string>>();
        return readiness(v["ready"].get<bool>(), reasons);
      }
    }
    return {MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8", "no such VIP in the policy: " + vip + "\n"};
  }
  if (url == "/status") return {MHD_HTTP_OK, "application/json", status.dump(2) + "\n"};
  if (url == "/metrics") return {MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", render_metrics(status)};
  return {MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8", "not found; try /ready, /ready/<vip>, /status, /metrics\n"};
}

// Answers on the first call, once the headers are in: no request has a body
// arpguard wants, so none is ever read.
MHD_Result answer(void* cls, MHD_Connection* connection, const char* url, const char* method, const char*,
                  const char*, size_t*, void**) {
  const std::string verb = method;
  const char* length = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
  const bool has_body = (length && std::string(length) != "0") ||
                        MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
  HttpReply reply;
  if (verb != "GET" && verb != "HEAD") {
    reply = {MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "only GET and HEAD\n"};
  } else if (has_body) {
    reply = {MHD_HTTP_CONTENT_TOO_LARGE, "text/plain; charset=utf-8", "no request body is accepted\n"};
  } else {
    reply = route(url, *static_cast<const ServerHooks*>(cls));
  }
  MHD_Response* response =
      MHD_create_response_from_buffer(reply.body.size(), reply.body.data(), MHD_RESPMEM_MUST_COPY);
  MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, reply.content_type.c_str());
  MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  if (reply.code == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  const MHD_Result queued = MHD_queue_response(connection, reply.code, response);
  MHD_destroy_response(response);
  return queued;
}

// libmicrohttpd's own messages (a request too big, a client gone) join our log.
void log_http(void*, const char* format, va_list args) {
  char text[512];
  vsnprintf(text, sizeof(text), format, args);
  std::string line(text);
  while (!line.empty() && line.back() == '\n') line.pop_back();
  log::info("http: {}", line);
}

}  // namespace

Servers::~Servers() {
  for (MHD_Daemon* daemon : http_) MHD_stop_daemon(daemon);
  if (http_timer_fd_ >= 0) close(http_timer_fd_);
  for (int fd : agent_check_fds_) close(fd);
  if (control_fd_ >= 0) {
    close(control_fd_);
    unlink(control_path_.c_str());
  }
}

Status Servers::open(const Policy& policy) {
  // Control socket: refuse to take over one a live daemon answers on.
  control_path_ = policy.agent.control_socket;
  if (Status s = make_dirs(control_path_.substr(0, control_path_.rfind('/'))); !s) return s;
  control_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, control_path_.c_str(), sizeof(addr.sun_path) - 1);
  const int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const bool live = connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(probe);
  if (live) return Status::failure("control socket " + control_path_ + " is in use by another arpguardd");
  unlink(control_path_.c_str());
  if (bind(control_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(control_fd_, 16) != 0 ||
      chmod(control_path_.c_str(), 0660) != 0) {
    return Status::failure("control socket " + control_path_, errno);
  }

  for (const Endpoint& endpoint : policy.readiness.agent_check_listen) {
    auto fd = listen_tcp(endpoint);
    if (!fd) return fd.status();
    agent_check_fds_.push_back(*fd);
  }
  for (const Endpoint& endpoint : policy.readiness.listen) {
    auto fd = listen_tcp(endpoint);
    if (!fd) return fd.status();
    MHD_Daemon* daemon = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, nullptr, nullptr, &answer, &hooks_, MHD_OPTION_EXTERNAL_LOGGER, &log_http, nullptr,
        MHD_OPTION_LISTEN_SOCKET, *fd,
        MHD_OPTION_CONNECTION_LIMIT, kHttpConnections, MHD_OPTION_CONNECTION_TIMEOUT, kHttpTimeoutSeconds,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, kHttpMemoryPerConnection, MHD_OPTION_END);
    if (!daemon) {
      close(*fd);
      return Status::failure("start HTTP server on " + endpoint.str());
    }
    http_.push_back(daemon);
    http_epoll_fds_.push_back(MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_EPOLL_FD)->epoll_fd);
  }
  if (!http_.empty()) {
    http_timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (http_timer_fd_ < 0) return Status::failure("timerfd for HTTP", errno);
  }
  return Status();
}

void Servers::run_http() {
  // libmicrohttpd has work that no descriptor announces (queued replies, time-outs):
  // it says when to run again.
  uint64_t soonest_ms = UINT64_MAX;
  for (MHD_Daemon* daemon : http_) {
    MHD_run(daemon);
    MHD_UNSIGNED_LONG_LONG ms = 0;
    if (MHD_get_timeout(daemon, &ms) == MHD_YES) soonest_ms = std::min<uint64_t>(soonest_ms, ms);
  }
  if (http_timer_fd_ < 0 || soonest_ms == UINT64_MAX) return;
  itimerspec spec{};
  spec.it_value.tv_sec = static_cast<time_t>(soonest_ms / 1000);
  spec.it_value.tv_nsec = static_cast<long>(soonest_ms % 1000) * 1000000 + 1;  // never 0: that disarms
  timerfd_settime(http_timer_fd_, 0, &spec, nullptr);
}

std::vector<int> Servers::fds() const {
  std::vector<int> out{control_fd_};
  out.insert(out.end(), agent_check_fds_.begin(), agent_check_fds_.end());
  out.insert(out.end(), http_epoll_fds_.begin(), http_epoll_fds_.end());
  if (http_timer_fd_ >= 0) out.push_back(http_timer_fd_);
  return out;
}

bool Servers::on_readable(int fd) {
  if (fd == control_fd_) {
    serve_control(fd);
    return true;
  }
  for (int listener : agent_check_fds_) {
    if (fd == listener) {
      serve_agent_check(fd);
      return true;
    }
  }
  if (fd == http_timer_fd_) {
    uint64_t expirations = 0;
    (void)!read(fd, &expirations, sizeof(expirations));
    run_http();
    return true;
  }
  for (int http_fd : http_epoll_fds_) {
    if (fd == http_fd) {
      run_http();
      return true;
    }
  }
  return false;
}

void Servers::serve_agent_check(int listener) {
  for (;;) {
    const int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    const std::string line = agent_check_line(hooks_.status());
    (void)!write(fd, line.data(), line.size());
    close(fd);
  }
}

void Servers::serve_control(int listener) {
  for (;;) {
    const int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    char buffer[kControlRequestBytes];
    pollfd wait{fd, POLLIN, 0};
    ssize_t n = 0;
    if (poll(&wait, 1, kControlReadTimeoutMs) == 1) n = read(fd, buffer, sizeof(buffer) - 1);
    std::string command(buffer, n > 0 ? static_cast<size_t>(n) : 0);
    command.erase(command.find_last_not_of(" \r\n") + 1);
    nlohmann::json reply;
    if (command == "status") {
      reply = hooks_.status();
    } else if (command == "drain" || command == "resume") {
      hooks_.set_draining(command == "drain");
      reply = {{"ok", true}, {"draining", command == "drain"}};
    } else {
      reply = {{"ok", false}, {"error", "unknown command '" + command + "' (status, drain, resume)"}};
    }
    const std::string text = reply.dump() + "\n";
    for (size_t sent = 0; sent < text.size();) {
      const ssize_t w = write(fd, text.data() + sent, text.size() - sent);
      if (w <= 0) break;
      sent += static_cast<size_t>(w);
    }
    close(fd);
  }
}

}  // namespace arpguard
