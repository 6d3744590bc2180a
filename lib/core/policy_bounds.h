// Bounds on policy text, checked before the TOML parser sees it.
//
// toml++ builds one nested table per dotted key part and per table header part,
// and recurses once per nested array or inline table; it frees what it built
// recursively too. A key of a million parts, or a file of many megabytes,
// therefore exhausts the stack, memory or time of `arpguard check-config` and
// of arpguardd on reload. check_policy_bounds() is a small TOML-aware scanner
// (comments, all four string kinds, key and value contexts) that rejects such
// text first, located as FILE:LINE:COL like toml++'s own errors. It also keeps
// from toml++ 3.3 the characters it mishandles: non-ASCII where it asks whether
// a character is whitespace (upstream issues 190 and 295).
//
// It does not validate TOML: anything it accepts may still be rejected by
// toml++. It never recurses, runs in time and memory linear in the text, and
// reads only inside the text, whatever its bytes (truncated strings, NUL,
// invalid UTF-8). Pure and reentrant: safe from any thread.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace arpguard {

/// What a policy may be. The defaults leave room for 100,000 VIPs (a [[vip]]
/// table each is about 5 MiB, parsed in 0.15 s) while keeping toml++'s worst
/// case to seconds of CPU and a few KiB of stack.
struct PolicyLimits {
  /// Whole text. toml++ needs up to ~15 bytes of memory per byte of a policy
  /// of many [[vip]] tables (up to ~40 for other shapes).
  size_t max_bytes = 16 << 20;
  /// Parts of one key or table header: `a.b.c` has 3. The policy's deepest key
  /// is `arp.real_ip.eth0`.
  int max_key_depth = 8;
  /// Arrays and inline tables inside one another: `x = [[1]]` is 2 deep. The policy
  /// needs 1; toml++ itself stops at 256, deep enough to overflow small stacks.
  int max_nesting = 16;
  /// Bytes on one line, not counting its line ending.
  size_t max_line = 64 * 1024;
  /// Keys and table headers of more than one part (`a.b = 1`, `[a.b]`): toml++
  /// takes time quadratic in how many tables dotted keys open and reopen.
  size_t max_dotted_keys = 4096;
};

struct BoundsViolation {
  int line = 0;    ///< 1-based; 0 when about the text as a whole (its size)
  int column = 0;  ///< 1-based, in code points as toml++ counts (ASCII: bytes); 0 with line 0
  /// "key has 9000 dotted parts (at most 8)"
  std::string message;
};

/// Checks `text` against limits that keep the TOML parser's recursion and memory bounded:
/// size, key depth (dotted components in any key or table header), nesting of arrays and
/// inline tables, line length. Also rejects a non-ASCII character outside strings and comments
/// (and where toml++ reads ahead of a number) or right after a backslash in a multi-line string,
/// where toml++ 3.3 has undefined behaviour and a policy needs none. Returns the first violation,
/// located.
std::optional<BoundsViolation> check_policy_bounds(std::string_view text, const PolicyLimits& limits = {});

}  // namespace arpguard
