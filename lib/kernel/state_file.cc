#include "kernel/state_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <iterator>
#include <nlohmann/json.hpp>

#include "kernel/make_dirs.h"

namespace arpguard {

namespace {

constexpr size_t kMaxStateBytes = 256u << 20;

Result<std::string> read_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return Error{"read " + path, errno};
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
  if (loaded_ && unsaved_) {
    // The file lacks what was done since it failed: memory is the record.
    (void)save_or_remember();
    return state_;
  }
  if (loaded_ && written_ && stamp_of(path()) == written_) return state_;
  written_.reset();
  state_ = ManagedState{};
  loaded_ = true;
  unreadable_ = false;
  auto text = read_file(path());
  if (!text) {
    if (text.error().errno_value == ENOENT) return state_;
    unreadable_ = true;
    return text.error();
  }
  if (nested_deeper_than(*text, kMaxStateDepth)) {
    unreadable_ = true;
    return Error{"read " + path() + ": nested deeper than any state arpguard writes"};
  }
  try {
    const nlohmann::json doc = nlohmann::json::parse(*text);
    for (const auto& vip : doc.value("vips", nlohmann::json::array())) {
      auto prefix = IpPrefix::parse(vip.at("address").get<std::string>());
      if (!prefix) return Error{"read " + path() + ": bad address in vips"};
      const VipKind kind = vip.value("kind", "address") == "route" ? VipKind::kRoute : VipKind::kAddress;
      state_.vips.insert({*prefix, kind, vip.at("device").get<std::string>()});
    }
    for (const auto& entry : doc.value("sysctl_origin", nlohmann::json::array())) {
      state_.sysctl_origin[SysctlKey{entry.at("scope").get<std::string>(), entry.at("name").get<std::string>()}] =
          entry.at("value").get<int>();
    }
  } catch (const nlohmann::json::exception& e) {
    state_ = ManagedState{};
    unreadable_ = true;
    return Error{"read " + path() + ": " + e.what()};
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
  written_.reset();
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
  ::unlink(tmp.c_str());
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
  if (std::rename(tmp.c_str(), path().c_str()) != 0) return Status::failure("rename " + tmp, errno);
  // Stamped only if the file in place is the one just written (the rename changed its ctime).
  written_ = stamp_of(path());
  if (!stated || !written_ || written_->inode != mine.st_ino || written_->device != mine.st_dev) written_.reset();
  return Status();
}

}  // namespace arpguard
