// Reading the policy file: it must be a regular, readable file of bounded
// size, so a directory, a fifo or /dev/zero given by mistake is an error, not
// an empty policy or a hang. Stateless.
#pragma once

#include <string>

#include "core/policy.h"

namespace arpguard {

/// Reads FILE and parses it; anything unreadable is one diagnostic at FILE:0:0.
PolicyResult load_policy(const std::string& file);

}  // namespace arpguard
