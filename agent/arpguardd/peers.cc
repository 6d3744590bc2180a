#include "agent/arpguardd/peers.h"

#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <unordered_map>
#include <variant>
#include <vector>

namespace arpguard {

namespace {

enum class PeerKind { http, agent_check, control };

// What a connection is doing now; its deadline and eviction rank follow from it.
enum class Phase {
  awaiting_request,  // HTTP: connected or kept alive, no byte of a next request yet
  receiving,         // part of a request or command is in
  writing,           // a reply is being written
  lingering,         // reply sent and write side shut: discarding until the peer closes
};

enum class Closing { no, gracefully, abortively };

constexpr int kAcceptsPerWakeup = 64;
constexpr int kListenBacklog = 128;
constexpr std::size_t kLargeReplyBytes = 1u << 20;
constexpr std::size_t kControlLineBytes = 256;  // including the '\n'
constexpr std::size_t kDiscardBytesPerWakeup = 64 * 1024;
constexpr std::size_t kLingerDiscardBytes = 64 * 1024;
constexpr std::size_t kSendChunkBytes = 1024 * 1024;

constexpr std::string_view kControlInvalidBytes = "{\"ok\":false,\"error\":\"invalid bytes in command\"}\n";
constexpr std::string_view kControlTooLong = "{\"ok\":false,\"error\":\"command too long\"}\n";
constexpr std::string_view kControlInternalError = "{\"ok\":false,\"error\":\"internal error\"}\n";
constexpr std::string_view kAgentCheckInternalError = "fail #arpguardd internal error\n";

struct Listener {
  int fd = -1;
  PeerKind kind = PeerKind::http;
  std::size_t limit = 0;
  std::size_t open = 0;
  std::string control_path;  // control sockets only: what to unlink, if still ours
  dev_t control_device = 0;
  ino_t control_inode = 0;
};

struct Connection {
  int fd = -1;
  PeerKind kind = PeerKind::http;
  int listener_fd = -1;
  Phase phase = Phase::receiving;
  double phase_started = 0;
  double deadline = 0;
  std::string input;
  bool input_needs_parse = false;  // new bytes may complete or break a request
  std::string output;
  std::size_t output_sent = 0;
  bool close_after_output = false;
  bool peer_closed = false;  // the peer shut its write side
  std::size_t lingered_bytes = 0;
  std::uint32_t watched_events = 0;
  Closing closing = Closing::no;
  bool busy = false;  // its handler is running: left alone until it returns
};

Status failure_closing(int fd, std::string what, int errno_value) {
  if (fd >= 0) close(fd);
  return Status::failure(std::move(what), errno_value);
}

std::string_view file_type_name(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISFIFO(mode)) return "a fifo";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a socket";
}

bool has_printable_ascii_only(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

}  // namespace

struct PeerServer::State {
  int epoll_fd;
  PeerHandlers handlers;
  PeerLimits limits;
  std::unordered_map<int, Listener> listeners;
  std::unordered_map<int, Connection> connections;
  PeerCounters totals;  // `open` and `pending_output_bytes` are filled in by counters()
  int reserve_fd = -1;  // given up to shed one pending connection when out of fds

  PeerKindCounters& counters_for(PeerKind kind) {
    switch (kind) {
      case PeerKind::http: return totals.http;
      case PeerKind::agent_check: return totals.agent_check;
      case PeerKind::control: return totals.control;
    }
    return totals.http;
  }

