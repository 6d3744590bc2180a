#include <fmt/format.h>

#include "agent/arpguard/commands.h"
#include "agent/arpguard/control_client.h"
#include "core/status_snapshot.h"

namespace arpguard::cli {

int status(const std::string& socket, const std::string& policy_file, bool json, bool all_vips) {
  constexpr int kUnknown = 3;
  auto path = control_socket_path(socket, policy_file);
  if (!path) {
    fmt::print("ARPGUARD UNKNOWN - {}\n", printable(path.error().message()));
    return kUnknown;
  }
  auto reply = ask_daemon(*path, all_vips ? "status vips" : "status");
  if (!reply) {
    fmt::print("ARPGUARD UNKNOWN - {}\n", printable(reply.error().message()));
    return kUnknown;
  }
  if (!reply->is_object() || !reply->contains("ready")) {
    fmt::print("ARPGUARD UNKNOWN - arpguardd sent a status this arpguard cannot read\n");
    return kUnknown;
  }
  const StatusSnapshot status = status_from_json(*reply);
  if (json) {
    fmt::print("{}\n", dump_json(*reply, 2));
  } else {
    fmt::print("{}", render_status_text(status));
  }
  return status_exit_code(status);
}

}  // namespace arpguard::cli
