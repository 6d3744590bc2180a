// Logging to stderr with sd-daemon priority prefixes ("<3>" error ... "<7>" debug),
// which journald turns into priorities. One line per call, whatever the text
// holds: interface names and kernel strings may carry any byte, so control
// characters and invalid UTF-8 are escaped (\xNN). A line that cannot be
// written at once is dropped, and counted. Thread-compatible.
#pragma once

#include <fmt/format.h>

#include <limits.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>
#include <string_view>

#include "core/text.h"

namespace arpguard::log {

enum class Priority { kErr = 3, kWarning = 4, kNotice = 5, kInfo = 6, kDebug = 7 };

namespace detail {

/// Writes `text` to stderr only if it can take it now. A reader that stalls
/// (a journald that hangs, a pipe nobody reads, a terminal paused with ^S)
/// must not stop the daemon: the line is dropped and counted, and the next
/// line that can be written first says how many were lost.
inline void write_or_drop(std::string text) {
  static unsigned long dropped = 0;
  // One write of at most PIPE_BUF bytes: a pipe that polls writable has room for it.
  constexpr size_t kMaxLine = PIPE_BUF;
  auto writable = [] {
    pollfd p{STDERR_FILENO, POLLOUT, 0};
    return ::poll(&p, 1, 0) == 1 && (p.revents & POLLOUT) && !(p.revents & (POLLERR | POLLNVAL));
  };
  auto put = [&](std::string line) {
    if (line.size() > kMaxLine) {
      size_t cut = kMaxLine - 4;
      while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;  // not inside a character
      line.resize(cut);
      line += "...\n";
    }
    if (!writable()) return false;
    ssize_t n;
    do n = ::write(STDERR_FILENO, line.data(), line.size());
    while (n < 0 && errno == EINTR);
    return n == static_cast<ssize_t>(line.size());
  };
  if (dropped > 0) {
    if (!put(fmt::format("<{}>{} log line(s) lost: stderr took no more\n", static_cast<int>(Priority::kWarning),
                         dropped))) {
      ++dropped;
      return;
    }
    dropped = 0;
  }
  if (!put(std::move(text))) ++dropped;
}

}  // namespace detail

/// Never throws nor blocks: a log that cannot be written (a full disk, a
/// closed or stalled pipe) must not stop the daemon. Written straight to fd 2,
/// one write a line.
inline void line(Priority priority, std::string_view text) {
  detail::write_or_drop(fmt::format("<{}>{}\n", static_cast<int>(priority), printable(std::string(text))));
}

template <class... Args>
void error(fmt::format_string<Args...> f, Args&&... args) { line(Priority::kErr, fmt::format(f, std::forward<Args>(args)...)); }
template <class... Args>
void warning(fmt::format_string<Args...> f, Args&&... args) { line(Priority::kWarning, fmt::format(f, std::forward<Args>(args)...)); }
template <class... Args>
void notice(fmt::format_string<Args...> f, Args&&... args) { line(Priority::kNotice, fmt::format(f, std::forward<Args>(args)...)); }
template <class... Args>
void info(fmt::format_string<Args...> f, Args&&... args) { line(Priority::kInfo, fmt::format(f, std::forward<Args>(args)...)); }

}  // namespace arpguard::log
