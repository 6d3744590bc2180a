#include <fmt/format.h>

#include <ctime>

#include "agent/arpguard/commands.h"
#include "agent/arpguard/control_client.h"
#include "core/status_report.h"

namespace arpguard::cli {

int status(const std::string& socket, const std::string& policy_file, bool json) {
  constexpr int kUnknown = 3;
  auto path = control_socket_path(socket, policy_file);
  if (!path) {
    fmt::print("ARPGUARD UNKNOWN - {}\n", path.error().message());
    return kUnknown;
  }
  auto reply = ask_daemon(*path, "status");
  if (!reply) {
    fmt::print("ARPGUARD UNKNOWN - {}\n", reply.error().message());
    return kUnknown;
  }
  const double now = static_cast<double>(std::time(nullptr));
  try {
    const int code = status_exit_code(*reply, now);
    if (json) {
      fmt::print("{}\n", reply->dump(2));
    } else {
      fmt::print("{}", render_status_text(*reply, now));
    }
    return code;
  } catch (const nlohmann::json::exception& e) {
    fmt::print("ARPGUARD UNKNOWN - arpguardd sent a status this arpguard cannot read: {}\n", e.what());
    return kUnknown;
  }
}

}  // namespace arpguard::cli
