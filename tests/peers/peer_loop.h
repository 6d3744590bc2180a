// A tiny stand-in for the daemon's loop, and non-blocking test clients, so the
// peer server's tests run a real epoll loop over real sockets in one thread.
//
// The process keeps SIGPIPE at its default action (set before main): a send
// without MSG_NOSIGNAL to a peer that hung up kills the whole test binary.
//
// Thread-safety: none; tests are single-threaded.
#pragma once

#include <sys/socket.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "agent/arpguardd/peers.h"

namespace arpguard::testing {

/// Monotonic seconds, the time base handed to PeerServer.
double monotonic_now();

/// An address to listen on: `host` ("127.0.0.1", "::1") and a port free right now.
struct ListenAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};
ListenAddress free_tcp_address(const std::string& host);

/// An epoll set, a PeerServer registered in it, and the loop that drives them.
class PeerLoop {
 public:
  explicit PeerLoop(PeerHandlers handlers, PeerLimits limits = {});
  ~PeerLoop();
  PeerServer& server() { return *server_; }
  /// One epoll_wait of at most `max_wait` seconds (shortened to the module's deadline), then expire().
  void run_once(double max_wait);
  /// Runs the loop until `done()` holds or `seconds` pass; true when done.
  bool run_until(const std::function<bool()>& done, double seconds);
  /// Runs the loop for `seconds`.
  void run_for(double seconds);
  /// Events handed to handle() that it said were not its own.
  int foreign_events() const { return foreign_events_; }
  /// Events handed to handle() so far: a busy loop shows here.
  int events_handled() const { return events_handled_; }

 private:
  int epoll_fd_ = -1;
  std::unique_ptr<PeerServer> server_;
  int foreign_events_ = 0;
  int events_handled_ = 0;
};

/// A non-blocking client socket; everything it receives accumulates in `received`.
class TestClient {
 public:
  /// Starts a non-blocking connect to a TCP address.
  static TestClient tcp(const ListenAddress& address);
  /// Connects to a unix stream socket.
  static TestClient unix_stream(const std::string& path);
  TestClient(TestClient&& other) noexcept;
  TestClient& operator=(TestClient&&) = delete;
  ~TestClient();

  /// Sends all of `bytes` (small payloads: they must fit the socket buffer).
  void send(std::string_view bytes);
  /// Reads whatever is available; notes EOF or a reset.
  void read_available();
  /// Closes now; with `reset`, an RST (SO_LINGER 0) instead of a FIN.
  void hang_up(bool reset = false);
  bool connected() const;

  int fd = -1;
  std::string received;
  bool server_closed = false;  ///< EOF or ECONNRESET seen

 private:
  explicit TestClient(int fd_) : fd(fd_) {}
};

/// One HTTP response taken off the front of `client.received`.
struct ClientResponse {
  int status = 0;
  std::string head;  ///< status line and headers
  std::string body;
  bool has_header(std::string_view line) const {
    return head.find(std::string("\r\n") + std::string(line) + "\r\n") != std::string::npos;
  }
};

/// Runs the loop until a whole response is in `client.received` (no body after HEAD).
/// Returns false on timeout.
bool await_response(PeerLoop& loop, TestClient& client, ClientResponse& response, bool head = false,
                    double seconds = 2.0);
/// Runs the loop until the server closes `client`; false on timeout.
bool await_server_close(PeerLoop& loop, TestClient& client, double seconds = 2.0);

}  // namespace arpguard::testing
