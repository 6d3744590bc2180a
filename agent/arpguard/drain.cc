#include <fmt/format.h>

#include "agent/arpguard/commands.h"
#include "agent/arpguard/control_client.h"

namespace arpguard::cli {

int set_draining(const std::string& socket, const std::string& policy_file, bool draining) {
  auto path = control_socket_path(socket, policy_file);
  if (!path) {
    fmt::print(stderr, "arpguard: {}\n", path.error().message());
    return 1;
  }
  auto reply = ask_daemon(*path, draining ? "drain" : "resume");
  if (!reply) {
    fmt::print(stderr, "arpguard: {}\n", reply.error().message());
    return 1;
  }
  if (!reply->value("ok", false)) {
    fmt::print(stderr, "arpguard: {}\n", reply->value("error", std::string("refused")));
    return 1;
  }
  fmt::print("{}\n", draining ? "draining: the director is told to send no new connections (until arpguard resume)"
                              : "resumed: the director may send new connections");
  return 0;
}

}  // namespace arpguard::cli
