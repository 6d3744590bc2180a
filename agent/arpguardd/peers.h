// Every peer of arpguardd, served from the owner's one epoll loop:
//   - HTTP listeners (TCP, v4 or v6): GET/HEAD, keep-alive, pipelining (http_request.h);
//   - HAProxy agent-check listeners (TCP): one line on accept, then close;
//   - control sockets (unix stream): one command line in, one reply out, close.
//
// Invariant I7: nothing here blocks and a peer costs only itself. Sockets are
// non-blocking; writes use MSG_NOSIGNAL and keep the unsent rest for EPOLLOUT;
// input is bounded; each connection has a deadline that a trickling peer cannot
// push back (HTTP: idle between requests, request complete within N s of its
// first byte, response written within N s; control and agent-check: N s in
// all); at a listener's connection limit the connection stuck longest in its
// current phase is evicted so a new one is always accepted. Nothing is logged
// per connection: counters() says what happened. A handler that throws gets a
// 500 / "fail" line / JSON error, and only that connection closes.
//
// A handler may take long and serve the other peers meanwhile (the owner
// calls handle() and expire() again from inside it): its own connection is
// then left alone, no events read, no deadline, no eviction, until it returns.
// The reply's deadline starts when it returns.
//
// Epoll contract: PeerServer adds its fds to the owner's epoll set with
// `data.fd` = the fd, level-triggered; the owner hands handle() every event
// for an fd that is not its own, computes its epoll timeout from next_deadline()
// and calls expire() after each wake-up. A stale event for an fd closed during
// the same batch is harmless. A connection is watched for EPOLLIN|EPOLLRDHUP,
// for EPOLLOUT instead of EPOLLIN while a reply is pending (no next request is
// read until the last reply is out), and no longer for either once the peer
// has shut its side (so a half-closed peer cannot keep the loop busy).
//
// A control socket's path is bound only if nothing is there or a stale socket
// (connect refused) is; a live socket, regular file, directory, symlink or fifo
// is refused and left untouched. The socket is bound under umask 0177 (the
// process umask, restored at once) then given mode 0660, and is unlinked on
// destruction only if it is still the one bound (same st_dev and st_ino).
//
// Thread-safety: none; every call from the loop's thread.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "agent/arpguardd/http_request.h"
#include "core/status.h"

namespace arpguard {

struct PeerHandlers {
  std::function<HttpResponse(const HttpRequest&)> http;
  std::function<std::string()> agent_check;              ///< one line; a missing '\n' is added
  std::function<std::string(std::string_view)> control;  ///< command line without '\n' -> whole reply
  /// The owner's clock, read after a handler returns: a handler may take
  /// seconds (a reload applying 100,000 VIPs). None: the time it was called.
  std::function<double()> clock;
};

/// Deadlines (seconds) and connection limits; the defaults are the daemon's.
struct PeerLimits {
  double http_idle_seconds = 5;     ///< no byte of a next request yet
  double http_request_seconds = 5;  ///< from a request's first byte to its last
  double http_write_seconds = 5;    ///< from a response's first byte to its last
  double one_shot_seconds = 2;      ///< a whole control or agent-check connection
  double linger_seconds = 1;        ///< after the last byte, waiting for the peer's close
  std::size_t http_connections = 256;
  std::size_t agent_check_connections = 64;
  std::size_t control_connections = 32;
};

struct PeerKindCounters {
  std::size_t open = 0;  ///< connections open now
  std::uint64_t accepted = 0;
  std::uint64_t evicted = 0;           ///< closed to make room for a new connection
  std::uint64_t timed_out = 0;         ///< closed at their deadline
  std::uint64_t rejected = 0;          ///< requests answered with an error of ours (4xx, invalid command)
  std::uint64_t handler_failures = 0;  ///< handler threw
};

struct PeerCounters {
  PeerKindCounters http;
  PeerKindCounters agent_check;
  PeerKindCounters control;
  std::size_t pending_output_bytes = 0;  ///< replies written but not yet taken by their peers
};

class PeerServer {
 public:
  /// REQUIRES: `epoll_fd` outlives this object.
  PeerServer(int epoll_fd, PeerHandlers handlers, PeerLimits limits = {});
  /// Closes every socket; unlinks each control socket still the one it bound.
  ~PeerServer();
  PeerServer(const PeerServer&) = delete;
  PeerServer& operator=(const PeerServer&) = delete;

  /// Listens for HTTP on `address` (IP_FREEBIND: the address may not exist yet).
  /// `label` names the listener in errors: "http 10.0.0.5:8080".
  Status listen_http(const sockaddr* address, socklen_t length, const std::string& label);
  /// Listens for HAProxy agent-checks on `address`, like listen_http.
  Status listen_agent_check(const sockaddr* address, socklen_t length, const std::string& label);
  /// Binds the control socket at `path` under the rules above.
  /// REQUIRES: the parent directory exists (the owner makes it).
  Status listen_control(const std::string& path);

  /// Handles `events` (as epoll reported them) when `fd` is ours; false otherwise.
  /// `now` is monotonic seconds, the time base of every deadline.
  bool handle(int fd, std::uint32_t events, double now);
  /// Monotonic seconds of the earliest deadline, or +infinity when there is none.
  double next_deadline() const;
  /// Closes every connection whose deadline is at or before `now`.
  void expire(double now);
  /// Open connections, evictions, timeouts and rejections, per kind.
  PeerCounters counters() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace arpguard
