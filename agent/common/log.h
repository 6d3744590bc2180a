// Logging to stderr with sd-daemon priority prefixes ("<3>" error ... "<7>" debug),
// which journald turns into priorities. One line per call, whatever the text
// holds: interface names and kernel strings may carry any byte, so control
// characters and invalid UTF-8 are escaped (\xNN). Thread-compatible.
#pragma once

#include <fmt/format.h>

#include <cstdio>
#include <string>
#include <string_view>

#include "core/text.h"

namespace arpguard::log {

enum class Priority { kErr = 3, kWarning = 4, kNotice = 5, kInfo = 6, kDebug = 7 };

/// Never throws: a log that cannot be written (a full disk, a closed pipe)
/// must not stop the daemon. The line is lost; the next one is tried again.
inline void line(Priority priority, std::string_view text) {
  const std::string out = fmt::format("<{}>{}\n", static_cast<int>(priority), printable(std::string(text)));
  (void)!std::fwrite(out.data(), 1, out.size(), stderr);
  std::fflush(stderr);
  std::clearerr(stderr);
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
