// Text from outside (interface names, kernel strings, peers' bytes) made safe
// to show: valid UTF-8 with no control characters. Pure.
#pragma once

#include <string>

namespace arpguard {

/// `text` with every invalid UTF-8 sequence and control character replaced,
/// so it can go into JSON, a label or a log line.
std::string printable(const std::string& text);

}  // namespace arpguard
