#include "agent/arpguard/control_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/policy.h"

namespace arpguard::cli {

namespace {

constexpr int kReplyTimeoutMs = 5000;

}  // namespace

Result<std::string> control_socket_path(const std::string& socket, const std::string& policy_file) {
  if (!socket.empty()) return socket;
  if (policy_file.empty()) return std::string(kDefaultControlSocket);
  PolicyResult policy = load_policy(policy_file);
  if (!policy.policy) return Error{policy.errors.front().str()};
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
  if (write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    const int saved = errno;
    close(fd);
    return Error{what, saved};
  }
  std::string reply;
  char buffer[4096];
  for (;;) {
    pollfd wait{fd, POLLIN, 0};
    if (poll(&wait, 1, kReplyTimeoutMs) != 1) {
      close(fd);
      return Error{what + ": no reply within 5 s"};
    }
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n <= 0) break;
    reply.append(buffer, n);
  }
  close(fd);
  try {
    return nlohmann::json::parse(reply);
  } catch (const nlohmann::json::exception& e) {
    return Error{what + ": unreadable reply (" + e.what() + ")"};
  }
}

}  // namespace arpguard::cli
