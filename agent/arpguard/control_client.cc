#include "agent/arpguard/control_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "kernel/policy_file.h"

namespace arpguard::cli {

namespace {

constexpr int kReplyTimeoutMs = 5000;
constexpr int kReloadTimeoutMs = 60000;
constexpr size_t kMaxReplyBytes = 512u << 20;

}  // namespace

Result<std::string> control_socket_path(const std::string& socket, const std::string& policy_file) {
  if (!socket.empty()) return socket;
  if (policy_file.empty()) return std::string(kDefaultControlSocket);
  PolicyResult policy = load_policy(policy_file);
  if (!policy.policy) {
    // Every located error, so that a reload refused here reads like one the
    // daemon refused: the running policy stays in force either way.
    std::string errors;
    for (const auto& error : policy.errors) errors += (errors.empty() ? "" : "\n") + error.str();
    return Error{errors + "\narpguard: cannot tell the control socket from a policy with errors (give --socket)"};
  }
  return policy.policy->agent.control_socket;
}

Result<nlohmann::json> ask_daemon(const std::string& socket_path, const std::string& command) {
  const std::string what = "cannot reach arpguardd at " + socket_path;
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error{what, errno};
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof(addr.sun_path) - 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int saved = errno;
    close(fd);
    return Error{what, saved};
  }
  const std::string line = command + "\n";
  if (send(fd, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
    const int saved = errno;
    close(fd);
    return Error{what, saved};
  }
  std::string reply;
  char buffer[4096];
  for (;;) {
    pollfd wait{fd, POLLIN, 0};
    // A reload applies the new policy before it answers: give it time.
    const int timeout_ms = command == "reload" ? kReloadTimeoutMs : kReplyTimeoutMs;
    if (poll(&wait, 1, timeout_ms) != 1) {
      close(fd);
      return Error{fmt::format("{}: no reply within {} s", what, timeout_ms / 1000)};
    }
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n <= 0) break;
    reply.append(buffer, static_cast<size_t>(n));
    if (reply.size() > kMaxReplyBytes) {
      close(fd);
      return Error{what + ": reply too large"};
    }
  }
  close(fd);
  try {
    return nlohmann::json::parse(reply);
  } catch (const nlohmann::json::exception& e) {
    return Error{what + ": unreadable reply (" + e.what() + ")"};
  }
}

}  // namespace arpguard::cli
