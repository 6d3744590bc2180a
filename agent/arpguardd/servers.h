// The ways arpguardd is asked about readiness, all served from its one thread:
//   - the control socket (unix, mode 0660): "status", "drain", "resume";
//   - HTTP (libmicrohttpd, GET and HEAD only): /ready, /ready/<vip>, /status, /metrics;
//   - the HAProxy agent-check protocol: one line per connection, then close.
// Each listening socket is created with IP_FREEBIND, so arpguardd can start
// before the address it listens on exists (it starts before the network).
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/policy.h"
#include "core/status.h"
#include "core/status_report.h"

struct MHD_Daemon;

namespace arpguard {

struct ServerHooks {
  std::function<nlohmann::json()> status;  ///< a fresh status snapshot
  std::function<void(bool)> set_draining;  ///< true: drain, false: resume
};

class Servers {
 public:
  explicit Servers(ServerHooks hooks) : hooks_(std::move(hooks)) {}
  ~Servers();
  Servers(const Servers&) = delete;
  Servers& operator=(const Servers&) = delete;

  /// Opens every listener the policy names. A failure is returned, nothing half-open.
  Status open(const Policy& policy);
  /// File descriptors to watch for reading.
  std::vector<int> fds() const;
  /// Handles a readable descriptor; false when it is not one of ours.
  bool on_readable(int fd);
 private:
  void run_http();
  void serve_control(int listener);
  void serve_agent_check(int listener);

  ServerHooks hooks_;
  std::string control_path_;
  int control_fd_ = -1;
  std::vector<int> agent_check_fds_;
  std::vector<MHD_Daemon*> http_;
  std::vector<int> http_epoll_fds_;
  int http_timer_fd_ = -1;  ///< when libmicrohttpd wants to run again
};

}  // namespace arpguard