  // Does not close the listener's fd when it fails: the caller does.
  Status add_listener(const Listener& listener) {
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.fd = listener.fd;
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listener.fd, &event) != 0) {
      return Status::failure("epoll_ctl add listener", errno);
    }
    listeners.emplace(listener.fd, listener);
    return Status();
  }

  Status listen_tcp(const sockaddr* address, socklen_t length, const std::string& label, PeerKind kind) {
    const bool is_v6 = address != nullptr && address->sa_family == AF_INET6 && length >= sizeof(sockaddr_in6);
    const bool is_v4 = address != nullptr && address->sa_family == AF_INET && length >= sizeof(sockaddr_in);
    if (!is_v4 && !is_v6) return Status::failure("listen " + label + ": not an IPv4 or IPv6 address");
    const int fd = socket(address->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return Status::failure("listen " + label + ": socket", errno);
    const int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
      return failure_closing(fd, "listen " + label + ": SO_REUSEADDR", errno);
    }
    if (is_v6) {
      if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) {
        return failure_closing(fd, "listen " + label + ": IPV6_V6ONLY", errno);
      }
      if (setsockopt(fd, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof(one)) != 0) {
        return failure_closing(fd, "listen " + label + ": IPV6_FREEBIND", errno);
      }
    } else if (setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one)) != 0) {
      return failure_closing(fd, "listen " + label + ": IP_FREEBIND", errno);
    }
    if (bind(fd, address, length) != 0) return failure_closing(fd, "listen " + label + ": bind", errno);
    if (listen(fd, kListenBacklog) != 0) return failure_closing(fd, "listen " + label + ": listen", errno);
    Listener listener;
    listener.fd = fd;
    listener.kind = kind;
    listener.limit = kind == PeerKind::http ? limits.http_connections : limits.agent_check_connections;
    Status added = add_listener(listener);
    if (!added.ok()) close(fd);
    return added;
  }

  // An existing socket at `path`: refused when a server answers, unlinked when stale.
  Status remove_stale_socket(const std::string& path, const sockaddr_un& address, const struct stat& seen) {
    const int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (probe < 0) return Status::failure("control socket " + path + ": socket", errno);
    const int connected = connect(probe, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
    const int connect_errno = errno;
    close(probe);
    if (connected == 0 || connect_errno == EAGAIN) {
      return Status::failure("control socket " + path + ": another arpguardd is answering on it");
    }
    if (connect_errno != ECONNREFUSED) return Status::failure("control socket " + path + ": connect", connect_errno);
    struct stat again {};
    if (lstat(path.c_str(), &again) != 0 || again.st_dev != seen.st_dev || again.st_ino != seen.st_ino) {
      return Status::failure("control socket " + path + ": replaced while checking it; not touching it");
    }
    if (unlink(path.c_str()) != 0) return Status::failure("control socket " + path + ": unlink stale socket", errno);
    return Status();
  }

  Status listen_control(const std::string& path) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(address.sun_path)) {
      return Status::failure("control socket " + path + ": path empty or too long for a unix socket");
    }
    std::memcpy(address.sun_path, path.data(), path.size());
    struct stat existing {};
    if (lstat(path.c_str(), &existing) == 0) {
      if (!S_ISSOCK(existing.st_mode)) {
        return Status::failure("control socket " + path + ": the path exists and is " +
                               std::string(file_type_name(existing.st_mode)) + "; not touching it");
      }
      if (Status removed = remove_stale_socket(path, address, existing); !removed) return removed;
    } else if (errno != ENOENT) {
      return Status::failure("control socket " + path + ": lstat", errno);
    }
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return Status::failure("control socket " + path + ": socket", errno);
    // The socket file is born 0600 at most (single-threaded: the umask is ours for
    // these two calls), then opened to the group.
    const mode_t saved_umask = umask(0177);
    const int bound = bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
    const int bind_errno = errno;
    umask(saved_umask);
    if (bound != 0) return failure_closing(fd, "control socket " + path + ": bind", bind_errno);
    struct stat created {};
    if (lstat(path.c_str(), &created) != 0 || !S_ISSOCK(created.st_mode)) {
      return failure_closing(fd, "control socket " + path + ": vanished after bind", errno);
    }
    Listener listener;
    listener.fd = fd;
    listener.kind = PeerKind::control;
    listener.limit = limits.control_connections;
    listener.control_path = path;
    listener.control_device = created.st_dev;
    listener.control_inode = created.st_ino;
    Status listening;
    if (chmod(path.c_str(), 0660) != 0) {
      listening = Status::failure("control socket " + path + ": chmod 0660", errno);
    } else if (listen(fd, kListenBacklog) != 0) {
      listening = Status::failure("control socket " + path + ": listen", errno);
    } else {
      listening = add_listener(listener);
    }
    if (!listening.ok()) {
      unlink_control_socket(listener);
      close(fd);
    }
    return listening;
  }

  static void unlink_control_socket(const Listener& listener) {
    if (listener.control_path.empty()) return;
    struct stat now {};
    if (lstat(listener.control_path.c_str(), &now) == 0 && S_ISSOCK(now.st_mode) &&
        now.st_dev == listener.control_device && now.st_ino == listener.control_inode) {
      unlink(listener.control_path.c_str());
    }
  }

  // ---- connections: phases, deadlines, closing ----

  // Calls a handler for `connection`; returns the time after it.
  template <class Handler>
  double run_handler(Connection& connection, double now, Handler&& handler) {
    connection.busy = true;
    try {
      handler();
    } catch (...) {
      connection.busy = false;
      throw;
    }
    connection.busy = false;
    return handlers.clock ? std::max(now, handlers.clock()) : now;
  }

  void set_phase(Connection& connection, Phase phase, double now) {
    connection.phase = phase;
    connection.phase_started = now;
    if (connection.kind != PeerKind::http) {
      // Control and agent-check have one deadline for the whole connection.
      if (phase == Phase::lingering) connection.deadline = std::min(connection.deadline, now + limits.linger_seconds);
      return;
    }
    switch (phase) {
      case Phase::awaiting_request: connection.deadline = now + limits.http_idle_seconds; break;
      case Phase::receiving: connection.deadline = now + limits.http_request_seconds; break;
      case Phase::writing: connection.deadline = now + limits.http_write_seconds; break;
      case Phase::lingering: connection.deadline = now + limits.linger_seconds; break;
    }
  }

  // Frees a reply's bytes; a large one is handed back to the system at once
  // (glibc keeps freed heap: 18 MB a status of 100,000 VIPs, per reader).
  static void release_output(Connection& connection) {
    const bool large = connection.output.capacity() >= kLargeReplyBytes;
    std::string().swap(connection.output);
    if (large) ::malloc_trim(0);
  }

  void close_connection(int fd, Closing how) {
    const auto found = connections.find(fd);
    if (found == connections.end()) return;
    release_output(found->second);
    if (how == Closing::abortively) {
      const linger reset{1, 0};  // TCP: RST and free the kernel's send queue now
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
    }
    epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
    close(fd);
    if (const auto listener = listeners.find(found->second.listener_fd); listener != listeners.end()) {
      --listener->second.open;
    }
    connections.erase(found);
  }

  // Abortive when a reply is left unsent: nobody will read it.
  void close_at_deadline_or_eviction(Connection& connection) {
    const bool unsent = connection.output_sent < connection.output.size();
    close_connection(connection.fd, unsent ? Closing::abortively : Closing::gracefully);
  }

  // The connection stuck longest in its phase, lingering ones first; -1 when none.
  int eviction_candidate(int listener_fd) const {
    const Connection* oldest = nullptr;
    for (const auto& [fd, connection] : connections) {
      if (listener_fd >= 0 && connection.listener_fd != listener_fd) continue;
      if (connection.busy) continue;
      const auto rank = [](const Connection* c) { return std::pair(c->phase != Phase::lingering, c->phase_started); };
      if (oldest == nullptr || rank(&connection) < rank(oldest)) oldest = &connection;
    }
    return oldest == nullptr ? -1 : oldest->fd;
  }

  void evict(int fd) {
    const auto found = connections.find(fd);
    if (found == connections.end()) return;
    ++counters_for(found->second.kind).evicted;
    close_at_deadline_or_eviction(found->second);
  }

  void update_watched_events(Connection& connection) {
    const bool output_pending = connection.output_sent < connection.output.size();
    std::uint32_t wanted = connection.peer_closed ? 0u : std::uint32_t{EPOLLRDHUP};
    if (output_pending) {
      wanted |= EPOLLOUT;  // not EPOLLIN: no new request is read while a reply waits
    } else if (!connection.peer_closed) {
      wanted |= EPOLLIN;
    }
    if (wanted == connection.watched_events) return;
    epoll_event event{};
    event.events = wanted;
    event.data.fd = connection.fd;
    if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, connection.fd, &event) != 0) {
      connection.closing = Closing::abortively;
      return;
    }
    connection.watched_events = wanted;
  }

  // Closes the connection if it asked to be closed, else watches what it waits for.
  void settle(int fd) {
    const auto found = connections.find(fd);
    if (found == connections.end()) return;
    if (found->second.closing == Closing::no) update_watched_events(found->second);
    if (found->second.closing != Closing::no) close_connection(fd, found->second.closing);
  }

  // ---- accepting ----

  void accept_ready(Listener& listener, double now) {
    for (int accepted = 0; accepted < kAcceptsPerWakeup; ++accepted) {
      const int fd = accept4(listener.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS || errno == ENOMEM) return;
        if (errno == EMFILE || errno == ENFILE) {
          if (!connections.empty()) {
            evict(eviction_candidate(-1));
          } else {
            shed_one_pending_connection(listener);
          }
        }
        continue;  // EINTR, ECONNABORTED, EPROTO, EPERM...: that connection only
      }
      if (listener.open >= listener.limit) evict(eviction_candidate(listener.fd));
      open_connection(fd, listener, now);
    }
  }

  // Out of fds and none of ours to evict: take one pending connection off the queue
  // so the listener stops being readable for nothing.
  void shed_one_pending_connection(const Listener& listener) {
    if (reserve_fd >= 0) close(reserve_fd);
    const int fd = accept4(listener.fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) close(fd);
    reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  }

  void open_connection(int fd, Listener& listener, double now) {
    Connection& connection = connections[fd];
    connection.fd = fd;
    connection.kind = listener.kind;
    connection.listener_fd = listener.fd;
    connection.watched_events = EPOLLIN | EPOLLRDHUP;
    ++listener.open;
    ++counters_for(listener.kind).accepted;
    epoll_event event{};
    event.events = connection.watched_events;
    event.data.fd = fd;
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event) != 0) {
      connection.watched_events = 0;
      close_connection(fd, Closing::abortively);
      return;
    }
    connection.deadline = now + limits.one_shot_seconds;
    switch (listener.kind) {
      case PeerKind::http: set_phase(connection, Phase::awaiting_request, now); break;
      case PeerKind::control: set_phase(connection, Phase::receiving, now); break;
      case PeerKind::agent_check: {
        std::string line;
        double after = now;
        try {
          after = run_handler(connection, now, [&] {
            line = handlers.agent_check ? handlers.agent_check() : std::string(kAgentCheckInternalError);
          });
        } catch (...) {
          ++totals.agent_check.handler_failures;
          line = kAgentCheckInternalError;
        }
        if (line.empty() || line.back() != '\n') line.push_back('\n');
        connection.deadline = std::max(connection.deadline, after + limits.one_shot_seconds);
        send_reply(connection, std::move(line), /*close_after=*/true, after);
        break;
      }
    }
    settle(fd);
  }

  // ---- reading ----

  void read_into_input(Connection& connection, std::size_t capacity) {
    const std::size_t size_before = connection.input.size();
    char chunk[kMaxHeadBytes];
    while (connection.input.size() < capacity) {
      const std::size_t wanted = std::min(sizeof(chunk), capacity - connection.input.size());
      const ssize_t received = recv(connection.fd, chunk, wanted, MSG_DONTWAIT);
      if (received > 0) {
        connection.input.append(chunk, static_cast<std::size_t>(received));
        continue;
      }
      if (received == 0) {
        connection.peer_closed = true;
      } else if (errno == EINTR) {
        continue;
      } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
        connection.closing = Closing::abortively;
      }
      break;
    }
    // Parse again only when a line may have ended or gone wrong, so a peer sending
    // one byte at a time costs a parse per line, not per byte.
    const std::string_view fresh = std::string_view(connection.input).substr(size_before == 0 ? 0 : size_before - 1);
    if (connection.input.size() >= capacity || fresh.find_first_of(std::string_view("\n\r\0", 3)) != fresh.npos) {
      connection.input_needs_parse = true;
    }
  }

  void discard_input(Connection& connection) {
    char chunk[16 * 1024];
    for (std::size_t discarded = 0; discarded < kDiscardBytesPerWakeup;) {
      const ssize_t received = recv(connection.fd, chunk, sizeof(chunk), MSG_DONTWAIT);
      if (received > 0) {
        discarded += static_cast<std::size_t>(received);
        connection.lingered_bytes += connection.phase == Phase::lingering ? static_cast<std::size_t>(received) : 0;
        continue;
      }
      if (received < 0 && errno == EINTR) continue;
      if (received == 0) connection.peer_closed = true;
      if (received < 0 && errno != EAGAIN && errno != EWOULDBLOCK) connection.closing = Closing::abortively;
      break;
    }
    if (connection.phase == Phase::lingering &&
        (connection.peer_closed || connection.lingered_bytes > kLingerDiscardBytes)) {
      connection.closing = Closing::gracefully;
    }
  }

  void read_ready(Connection& connection) {
    const bool wants_input = connection.phase != Phase::lingering && connection.kind != PeerKind::agent_check &&
                             !(connection.kind == PeerKind::control && connection.phase != Phase::receiving);
    if (!wants_input) return discard_input(connection);
    read_into_input(connection, connection.kind == PeerKind::http ? kMaxHeadBytes : kControlLineBytes);
  }

  // ---- writing ----

  void send_reply(Connection& connection, std::string bytes, bool close_after, double now) {
    connection.output = std::move(bytes);
    connection.output_sent = 0;
    connection.close_after_output = close_after;
    set_phase(connection, Phase::writing, now);
    write_ready(connection, now);
  }

  void write_ready(Connection& connection, double now) {
    if (connection.phase != Phase::writing) return;
    while (connection.output_sent < connection.output.size()) {
      const std::size_t length = std::min(connection.output.size() - connection.output_sent, kSendChunkBytes);
      const ssize_t sent =
          send(connection.fd, connection.output.data() + connection.output_sent, length, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (sent > 0) {
        connection.output_sent += static_cast<std::size_t>(sent);
        continue;
      }
      if (sent < 0 && errno == EINTR) continue;
      if (sent == 0 || errno == EAGAIN || errno == EWOULDBLOCK) return;
      connection.closing = Closing::abortively;  // EPIPE, ECONNRESET...: the peer is gone
      return;
    }
    release_output(connection);  // a many-MB reply is freed as soon as it is sent
    connection.output_sent = 0;
    if (connection.close_after_output) {
      std::string().swap(connection.input);
      shutdown(connection.fd, SHUT_WR);
      if (connection.peer_closed) {
        connection.closing = Closing::gracefully;
      } else {
        set_phase(connection, Phase::lingering, now);
      }
      return;
    }
    set_phase(connection, connection.input.empty() ? Phase::awaiting_request : Phase::receiving, now);
    connection.input_needs_parse = !connection.input.empty();
  }

  // ---- serving ----

  void serve_http(Connection& connection, double now) {
    while (connection.closing == Closing::no &&
           (connection.phase == Phase::awaiting_request || connection.phase == Phase::receiving)) {
      if (connection.input.empty()) {
        if (connection.peer_closed) connection.closing = Closing::gracefully;
        return;
      }
      if (connection.phase == Phase::awaiting_request) set_phase(connection, Phase::receiving, now);
      if (!connection.input_needs_parse) return;
      std::visit(Overloaded{
                     [&](const NeedMoreBytes&) {
                       connection.input_needs_parse = false;
                       if (connection.peer_closed) connection.closing = Closing::gracefully;
                     },
                     [&](const ParsedRequest& parsed) {
                       connection.input.erase(0, parsed.consumed);
                       answer_http(connection, parsed, now);
                     },
                     [&](const RejectedRequest& rejection) {
                       ++totals.http.rejected;
                       send_reply(connection, render_http_rejection(rejection, false), /*close_after=*/true, now);
                     },
                 },
                 parse_http_request(connection.input));
    }
  }

  void answer_http(Connection& connection, const ParsedRequest& parsed, double now) {
    HttpResponse response;
    bool keep_alive = parsed.keep_alive;
    try {
      now = run_handler(connection, now, [&] {
        if (handlers.http) {
          response = handlers.http(parsed.request);
        } else {
          response.status = 404;
          response.body = "not found\n";
        }
      });
    } catch (...) {
      ++totals.http.handler_failures;
      response = HttpResponse{500, "text/plain; charset=utf-8", "internal error\n"};
      keep_alive = false;
    }
    const bool head_only = parsed.request.method == "HEAD";
    send_reply(connection, render_http_response(response, head_only, keep_alive), !keep_alive, now);
  }

  void serve_control(Connection& connection, double now) {
    if (connection.phase != Phase::receiving) return;
    const std::size_t newline = connection.input.find('\n');
    const std::string_view line = std::string_view(connection.input).substr(0, newline);
    if (!has_printable_ascii_only(line)) {
      ++totals.control.rejected;
      return send_reply(connection, std::string(kControlInvalidBytes), true, now);
    }
    if (newline == std::string::npos) {
      if (connection.input.size() >= kControlLineBytes) {
        ++totals.control.rejected;
        return send_reply(connection, std::string(kControlTooLong), true, now);
      }
      if (!connection.peer_closed) return;  // more to come
      if (connection.input.empty()) {
        connection.closing = Closing::gracefully;
        return;
      }
      // The peer shut its side after an unterminated line: that line is the command.
    }
    std::string reply;
    try {
      now = run_handler(connection, now,
                        [&] { reply = handlers.control ? handlers.control(line) : std::string(kControlInternalError); });
    } catch (...) {
      ++totals.control.handler_failures;
      reply = kControlInternalError;
    }
    // A reload of thousands of VIPs outlasts the connection's deadline: the reply still gets its time.
    connection.deadline = std::max(connection.deadline, now + limits.one_shot_seconds);
    send_reply(connection, std::move(reply), /*close_after=*/true, now);
  }

  void handle_connection(Connection& connection, std::uint32_t events, double now) {
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) write_ready(connection, now);
    if (connection.closing == Closing::no && (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))) {
      read_ready(connection);
    }
    if (connection.closing != Closing::no) return;
    switch (connection.kind) {
      case PeerKind::http: serve_http(connection, now); break;
      case PeerKind::control: serve_control(connection, now); break;
      case PeerKind::agent_check: break;
    }
  }
};

