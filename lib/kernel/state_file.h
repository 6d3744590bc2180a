// StateApi as a JSON file (state_dir/state.json), replaced atomically.
// /run is the right home: VIPs and sysctls do not survive a reboot either.
// Keeps the whole record in memory and rewrites the file only when a change
// alters it, so repairs that do not change ownership cost no write.
#pragma once

#include <string>

#include "core/kernel_api.h"

namespace arpguard {

class StateFile final : public StateApi {
 public:
  explicit StateFile(std::string dir) : dir_(std::move(dir)) {}

  /// A missing file is an empty record.
  Result<ManagedState> load() override;
  /// Creates the directory if needed; writes a temporary file and renames it.
  Status record(const StateChange& change) override;

  std::string path() const { return dir_ + "/state.json"; }

 private:
  Status save() const;

  std::string dir_;
  ManagedState state_;
  bool loaded_ = false;
};

}  // namespace arpguard
