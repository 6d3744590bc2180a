#include "agent/arpguardd/notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string_view>

namespace arpguard {

Notifier::Notifier() {
  const char* socket_path = std::getenv("NOTIFY_SOCKET");
  if (socket_path && (socket_path[0] == '/' || socket_path[0] == '@') && std::strlen(socket_path) < sizeof(sockaddr_un::sun_path)) {
    address_ = socket_path;
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  }
  const char* usec = std::getenv("WATCHDOG_USEC");
  const char* pid = std::getenv("WATCHDOG_PID");
  if (usec && (!pid || std::strtol(pid, nullptr, 10) == getpid())) {
    const double seconds = std::strtod(usec, nullptr) / 1e6;
    if (seconds > 0) watchdog_ = seconds;
  }
}

Notifier::~Notifier() {
  if (fd_ >= 0) ::close(fd_);
}

void Notifier::send(const std::string& text) const {
  if (fd_ < 0) return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, address_.data(), address_.size());
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address_.size());
  (void)::sendto(fd_, text.data(), text.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&addr), len);
}

}  // namespace arpguard
