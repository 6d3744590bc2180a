#include "kernel/proc_sysctls.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <string>

namespace arpguard {

namespace {

constexpr const char* kNames[] = {kArpIgnore, kArpAnnounce, kArpFilter};

}  // namespace

Result<SysctlValues> ProcSysctls::read(const std::vector<std::string>& scopes) {
  SysctlValues values;
  for (const std::string& scope : scopes) {
    for (const char* name : kNames) {
      const SysctlKey key{scope, name};
      const int fd = ::open(path(key).c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        if (errno == ENOENT) continue;
        return Error{"read sysctl " + key.str(), errno};
      }
      char buffer[32];
      const ssize_t n = ::read(fd, buffer, sizeof(buffer));
      const int saved = errno;
      ::close(fd);
      if (n < 0) return Error{"read sysctl " + key.str(), saved};
      int value = 0;
      if (std::from_chars(buffer, buffer + n, value).ec != std::errc()) {
        return Error{"read sysctl " + key.str() + ": not a number"};
      }
      values[key] = value;
    }
  }
  return values;
}

namespace {

// One unsigned number from a /proc file; nullopt when the file does not exist.
Result<std::optional<uint64_t>> read_number(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<uint64_t>();
    return Error{"read " + path, errno};
  }
  char buffer[32];
  const ssize_t n = ::read(fd, buffer, sizeof(buffer));
  const int saved = errno;
  ::close(fd);
  if (n < 0) return Error{"read " + path, saved};
  uint64_t value = 0;
  if (std::from_chars(buffer, buffer + n, value).ec != std::errc()) return Error{"read " + path + ": not a number"};
  return std::optional<uint64_t>(value);
}

}  // namespace

Result<std::optional<ConntrackFill>> ProcConntrack::read() {
  auto count = read_number(root_ + "/net/netfilter/nf_conntrack_count");
  if (!count) return count.error();
  auto max = read_number(root_ + "/net/netfilter/nf_conntrack_max");
  if (!max) return max.error();
  if (!*count || !*max) return std::optional<ConntrackFill>();
  return std::optional<ConntrackFill>(ConntrackFill{**count, **max});
}

namespace {

std::string write_hint(int error) {
  switch (error) {
    case EROFS:
      return "/proc/sys is mounted read-only here: arpguardd needs to write net.ipv4.conf (in its unit, "
             "ProtectKernelTunables must stay off; in a container, give it a writable /proc/sys/net)";
    case EACCES:
    case EPERM: return "writing net.ipv4.conf needs CAP_NET_ADMIN: run arpguardd as root or grant it";
    default: return {};
  }
}

}  // namespace

Status ProcSysctls::write(const SysctlKey& key, int value) {
  const std::string what = "write sysctl " + key.str() + " = " + std::to_string(value);
  const int fd = ::open(path(key).c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0) return Status::failure(what, errno, write_hint(errno));
  const std::string text = std::to_string(value) + "\n";
  const ssize_t n = ::write(fd, text.data(), text.size());
  const int saved = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) return Status::failure(what, n < 0 ? saved : EIO, write_hint(saved));
  return Status();
}

}  // namespace arpguard
