#include "kernel/state_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <variant>

#include "core/policy.h"
#include "kernel/make_dirs.h"

namespace arpguard {

namespace {

// A record of 500,000 address VIPs (the most a policy of 16 MB names) is
// about 35 MB.
constexpr size_t kMaxStateBytes = 64u << 20;

Result<std::string> read_file(const std::string& path) {
  // Never blocks: a FIFO put in its place would hold the event loop forever.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return Error{"read " + path, errno};
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Error{"read " + path + ": not a regular file"};
  }
  std::string text;
  char buffer[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int saved = errno;
      ::close(fd);
      return Error{"read " + path, saved};
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
    if (text.size() > kMaxStateBytes) {
      ::close(fd);
      return Error{"read " + path + ": larger than any state arpguard writes"};
    }
  }
  ::close(fd);
  return text;
}

// arpguard writes three levels; a parser holds memory for every level of a
// deeper file (200 MB of '[' took 14 GB), which is not its record anyway.
constexpr size_t kMaxStateDepth = 8;

bool nested_deeper_than(const std::string& text, size_t limit) {
  size_t depth = 0;
  bool in_string = false, escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

// Reads the record as it streams by, into a ManagedState: no document is
// built (one of 68 MB took 1.3 GB). Only the shape arpguard writes is
// accepted; an entry no policy could have made (127.0.0.1/8, fe80::/64) is
// not arpguard's, whatever the file says, and is left out.
class RecordReader final : public nlohmann::json_sax<nlohmann::json> {
 public:
  ManagedState state;
  std::string error;

  bool null() override { return value(Scalar{}); }
  bool boolean(bool) override { return value(Scalar{}); }
  bool number_integer(number_integer_t n) override { return value(Scalar{n}); }
  bool number_unsigned(number_unsigned_t n) override {
    return value(n > static_cast<number_unsigned_t>(INT64_MAX) ? Scalar{} : Scalar{static_cast<int64_t>(n)});
  }
  bool number_float(number_float_t, const string_t&) override { return value(Scalar{}); }
  bool string(string_t& text) override { return value(Scalar{std::move(text)}); }
  bool binary(binary_t&) override { return fail("binary data"); }
  bool key(string_t& name) override {
    key_ = std::move(name);
    return true;
  }
  bool start_object(std::size_t) override {
    ++depth_;
    if (depth_ == 1) return true;
    if (depth_ == 3 && section_ != Section::kNone) {
      entry_ = {};
      return true;
    }
    return fail("an object where none belongs");
  }
  bool end_object() override {
    --depth_;
    return depth_ == 2 ? finish_entry() : true;
  }
  bool start_array(std::size_t) override {
    ++depth_;
    if (depth_ != 2) return fail("an array where none belongs");
    section_ = key_ == "vips" ? Section::kVips : key_ == "sysctl_origin" ? Section::kOrigins : Section::kNone;
    if (section_ == Section::kNone) return fail("an unknown list \"" + key_ + "\"");
    return true;
  }
  bool end_array() override {
    --depth_;
    section_ = Section::kNone;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    return fail(e.what());
  }

 private:
  enum class Section { kNone, kVips, kOrigins };
  using Scalar = std::variant<std::monostate, int64_t, std::string>;

  bool fail(std::string why) {
    if (error.empty()) error = std::move(why);
    return false;
  }
  bool value(Scalar v) {
    if (depth_ != 3) return depth_ == 1 ? true : fail("a value where none belongs");
    entry_[key_] = std::move(v);
    return true;
  }
  const std::string* text(const char* name) const {
    auto it = entry_.find(name);
    return it == entry_.end() ? nullptr : std::get_if<std::string>(&it->second);
  }
  bool finish_entry() {
    if (section_ == Section::kVips) {
      const std::string* address = text("address");
      const std::string* device = text("device");
      const std::string* kind = text("kind");
      auto prefix = address ? IpPrefix::parse(*address) : std::nullopt;
      if (!prefix) return fail("bad address in vips");
      if (!device || device->empty()) return fail("a VIP without its device");
      if (kind && *kind != "address" && *kind != "route") return fail("bad kind in vips");
      if (unusable_vip(*prefix)) return true;
      state.vips.insert({*prefix, kind && *kind == "route" ? VipKind::kRoute : VipKind::kAddress, *device});
      return true;
    }
    const std::string* name = text("name");
    const std::string* scope = text("scope");
    auto value = entry_.find("value");
    const int64_t* number = value == entry_.end() ? nullptr : std::get_if<int64_t>(&value->second);
    if (!name || !scope || !number || *number < INT32_MIN || *number > INT32_MAX) return fail("bad sysctl_origin");
    state.sysctl_origin[SysctlKey{*scope, *name}] = static_cast<int>(*number);
    return true;
  }

  int depth_ = 0;
  Section section_ = Section::kNone;
  std::string key_;
  std::map<std::string, Scalar> entry_;
};

}  // namespace

bool StateFile::Stamp::operator==(const Stamp& o) const {
  auto same = [](const timespec& a, const timespec& b) { return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec; };
  return device == o.device && inode == o.inode && size == o.size && same(modified, o.modified) &&
         same(changed, o.changed);
}

std::optional<StateFile::Stamp> StateFile::stamp_of(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  return Stamp{st.st_dev, st.st_ino, st.st_size, st.st_mtim, st.st_ctim};
}

Result<ManagedState> StateFile::load() {
  if (loaded_ && !unreadable_) {
    // From its first read on, the record in memory is arpguard's: a file that
    // lacks part of it (a write failed), or that someone else changed,
    // replaced or removed, is written again from it, not read over it.
    if (unsaved_) {
      (void)save_or_remember();
    } else if (stamp_of(path()) != stamp_) {
      notice_ = "state.json was changed or removed by another process (another arpguardd with the same state_dir?): "
                "written again from arpguardd's own record";
      (void)save_or_remember();
    }
    return state_;
  }
  // The first read, or one again after an unreadable file: what was recorded
  // since (in memory alone) is kept, whatever the file turns out to hold.
  const bool again = loaded_;
  ManagedState since = std::move(state_);
  state_ = ManagedState{};
  loaded_ = true;
  unreadable_ = false;
  stamp_ = stamp_of(path());  // before reading: a change meanwhile shows at the next load
  auto unreadable = [&](Error error) -> Result<ManagedState> {
    unreadable_ = true;
    state_ = std::move(since);
    return error;
  };
  auto text = read_file(path());
  if (!text && text.error().errno_value != ENOENT) return unreadable(text.error());
  if (text) {
    if (nested_deeper_than(*text, kMaxStateDepth)) {
      return unreadable(Error{"read " + path() + ": nested deeper than any state arpguard writes"});
    }
    RecordReader reader;
    if (!nlohmann::json::sax_parse(*text, &reader) || !reader.error.empty()) {
      // Nothing of it is taken: a part of a record is not one.
      return unreadable(Error{"read " + path() + ": " + (reader.error.empty() ? "not a record" : reader.error)});
    }
    state_ = std::move(reader.state);
  }
  if (again && (!since.vips.empty() || !since.sysctl_origin.empty())) {
    state_.vips.insert(since.vips.begin(), since.vips.end());
    for (const auto& [key, value] : since.sysctl_origin) state_.sysctl_origin.emplace(key, value);  // the file's are older
    (void)save_or_remember();
  }
  return state_;
}

Status StateFile::record(const StateChange& change) {
  if (!loaded_) {
    // Start from what the file says; an unreadable one is a lost record.
    (void)load();
  }
  // In place: a repair that changes no ownership costs O(log n), not a copy of 100,000 VIPs.
  bool changed = change.clear;
  if (change.clear) state_ = ManagedState{};
  for (const ManagedVip& vip : change.removed) changed |= state_.vips.erase(vip) > 0;
  for (const ManagedVip& vip : change.added) changed |= state_.vips.insert(vip).second;
  for (const auto& [key, value] : change.origins) changed |= state_.sysctl_origin.emplace(key, value).second;
  if (!changed && !unsaved_) return Status();
  return save_or_remember();
}

Status StateFile::save_or_remember() {
  Status status = save();
  if (status) {
    unsaved_.reset();
  } else {
    unsaved_ = status.error();
  }
  return status;
}

Status StateFile::save() {
  stamp_.reset();
  if (Status s = make_dirs(dir_); !s) return s;
  // Written line by line, the shape nlohmann's dump(1) gives, without a
  // document of 100,000 objects built first. Names are escaped by nlohmann.
  auto quoted = [](const std::string& text) {
    return nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  };
  std::string text = "{\n \"sysctl_origin\": [";
  const char* separator = "\n";
  for (const auto& [key, value] : state_.sysctl_origin) {
    fmt::format_to(std::back_inserter(text), "{}  {{\"name\": {}, \"scope\": {}, \"value\": {}}}", separator,
                   quoted(key.name), quoted(key.scope), value);
    separator = ",\n";
  }
  text += state_.sysctl_origin.empty() ? "],\n \"vips\": [" : "\n ],\n \"vips\": [";
  separator = "\n";
  text.reserve(text.size() + state_.vips.size() * 72);
  std::string device, device_quoted;  // a handful of devices among 100,000 VIPs: escaped once each run
  for (const ManagedVip& vip : state_.vips) {
    if (device_quoted.empty() || vip.device != device) {
      device = vip.device;
      device_quoted = quoted(device);
    }
    fmt::format_to(std::back_inserter(text), "{}  {{\"address\": \"{}\", \"device\": {}, \"kind\": \"{}\"}}", separator,
                   vip.prefix.str(), device_quoted, to_string(vip.kind));
    separator = ",\n";
  }
  text += state_.vips.empty() ? "]\n}\n" : "\n ]\n}\n";
  // A record that could not be read is not overwritten: it is kept beside
  // the new one, for whoever looks into what it owned.
  if (unreadable_) {
    if (std::rename(path().c_str(), (path() + ".unreadable").c_str()) != 0 && errno != ENOENT) {
      return Status::failure("rename " + path(), errno);
    }
    unreadable_ = false;
  }
  const std::string tmp = path() + ".tmp";
  if (::unlink(tmp.c_str()) != 0 && errno != ENOENT) return Status::failure("remove " + tmp, errno);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return Status::failure("write " + tmp, errno);
  for (size_t written = 0; written < text.size();) {
    const ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int saved = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return Status::failure("write " + tmp, saved);
    }
    written += static_cast<size_t>(n);
  }
  struct stat mine;
  const bool stated = ::fstat(fd, &mine) == 0;
  if (::close(fd) != 0) return Status::failure("write " + tmp, errno);
  if (std::rename(tmp.c_str(), path().c_str()) != 0) {
    const int saved = errno;
    ::unlink(tmp.c_str());
    return Status::failure("rename " + tmp, saved);
  }
  // Stamped only if the file in place is the one just written (the rename changed its ctime).
  stamp_ = stamp_of(path());
  if (!stated || !stamp_ || stamp_->inode != mine.st_ino || stamp_->device != mine.st_dev) stamp_.reset();
  return Status();
}

}  // namespace arpguard
