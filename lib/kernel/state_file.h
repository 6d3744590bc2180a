// StateApi as a JSON file (state_dir/state.json), replaced atomically.
// /run is the right home: VIPs and sysctls do not survive a reboot either.
// Keeps the whole record in memory and rewrites the file only when a change
// alters it, so repairs that do not change ownership cost no write.
#pragma once

#include <sys/stat.h>

#include <optional>
#include <string>
#include <utility>

#include "core/kernel_api.h"

namespace arpguard {

class StateFile final : public StateApi {
 public:
  explicit StateFile(std::string dir) : dir_(std::move(dir)) {}

  /// A missing file is an empty record. Read once: from then on the record
  /// in memory is the one arpguard lives by (at 100,000 VIPs a parse costs
  /// 0.3 s). A file found not as this object last read or wrote it (same
  /// inode, size, modification and change times), or after a failed write,
  /// is written again from memory, with a notice. An unreadable file is read
  /// again each time until a write puts a record in its place.
  Result<ManagedState> load() override;
  /// Creates the directory if needed; writes a temporary file and renames it.
  /// After a failed write, every call writes again, changed or not.
  Status record(const StateChange& change) override;
  std::optional<Error> unsaved() const override { return unsaved_; }
  std::optional<std::string> take_notice() override { return std::exchange(notice_, std::nullopt); }

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
  std::optional<Stamp> stamp_;    ///< the file as load() found it or save() left it; none: no file
  std::optional<std::string> notice_;  ///< said once by take_notice()
  bool unreadable_ = false;       ///< the file in place could not be read: kept aside at the next save
  std::optional<Error> unsaved_;  ///< the last write failed: the file lacks what state_ holds
};

}  // namespace arpguard
