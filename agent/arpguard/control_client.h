// Talks to arpguardd over its control socket: one command, one JSON reply.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "core/status.h"

namespace arpguard::cli {

inline constexpr const char* kDefaultControlSocket = "/run/arpguard/arpguard.sock";

/// The control socket to use: `socket` if given, else the policy's, else the default.
Result<std::string> control_socket_path(const std::string& socket, const std::string& policy_file);

/// Sends `command` ("status", "drain", "resume") and returns the daemon's reply.
Result<nlohmann::json> ask_daemon(const std::string& socket_path, const std::string& command);

}  // namespace arpguard::cli
