// Who keeps undoing what: a resource repaired more than `threshold` times in a
// window is contested, its repairs back off (50 ms doubling to 5 s), and a
// quiet window ends it. The caller passes the time; nothing sleeps.
#include <doctest/doctest.h>

#include <map>
#include <vector>

#include "core/repair_tracker.h"

using namespace arpguard;

namespace {

const Resource kVip{Resource::Kind::kVip, "10.0.0.5/32"};
const Resource kOtherVip{Resource::Kind::kVip, "10.0.0.6/32"};
const Resource kSysctl{Resource::Kind::kSysctl, "net.ipv4.conf.all.arp_ignore"};
const Resource kTable{Resource::Kind::kTable, "arp arpguard"};

// Records repairs of `resource` at each time; how many of them said "now contested".
int record_all(RepairTracker& tracker, const Resource& resource, const std::vector<double>& times) {
  int became = 0;
  for (double t : times) became += tracker.record(resource, t) ? 1 : 0;
  return became;
}

}  // namespace

TEST_CASE("resources print as logs and status name them") {
  CHECK(kVip.str() == "vip 10.0.0.5/32");
  CHECK(kSysctl.str() == "sysctl net.ipv4.conf.all.arp_ignore");
  CHECK(kTable.str() == "nft table arp arpguard");
}

TEST_CASE("threshold repairs in the window are not contested; one more is, and says so once") {
  RepairTracker tracker(5, 10.0);
  for (int i = 0; i < 5; ++i) {
    CAPTURE(i);
    CHECK_FALSE(tracker.record(kVip, 100.0 + i));
  }
  CHECK(tracker.contested().empty());
  CHECK(tracker.next_allowed({kVip}, 104.0) == 104.0);

  CHECK(tracker.record(kVip, 105.0));
  CHECK(tracker.contested() == std::map<Resource, int>{{kVip, 6}});
  // Already contested: the next repairs do not announce it again.
  CHECK_FALSE(tracker.record(kVip, 106.0));
  CHECK(tracker.contested() == std::map<Resource, int>{{kVip, 7}});
}

TEST_CASE("resources are counted apart, by kind and name") {
  RepairTracker tracker(2, 10.0);
  const Resource same_name_other_kind{Resource::Kind::kSysctl, "10.0.0.5/32"};
  CHECK(record_all(tracker, kVip, {1, 2}) == 0);
  CHECK(record_all(tracker, kOtherVip, {1, 2}) == 0);
  CHECK(record_all(tracker, same_name_other_kind, {1, 2}) == 0);
  CHECK(tracker.contested().empty());
  CHECK(tracker.record(kVip, 3));
  CHECK(tracker.contested() == std::map<Resource, int>{{kVip, 3}});
}

TEST_CASE("a contested resource backs off: 50 ms after its first excess repair, doubling, capped at 5 s") {
  struct Step {
    int repairs;     ///< in the window so far
    double backoff;  ///< seconds after the last repair
  };
  const Step steps[] = {
      {6, 0.05}, {7, 0.1}, {8, 0.2}, {9, 0.4}, {10, 0.8}, {11, 1.6}, {12, 3.2}, {13, 5.0}, {14, 5.0}, {40, 5.0},
  };
  for (const Step& step : steps) {
    CAPTURE(step.repairs);
    RepairTracker tracker(5, 10.0);
    double last = 0;
    for (int i = 0; i < step.repairs; ++i) {
      last = 200.0 + i * 0.01;
      tracker.record(kVip, last);
    }
    CHECK(tracker.next_allowed({kVip}, last) == doctest::Approx(last + step.backoff));
    // Later than the backoff: now.
    CHECK(tracker.next_allowed({kVip}, last + 6.0) == last + 6.0);
  }
}

TEST_CASE("next_allowed is now for untracked or calm resources, and the latest of several contested ones") {
  RepairTracker tracker(1, 10.0);
  CHECK(tracker.next_allowed({}, 50.0) == 50.0);
  CHECK(tracker.next_allowed({kVip, kTable}, 50.0) == 50.0);
  record_all(tracker, kVip, {10.0, 10.5});                // 2 repairs: excess 1, 50 ms
  record_all(tracker, kTable, {10.0, 10.1, 10.2, 10.3});  // 4 repairs: excess 3, 200 ms
  tracker.record(kSysctl, 10.0);                          // 1 repair: calm
  CHECK(tracker.next_allowed({kSysctl}, 10.3) == 10.3);
  CHECK(tracker.next_allowed({kVip}, 10.3) == doctest::Approx(10.55));
  CHECK(tracker.next_allowed({kTable}, 10.3) == doctest::Approx(10.5));
  CHECK(tracker.next_allowed({kSysctl, kVip, kTable}, 10.3) == doctest::Approx(10.55));
  CHECK(tracker.next_allowed({kTable, kSysctl}, 10.3) == doctest::Approx(10.5));
}

