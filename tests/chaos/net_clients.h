// Peers of arpguardd for the chaos test: a thread entering a network
// namespace, and small blocking TCP / unix-socket clients with deadlines that
// can be polite, slow, rude or garbage-spewing.
//
// Thread-safety: enter_netns() changes only the calling thread; a Connection
// belongs to one thread.
#pragma once

#include <optional>
#include <string>

namespace arpguard::chaos {

/// Moves the calling thread (and processes it forks later) into network namespace `name`.
void enter_netns(const std::string& name);

/// Wall-clock seconds (comparable with tcpdump -tt).
double wall_now();

class Connection {
 public:
  Connection() = default;
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  /// Connects within `timeout` seconds; false (with error()) otherwise.
  bool connect_tcp(const std::string& ip, int port, double timeout);
  bool connect_unix(const std::string& path);
  /// Sends everything within `timeout`; false if the peer is gone or too slow.
  bool send_all(const std::string& bytes, double timeout = 2);
  /// Reads until the peer closes, `max_bytes` arrive or `timeout` passes.
  std::string read_all(double timeout, size_t max_bytes = 1 << 20);
  /// Reads one HTTP/1.1 response (status line, headers, Content-Length body); nullopt on close or timeout.
  std::optional<std::string> read_http_response(double timeout);
  /// Closes at once; with `reset`, an RST instead of a FIN.
  void close(bool reset = false);

  bool closed_by_peer() const { return peer_closed_; }
  const std::string& error() const { return error_; }

 private:
  int fd_ = -1;
  bool peer_closed_ = false;
  std::string error_;
  std::string pending_;  ///< bytes read past the last response
};

/// The status code of an HTTP response ("HTTP/1.1 503 ..."), 0 if not one.
int http_status(const std::string& response);

}  // namespace arpguard::chaos
