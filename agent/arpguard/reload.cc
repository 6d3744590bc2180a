#include <fmt/format.h>

#include "agent/arpguard/commands.h"
#include "agent/arpguard/control_client.h"

namespace arpguard::cli {

int reload(const std::string& socket, const std::string& policy_file) {
  auto path = control_socket_path(socket, policy_file);
  if (!path) {
    fmt::print(stderr, "{}\narpguard: reload rejected; the running policy stays in force\n", path.error().message());
    return 1;
  }
  auto reply = ask_daemon(*path, "reload");
  if (!reply) {
    fmt::print(stderr, "arpguard: {}\n", reply.error().message());
    return 1;
  }
  auto strings = [&](const char* key) {
    std::vector<std::string> out;
    if (reply->contains(key) && (*reply)[key].is_array()) {
      for (const auto& item : (*reply)[key]) {
        if (item.is_string()) out.push_back(item.get<std::string>());
      }
    }
    return out;
  };
  if (!reply->value("accepted", false)) {
    for (const std::string& error : strings("errors")) fmt::print(stderr, "{}\n", error);
    if (reply->contains("error")) fmt::print(stderr, "arpguard: {}\n", reply->value("error", std::string()));
    fmt::print(stderr, "arpguard: reload rejected; the running policy stays in force\n");
    return 1;
  }
  if (!reply->value("converged", false)) {
    for (const std::string& problem : strings("problems")) fmt::print(stderr, "arpguard: {}\n", problem);
    fmt::print(stderr, "arpguard: the new policy is in force but not met yet (arpguard status says why)\n");
    return 1;
  }
  fmt::print("reloaded: the new policy is in force\n");
  return 0;
}

}  // namespace arpguard::cli
