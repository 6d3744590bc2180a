// Lets doctest print the string vectors that plans and call logs are, so a
// failed CHECK shows both sides.
#pragma once

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace doctest {

template <>
struct StringMaker<std::vector<std::string>> {
  static String convert(const std::vector<std::string>& lines) {
    std::string out = "{";
    for (const std::string& line : lines) out += "\n    \"" + line + "\"";
    out += lines.empty() ? "}" : "\n  }";
    return String(out.c_str());
  }
};

}  // namespace doctest
