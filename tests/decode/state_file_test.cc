// The state record (state_dir/state.json): written, read back by a fresh
// reader, and left alone when nothing changes. No root needed.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "kernel/state_file.h"

using namespace arpguard;

namespace {

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/arpguard-state-test.XXXXXX";
    if (const char* made = ::mkdtemp(pattern)) path_ = made;
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

IpPrefix prefix(const char* text) { return *IpPrefix::parse(text); }

std::string contents(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

ino_t inode(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

}  // namespace

TEST_CASE("state file: what is recorded is read back, odd device names too, and an unchanged record is not rewritten") {
  TempDir dir;
  REQUIRE_FALSE(dir.path().empty());
  StateFile file(dir.path() + "/state");
  StateChange first;
  first.added = {ManagedVip{prefix("10.0.0.5/32"), VipKind::kAddress, "lo"},
                 ManagedVip{prefix("10.100.0.0/24"), VipKind::kRoute, "lo"},
                 ManagedVip{prefix("2001:db8::10/128"), VipKind::kAddress, "we\"ird\\dev"}};
  first.origins = {{SysctlKey{"all", "arp_ignore"}, 0}, {SysctlKey{"eth0", "arp_announce"}, 2}};
  REQUIRE(file.record(first));

  const std::string text = contents(file.path());
  const nlohmann::json doc = nlohmann::json::parse(text, nullptr, false);
  REQUIRE_FALSE(doc.is_discarded());
  CHECK(doc.at("vips").size() == 3);
  CHECK(doc.at("sysctl_origin").size() == 2);

  StateFile reader(dir.path() + "/state");
  auto loaded = reader.load();
  REQUIRE(loaded);
  CHECK(loaded->vips == std::set<ManagedVip>(first.added.begin(), first.added.end()));
  CHECK(loaded->sysctl_origin.at(SysctlKey{"eth0", "arp_announce"}) == 2);
  CHECK(loaded->sysctl_origin.at(SysctlKey{"all", "arp_ignore"}) == 0);

  // Adding what is there, and an origin already known (the first value stays): no write.
  const ino_t before = inode(file.path());
  StateChange again;
  again.added = {first.added[0]};
  again.origins = {{SysctlKey{"all", "arp_ignore"}, 1}};
  REQUIRE(file.record(again));
  CHECK(inode(file.path()) == before);

  StateChange removal;
  removal.removed = {first.added[1]};
  REQUIRE(file.record(removal));
  CHECK(inode(file.path()) != before);
  auto after = StateFile(dir.path() + "/state").load();
  REQUIRE(after);
  CHECK(after->vips.size() == 2);
  CHECK(after->vips.count(first.added[1]) == 0);
  CHECK(after->sysctl_origin.at(SysctlKey{"all", "arp_ignore"}) == 0);

  StateChange cleared;
  cleared.clear = true;
  REQUIRE(file.record(cleared));
  auto empty = StateFile(dir.path() + "/state").load();
  REQUIRE(empty);
  CHECK(empty->vips.empty());
  CHECK(empty->sysctl_origin.empty());
  CHECK(nlohmann::json::parse(contents(file.path()), nullptr, false).is_object());
}

TEST_CASE("state file: its own last write is not parsed again; a file changed or replaced behind its back is") {
  TempDir dir;
  REQUIRE_FALSE(dir.path().empty());
  StateFile file(dir.path() + "/state");
  StateChange change;
  change.added = {ManagedVip{prefix("10.0.0.5/32"), VipKind::kAddress, "lo"}};
  REQUIRE(file.record(change));
  REQUIRE(file.load()->vips.size() == 1);

  // Unchanged: the copy in memory. A file of the same size written in place
  // (one address for another) moves its modification time: read again.
  const std::string path = file.path();
  std::string text = contents(path);
  const size_t at = text.find("10.0.0.5");
  REQUIRE(at != std::string::npos);
  text.replace(at, 8, "10.0.0.6");
  { std::ofstream(path, std::ios::in | std::ios::out) << text; }
  auto changed = file.load();
  REQUIRE(changed);
  CHECK(changed->vips == std::set<ManagedVip>{ManagedVip{prefix("10.0.0.6/32"), VipKind::kAddress, "lo"}});

  // Its own write again, then replaced by another file (another inode): read again.
  REQUIRE(file.record(change));
  REQUIRE(file.load()->vips.size() == 2);
  const std::string other = dir.path() + "/other.json";
  { std::ofstream(other) << "{\"vips\": []}\n"; }
  REQUIRE(std::rename(other.c_str(), path.c_str()) == 0);
  CHECK(file.load()->vips.empty());
  // And removed: an empty record.
  REQUIRE(file.record(change));
  std::filesystem::remove(path);
  CHECK(file.load()->vips.empty());
}

TEST_CASE("state file: one nested deeper than any arpguard writes is refused before it is parsed") {
  TempDir dir;
  // 200 MB of '[' made arpguardd grow to 14 GB in the parser; 1 MB of them is refused the same way.
  { std::ofstream(dir.path() + "/state.json") << std::string(1 << 20, '['); }
  StateFile file(dir.path());
  auto loaded = file.load();
  REQUIRE_FALSE(loaded);
  CHECK(loaded.error().message().find("nested deeper than any state arpguard writes") != std::string::npos);
  // Brackets inside a device name are text, not depth.
  { std::ofstream(dir.path() + "/state.json") << R"({"vips": [{"address": "10.0.0.1/32", "device": "[[[[[[[[[[", "kind": "address"}]})"; }
  StateFile again(dir.path());
  auto read = again.load();
  REQUIRE(read);
  CHECK(read->vips.size() == 1);
}

TEST_CASE("state file: a record that cannot be read is kept aside, not overwritten, at the next write") {
  TempDir dir;
  { std::ofstream(dir.path() + "/state.json") << "\x01garbage{"; }
  StateFile file(dir.path());
  REQUIRE_FALSE(file.load());
  REQUIRE(file.record(StateChange{{ManagedVip{prefix("10.0.0.2/32"), VipKind::kAddress, "lo"}}, {}, {}, false}));
  CHECK(contents(dir.path() + "/state.json.unreadable") == "\x01garbage{");
  CHECK(contents(dir.path() + "/state.json").find("10.0.0.2/32") != std::string::npos);
}

TEST_CASE("state file: after a failed write, memory is the record: written again at the next load or record") {
  TempDir dir;
  REQUIRE_FALSE(dir.path().empty());
  const std::string state_dir = dir.path() + "/state";
  StateFile file(state_dir);
  const ManagedVip first{prefix("10.0.0.1/32"), VipKind::kAddress, "lo"};
  const ManagedVip second{prefix("10.0.0.2/32"), VipKind::kAddress, "lo"};
  REQUIRE(file.record(StateChange{{first}, {}, {}, false}));
  CHECK_FALSE(file.unsaved());

  // The directory turns into something nobody can write in (a file here: root writes anywhere else).
  std::filesystem::rename(state_dir, dir.path() + "/aside");
  { std::ofstream(state_dir) << "not a directory"; }
  const Status failed = file.record(StateChange{{second}, {}, {}, false});
  REQUIRE_FALSE(failed);
  REQUIRE(file.unsaved());
  CHECK(file.unsaved()->message().find("Not a directory") != std::string::npos);
  // Read while still blocked: what arpguard did, not what the disk last held.
  auto loaded = file.load();
  REQUIRE(loaded);
  CHECK(loaded->vips.count(second) == 1);
  CHECK(file.unsaved());
  // An unchanged record is written again too, while the file lacks something.
  CHECK_FALSE(file.record(StateChange{{second}, {}, {}, false}));

  // Writable again: the next load writes it all.
  std::filesystem::remove(state_dir);
  std::filesystem::rename(dir.path() + "/aside", state_dir);
  loaded = file.load();
  REQUIRE(loaded);
  CHECK_FALSE(file.unsaved());
  const std::string text = contents(state_dir + "/state.json");
  CHECK(text.find("10.0.0.1/32") != std::string::npos);
  CHECK(text.find("10.0.0.2/32") != std::string::npos);
}
