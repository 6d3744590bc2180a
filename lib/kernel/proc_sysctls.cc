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

Status ProcSysctls::write(const SysctlKey& key, int value) {
  const std::string what = "write sysctl " + key.str() + " = " + std::to_string(value);
  const int fd = ::open(path(key).c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0) return Status::failure(what, errno);
  const std::string text = std::to_string(value) + "\n";
  const ssize_t n = ::write(fd, text.data(), text.size());
  const int saved = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) return Status::failure(what, n < 0 ? saved : EIO);
  return Status();
}

}  // namespace arpguard
