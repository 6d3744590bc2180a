// StateApi as a JSON file (state_dir/state.json), replaced atomically.
// /run is the right home: VIPs and sysctls do not survive a reboot either.
// Keeps the whole record in memory and rewrites the file only when a change
// alters it, so repairs that do not change ownership cost no write.
#pragma once

#include <sys/stat.h>

#include <optional>
#include <string>

#include "core/kernel_api.h"

namespace arpguard {

class StateFile final : public StateApi {
 public:
  explicit StateFile(std::string dir) : dir_(std::move(dir)) {}

  /// A missing file is an empty record. The file this object last wrote,
  /// still in place untouched (same inode, size, modification and change
  /// times), is not parsed again: at 100,000 VIPs that costs 0.3 s. After a
  /// failed write the record in memory is the one arpguard lives by: the
  /// write is tried again, and the file is not read over it.
  Result<ManagedState> load() override;
  /// Creates the directory if needed; writes a temporary file and renames it.
  /// After a failed write, every call writes again, changed or not.
  Status record(const StateChange& change) override;
  std::optional<Error> unsaved() const override { return unsaved_; }

  std::string path() const { return dir_ + "/state.json"; }

 private:
  Status save();
  /// save(), remembering a failure in unsaved_.
  Status save_or_remember();

  /// What identifies a version of the file on disk.
  struct Stamp {
    dev_t device = 0;
    ino_t inode = 0;
    off_t size = 0;
    timespec modified{};
    timespec changed{};
    bool operator==(const Stamp& o) const;
  };
  static std::optional<Stamp> stamp_of(const std::string& path);

  std::string dir_;
  ManagedState state_;
  bool loaded_ = false;
  std::optional<Stamp> written_;  ///< the file as save() left it
  bool unreadable_ = false;       ///< the file in place could not be read: kept aside at the next save
  std::optional<Error> unsaved_;  ///< the last write failed: the file lacks what state_ holds
};

}  // namespace arpguard
