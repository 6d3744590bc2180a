// StateApi as a JSON file (state_dir/state.json), replaced atomically.
// /run is the right home: VIPs and sysctls do not survive a reboot either.
#pragma once

#include <string>

#include "core/kernel_api.h"

namespace arpguard {

class StateFile final : public StateApi {
 public:
  explicit StateFile(std::string dir) : dir_(std::move(dir)) {}

  /// A missing file is an empty state.
  Result<ManagedState> load() override;
  /// Creates the directory if needed; writes a temporary file and renames it.
  Status save(const ManagedState& state) override;

  std::string path() const { return dir_ + "/state.json"; }

 private:
  std::string dir_;
};

}  // namespace arpguard
