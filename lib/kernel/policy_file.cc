#include "kernel/policy_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/policy_bounds.h"

namespace arpguard {

PolicyResult load_policy(const std::string& file) {
  PolicyResult result;
  auto fail = [&](std::string message) {
    result.errors.push_back({file, {0, 0}, std::move(message)});
    return result;
  };
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return fail(fmt::format("cannot read policy: {}", std::strerror(errno)));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int saved = errno;
    ::close(fd);
    return fail(fmt::format("cannot read policy: {}", std::strerror(saved)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return fail(fmt::format("cannot read policy: not a regular file ({})",
                            S_ISDIR(st.st_mode) ? "a directory" : "a device, fifo or socket"));
  }
  const PolicyLimits limits;
  if (static_cast<uint64_t>(st.st_size) > limits.max_bytes) {
    ::close(fd);
    return fail(fmt::format("policy is {} bytes (at most {})", st.st_size, limits.max_bytes));
  }
  std::string text;
  text.resize(static_cast<size_t>(st.st_size) + 1);
  size_t got = 0;
  for (;;) {
    if (got == text.size()) text.resize(std::min(text.size() * 2, limits.max_bytes + 1));
    const ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int saved = errno;
      ::close(fd);
      return fail(fmt::format("cannot read policy: {}", std::strerror(saved)));
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
    if (got > limits.max_bytes) {
      ::close(fd);
      return fail(fmt::format("policy is more than {} bytes", limits.max_bytes));
    }
  }
  ::close(fd);
  text.resize(got);
  return parse_policy(text, file);
}

}  // namespace arpguard
