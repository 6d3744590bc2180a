// Logging to stderr with sd-daemon priority prefixes ("<3>" error ... "<7>" debug),
// which journald turns into priorities. One line per call; thread-compatible.
#pragma once

#include <fmt/format.h>

#include <cstdio>
#include <string_view>

namespace arpguard::log {

enum class Priority { kErr = 3, kWarning = 4, kNotice = 5, kInfo = 6, kDebug = 7 };

inline void line(Priority priority, std::string_view text) {
  fmt::print(stderr, "<{}>{}\n", static_cast<int>(priority), text);
  std::fflush(stderr);
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