TEST_CASE("repairs older than the window are forgotten, so slow drift is never contested") {
  RepairTracker tracker(5, 10.0);
  // One repair every 3 s for a minute, expiring as the daemon's poll timer does.
  for (int i = 0; i < 20; ++i) {
    const double now = i * 3.0;
    CAPTURE(now);
    CHECK(tracker.expire(now).empty());
    CHECK_FALSE(tracker.record(kVip, now));
  }
  CHECK(tracker.contested().empty());
}

TEST_CASE("repairs expire exactly a window after they happened") {
  RepairTracker tracker(5, 10.0);
  record_all(tracker, kVip, {0, 1, 2, 3, 4});
  CHECK(tracker.expire(13.9).empty());  // forgets 0, 1, 2, 3
  CHECK_FALSE(tracker.record(kVip, 13.9));
  CHECK_FALSE(tracker.record(kVip, 13.9));
  CHECK_FALSE(tracker.record(kVip, 13.9));
  CHECK_FALSE(tracker.record(kVip, 13.9));  // 4 and four at 13.9: 5
  CHECK(tracker.record(kVip, 13.95));       // 6 within the window
}

TEST_CASE("a contested resource stays contested until quiet for a whole window, then expire names it calmed") {
  RepairTracker tracker(5, 10.0);
  CHECK(record_all(tracker, kVip, {0, 1, 2, 3, 4, 5}) == 1);
  CHECK(record_all(tracker, kSysctl, {4, 5}) == 0);

  // 9.9 s after its last repair: still contested (one repair left in the window).
  CHECK(tracker.expire(14.9).empty());
  CHECK(tracker.contested() == std::map<Resource, int>{{kVip, 1}});

  // A whole window quiet: calmed, forgotten, and repaired at once again.
  CHECK(tracker.expire(15.0) == std::vector<Resource>{kVip});
  CHECK(tracker.contested().empty());
  CHECK(tracker.next_allowed({kVip}, 15.0) == 15.0);
  // Only contested resources are reported calmed, and only once.
  CHECK(tracker.expire(16.0).empty());
  CHECK(tracker.expire(100.0).empty());

  // A fresh fight starts from nothing: threshold repairs are calm again.
  CHECK(record_all(tracker, kVip, {101, 102, 103, 104, 105}) == 0);
  CHECK(tracker.record(kVip, 106));
}

TEST_CASE("repairs during a fight keep it contested past the first window") {
  RepairTracker tracker(5, 10.0);
  record_all(tracker, kVip, {0, 1, 2, 3, 4, 5});
  // The fight goes on, every 4 s: never a quiet window.
  for (double t : {9.0, 13.0, 17.0, 21.0}) {
    CAPTURE(t);
    CHECK(tracker.expire(t).empty());
    CHECK_FALSE(tracker.record(kVip, t));
    CHECK(tracker.contested().count(kVip) == 1);
  }
  CHECK(tracker.expire(30.9).empty());
  CHECK(tracker.expire(31.0) == std::vector<Resource>{kVip});
}

TEST_CASE("several resources calm down each in its own time, in resource order") {
  RepairTracker tracker(1, 10.0);
  CHECK_FALSE(tracker.any_contested());
  record_all(tracker, kTable, {0, 1});
  record_all(tracker, kVip, {0, 2});
  record_all(tracker, kSysctl, {0, 3});
  CHECK(tracker.contested().size() == 3);
  CHECK(tracker.any_contested());
  CHECK(tracker.expire(11.5) == std::vector<Resource>{kTable});
  CHECK(tracker.any_contested());
  CHECK(tracker.expire(13.0) == (std::vector<Resource>{kVip, kSysctl}));
  CHECK(tracker.contested().empty());
  // The supervisor skips its backoff check when none is: that answer must follow contested().
  CHECK_FALSE(tracker.any_contested());
  record_all(tracker, kVip, {20});
  CHECK_FALSE(tracker.any_contested());
  record_all(tracker, kVip, {21});
  CHECK(tracker.any_contested());
}

TEST_CASE("a contested resource reports the repairs within the window") {
  // "N repairs in the window" counts the window, not the whole fight.
  RepairTracker tracker(5, 10.0);
  record_all(tracker, kVip, {0, 1, 2, 3, 4, 5});
  for (double t : {8.0, 12.0, 16.0, 20.0}) {
    tracker.expire(t);
    tracker.record(kVip, t);
  }
  tracker.expire(20.0);
  CHECK(tracker.contested() == std::map<Resource, int>{{kVip, 3}});
}

TEST_CASE("record counts only repairs within the window, even before expire has run") {
  // The window counts by age, whenever expire() last ran: six repairs 3 s apart
  // are never more than four in any 10 s window.
  RepairTracker tracker(5, 10.0);
  CHECK(record_all(tracker, kVip, {0, 3, 6, 9, 12, 15}) == 0);
  CHECK(tracker.contested().empty());
  CHECK(tracker.next_allowed({kVip}, 15.0) == 15.0);
}
