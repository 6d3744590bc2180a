// libFuzzer target: check_policy_bounds() alone, cross-checked against toml++.
//
// The scanner runs under three sets of limits. Its violations must be located
// inside the text. Whenever it accepts, toml++ parses the same bytes on a 1 MiB
// stack (small_stack.h): toml++ recursing too deep there crashes the fuzzer,
// which is the bug the scanner exists to prevent. When toml++ also accepts,
// the parsed tree must be no deeper than the limits allow: a header adds at most
// 2 levels per part ([[a.b]]: array, table, array, table), a key at most 1 per
// part, and each array or inline table at most max_key_depth more, so
//   depth <= max_key_depth * (max_nesting + 3).
// A scanner that miscounts a key or a nesting (a string or comment it misread)
// lets a deeper tree through and fails this check even when the stack survives.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <utility>
#include <vector>

#include <toml++/toml.h>

#include "core/policy_bounds.h"
#include "small_stack.h"

namespace {

using arpguard::BoundsViolation;
using arpguard::PolicyLimits;

constexpr PolicyLimits kLimits[] = {
    {},                                                   // as arpguard uses it
    {.max_key_depth = 2, .max_nesting = 2, .max_line = 200},
    {.max_key_depth = 1, .max_nesting = 0, .max_line = 40},
};

[[noreturn]] void fail(const char* what, size_t which, long long detail) {
  std::fprintf(stderr, "policy_bounds_fuzz: limits #%zu: %s (%lld)\n", which, what, detail);
  std::abort();
}

void check_located(std::string_view text, const BoundsViolation& violation, const PolicyLimits& limits,
                   size_t which) {
  if (violation.message.empty()) fail("a violation without a message", which, 0);
  if (violation.line == 0) {
    if (violation.column != 0) fail("a whole-text violation with a column", which, violation.column);
    if (text.size() <= limits.max_bytes) fail("a size violation within the size limit", which, 0);
    return;
  }
  long long lines = 1;
  for (char c : text) lines += c == '\n';
  if (violation.line < 1 || violation.line > lines) fail("a line outside the text", which, violation.line);
  if (violation.column < 1 || static_cast<size_t>(violation.column) > text.size() + 1) {
    fail("a column outside the text", which, violation.column);
  }
}

// Deepest node below the root (the root's children are at depth 1), walked
// without recursion so that the check itself never overflows.
size_t tree_depth(const toml::table& root) {
  size_t deepest = 0;
  std::vector<std::pair<const toml::node*, size_t>> pending{{&root, 0}};
  while (!pending.empty()) {
    const auto [node, depth] = pending.back();
    pending.pop_back();
    deepest = std::max(deepest, depth);
    if (const toml::table* table = node->as_table()) {
      for (auto&& [key, child] : *table) pending.emplace_back(&child, depth + 1);
    } else if (const toml::array* array = node->as_array()) {
      for (const toml::node& element : *array) pending.emplace_back(&element, depth + 1);
    }
  }
  return deepest;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  bool accepted[std::size(kLimits)] = {};
  bool any_accepted = false;
  for (size_t i = 0; i < std::size(kLimits); ++i) {
    const std::optional<BoundsViolation> violation = arpguard::check_policy_bounds(text, kLimits[i]);
    if (violation) {
      check_located(text, *violation, kLimits[i], i);
    } else {
      accepted[i] = any_accepted = true;
    }
  }
  if (!any_accepted) return 0;

  auto parse = [&] {
    toml::table root;
    try {
      root = toml::parse(text, std::string_view("fuzz.toml"));
    } catch (const toml::parse_error&) {
      return;  // what toml++ built before the error is freed here, on the small stack
    }
    const size_t depth = tree_depth(root);
    for (size_t i = 0; i < std::size(kLimits); ++i) {
      const auto key_depth = static_cast<size_t>(kLimits[i].max_key_depth);
      const auto nesting = static_cast<size_t>(kLimits[i].max_nesting);
      if (accepted[i] && depth > key_depth * (nesting + 3)) fail("toml++ built a tree deeper than allowed", i, depth);
    }
  };
  arpguard::fuzz::run_on_small_stack(parse);
  return 0;
}
