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

TEST_CASE("state file: read once; a file changed, replaced or removed behind its back is written again from memory") {
  TempDir dir;
  REQUIRE_FALSE(dir.path().empty());
  StateFile file(dir.path() + "/state");
  StateChange change;
  const ManagedVip five{prefix("10.0.0.5/32"), VipKind::kAddress, "lo"};
  change.added = {five};
  REQUIRE(file.record(change));
  REQUIRE(file.load()->vips.size() == 1);
  CHECK_FALSE(file.take_notice());

  // A file of the same size written in place (one address for another)
  // moves its modification time: arpguard's record is put back, and said so.
  const std::string path = file.path();
  std::string text = contents(path);
  const size_t at = text.find("10.0.0.5");
  REQUIRE(at != std::string::npos);
  text.replace(at, 8, "10.0.0.6");
  { std::ofstream(path, std::ios::in | std::ios::out) << text; }
  auto changed = file.load();
  REQUIRE(changed);
  CHECK(changed->vips == std::set<ManagedVip>{five});
  CHECK(contents(path).find("10.0.0.5/32") != std::string::npos);
  auto notice = file.take_notice();
  REQUIRE(notice);
  CHECK(notice->find("changed or removed by another process") != std::string::npos);
  CHECK_FALSE(file.take_notice());  // said once

  // Replaced by another file (another inode), then removed: the same.
  const std::string other = dir.path() + "/other.json";
  { std::ofstream(other) << "{\"vips\": []}\n"; }
  REQUIRE(std::rename(other.c_str(), path.c_str()) == 0);
  CHECK(file.load()->vips == std::set<ManagedVip>{five});
  CHECK(contents(path).find("10.0.0.5/32") != std::string::npos);
  std::filesystem::remove(path);
  CHECK(file.load()->vips == std::set<ManagedVip>{five});
  CHECK(contents(path).find("10.0.0.5/32") != std::string::npos);
  CHECK(file.take_notice());
  // Untouched since: nothing written, nothing said.
  const ino_t before = inode(path);
  CHECK(file.load()->vips.size() == 1);
  CHECK(inode(path) == before);
  CHECK_FALSE(file.take_notice());
}

TEST_CASE("state file: a FIFO, a directory or a device in its place is unreadable, at once, never waited on") {
  TempDir dir;
  REQUIRE(::mkfifo((dir.path() + "/state.json").c_str(), 0600) == 0);
  StateFile file(dir.path());
  auto loaded = file.load();  // a blocking open would wait here for a writer forever
  REQUIRE_FALSE(loaded);
  CHECK(loaded.error().message().find("not a regular file") != std::string::npos);
  // The next write puts the record in its place, the FIFO kept aside.
  REQUIRE(file.record(StateChange{{ManagedVip{prefix("10.0.0.2/32"), VipKind::kAddress, "lo"}}, {}, {}, false}));
  CHECK(contents(dir.path() + "/state.json").find("10.0.0.2/32") != std::string::npos);
  struct stat st {};
  REQUIRE(::lstat((dir.path() + "/state.json.unreadable").c_str(), &st) == 0);
  CHECK(S_ISFIFO(st.st_mode));
}

TEST_CASE("state file: a record with one bad entry is unreadable whole; entries no policy could make are not taken") {
  TempDir dir;
  const std::string path = dir.path() + "/state.json";
  // One good entry and one bad: nothing of it is believed, and it is kept aside at the next write.
  const std::string partial = "{\"sysctl_origin\":[],\"vips\":[{\"address\":\"10.7.0.9/32\",\"device\":\"lo\","
                              "\"kind\":\"address\"},{\"address\":\"bogus\",\"device\":\"lo\"}]}";
  { std::ofstream(path) << partial; }
  {
    StateFile file(dir.path());
    auto loaded = file.load();
    REQUIRE_FALSE(loaded);
    CHECK(loaded.error().message().find("bad address in vips") != std::string::npos);
    // Asked again (an audit), still unreadable: never the part before the bad entry.
    REQUIRE_FALSE(file.load());
    REQUIRE(file.record(StateChange{{ManagedVip{prefix("10.7.0.1/32"), VipKind::kAddress, "lo"}}, {}, {}, false}));
    CHECK(contents(path + ".unreadable") == partial);
    CHECK(contents(path).find("10.7.0.9") == std::string::npos);
  }
  // Loopback, link-local and multicast entries are no VIPs of arpguard's: left out, the rest taken.
  { std::ofstream(path) << "{\"vips\":[{\"address\":\"127.0.0.1/8\",\"device\":\"lo\"},"
                           "{\"address\":\"fe80::1/64\",\"device\":\"eth0\"},"
                           "{\"address\":\"224.0.0.1/32\",\"device\":\"lo\"},"
                           "{\"address\":\"10.8.0.1/32\",\"device\":\"lo\"}],"
                           "\"sysctl_origin\":[{\"name\":\"arp_ignore\",\"scope\":\"all\",\"value\":0}]}"; }
  StateFile file(dir.path());
  auto loaded = file.load();
  REQUIRE(loaded);
  CHECK(loaded->vips == std::set<ManagedVip>{ManagedVip{prefix("10.8.0.1/32"), VipKind::kAddress, "lo"}});
  CHECK(loaded->sysctl_origin.at(SysctlKey{"all", "arp_ignore"}) == 0);
  // Shapes arpguard never writes are refused, not half taken.
  for (const char* text : {"[]", "5", "{\"vips\": {}}", "{\"vips\": [[]]}", "{\"other\": []}",
                           "{\"vips\": [{\"address\": \"10.0.0.1/32\"}]}",
                           "{\"sysctl_origin\": [{\"name\": \"arp_ignore\", \"scope\": \"all\", \"value\": \"0\"}]}"}) {
    CAPTURE(text);
    { std::ofstream(path) << text; }
    StateFile again(dir.path());
    CHECK_FALSE(again.load());
  }
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
