// libFuzzer target: the whole policy parser (bounds check, toml++, validation)
// on arbitrary bytes. A crash, a sanitizer report, an exception escaping lib/
// or a result that is neither a policy nor errors is a finding. Runs on a
// 1 MiB stack (small_stack.h) so deep recursion shows up early.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "core/policy.h"
#include "small_stack.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parse = [text] {
    const arpguard::PolicyResult result = arpguard::parse_policy(text, "fuzz.toml");
    // A policy is returned exactly when there is no error, and every error says something.
    if (result.policy.has_value() != result.errors.empty()) {
      std::fprintf(stderr, "policy %s with %zu errors\n", result.policy ? "returned" : "missing",
                   result.errors.size());
      std::abort();
    }
    for (const arpguard::Diagnostic& error : result.errors) {
      if (error.message.empty()) {
        std::fprintf(stderr, "an error without a message at %d:%d\n", error.where.line, error.where.column);
        std::abort();
      }
    }
  };
  arpguard::fuzz::run_on_small_stack(parse);
  return 0;
}