PeerServer::PeerServer(int epoll_fd, PeerHandlers handlers, PeerLimits limits)
    : state_(std::make_unique<State>(State{epoll_fd, std::move(handlers), limits, {}, {}, {}, -1})) {
  state_->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

PeerServer::~PeerServer() {
  std::vector<int> fds;
  for (const auto& [fd, connection] : state_->connections) fds.push_back(fd);
  for (const int fd : fds) state_->close_connection(fd, Closing::abortively);
  for (const auto& [fd, listener] : state_->listeners) {
    epoll_ctl(state_->epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
    close(fd);
    State::unlink_control_socket(listener);
  }
  if (state_->reserve_fd >= 0) close(state_->reserve_fd);
}

Status PeerServer::listen_http(const sockaddr* address, socklen_t length, const std::string& label) {
  return state_->listen_tcp(address, length, label, PeerKind::http);
}

Status PeerServer::listen_agent_check(const sockaddr* address, socklen_t length, const std::string& label) {
  return state_->listen_tcp(address, length, label, PeerKind::agent_check);
}

Status PeerServer::listen_control(const std::string& path) {
  return state_->listen_control(path);
}

bool PeerServer::handle(int fd, std::uint32_t events, double now) {
  if (const auto listener = state_->listeners.find(fd); listener != state_->listeners.end()) {
    try {
      state_->accept_ready(listener->second, now);
    } catch (...) {
      // Out of memory while accepting: the next wake-up tries again.
    }
    return true;
  }
  const auto found = state_->connections.find(fd);
  if (found == state_->connections.end()) return false;
  if (found->second.busy) return true;  // its handler is running, further up this stack
  try {
    state_->handle_connection(found->second, events, now);
  } catch (...) {
    found->second.closing = Closing::abortively;  // out of memory: this peer pays, not the daemon
  }
  state_->settle(fd);
  return true;
}

double PeerServer::next_deadline() const {
  double earliest = std::numeric_limits<double>::infinity();
  for (const auto& [fd, connection] : state_->connections) earliest = std::min(earliest, connection.deadline);
  return earliest;
}

void PeerServer::expire(double now) {
  std::vector<int> expired;
  for (const auto& [fd, connection] : state_->connections) {
    if (connection.deadline <= now && !connection.busy) expired.push_back(fd);
  }
  for (const int fd : expired) {
    Connection& connection = state_->connections.at(fd);
    if (connection.phase != Phase::lingering) ++state_->counters_for(connection.kind).timed_out;
    state_->close_at_deadline_or_eviction(connection);
  }
}

PeerCounters PeerServer::counters() const {
  PeerCounters counters = state_->totals;
  for (const auto& [fd, connection] : state_->connections) {
    switch (connection.kind) {
      case PeerKind::http: ++counters.http.open; break;
      case PeerKind::agent_check: ++counters.agent_check.open; break;
      case PeerKind::control: ++counters.control.open; break;
    }
    counters.pending_output_bytes += connection.output.size() - connection.output_sent;
  }
  return counters;
}

}  // namespace arpguard
