// File descriptors 0, 1 and 2, held open from the start by both programs.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace arpguard {

/// A program started with stdin, stdout or stderr closed would get its first
/// socket there, and write its output or its log into it (`arpguard apply >&-`
/// sent its plan into its own rtnetlink socket and exited 0). A closed one
/// gets /dev/null opened read-only (or, without /dev, the root directory):
/// reads end at once and writes fail with EBADF, so output that cannot go
/// anywhere is noticed rather than lost in silence.
inline void hold_standard_fds() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    int held = ::open("/dev/null", O_RDONLY | O_NOCTTY);
    if (held < 0) held = ::open("/", O_RDONLY | O_DIRECTORY);
    if (held >= 0 && held != fd) {
      ::dup2(held, fd);
      ::close(held);
    }
  }
}

}  // namespace arpguard
