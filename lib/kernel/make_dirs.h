// mkdir -p, for arpguard's run-time directories (state, control socket).
#pragma once

#include <string>

#include "core/status.h"

namespace arpguard {

/// Creates `dir` and every missing parent with mode 0755; existing ones are fine.
Status make_dirs(const std::string& dir);

}  // namespace arpguard
