#include <doctest/doctest.h>

#include "core/repair_tracker.h"

using arpguard::RepairTracker;

TEST_CASE("a resource repaired more than the threshold within the window is contested") {
  RepairTracker tracker(5, 10.0);
  for (int i = 0; i < 5; ++i) CHECK_FALSE(tracker.record("vip 192.0.2.10/32", i * 0.1));
  CHECK(tracker.contested().empty());
  CHECK(tracker.next_allowed({"vip 192.0.2.10/32"}, 0.5) == 0.5);
  CHECK(tracker.record("vip 192.0.2.10/32", 0.5));   // the sixth: now contested
  CHECK_FALSE(tracker.record("vip 192.0.2.10/32", 0.6));  // reported once
  CHECK(tracker.contested() == std::map<std::string, int>{{"vip 192.0.2.10/32", 7}});
}

TEST_CASE("repairs of a contested resource back off exponentially, up to 5 s; others are not held up") {
  RepairTracker tracker(5, 10.0);
  for (int i = 0; i < 6; ++i) tracker.record("r", 1.0);
  CHECK(tracker.next_allowed({"r"}, 1.0) == doctest::Approx(1.05));
  tracker.record("r", 1.05);
  CHECK(tracker.next_allowed({"r"}, 1.05) == doctest::Approx(1.15));
  tracker.record("r", 1.15);
  CHECK(tracker.next_allowed({"r"}, 1.15) == doctest::Approx(1.35));
  for (int i = 0; i < 20; ++i) tracker.record("r", 2.0);
  CHECK(tracker.next_allowed({"r"}, 2.0) == doctest::Approx(7.0));
  CHECK(tracker.next_allowed({"other"}, 2.0) == 2.0);
}

TEST_CASE("a contested resource calms down after a quiet window, and not before") {
  RepairTracker tracker(5, 10.0);
  for (int i = 0; i < 6; ++i) tracker.record("r", static_cast<double>(i));
  CHECK(tracker.expire(14.0).empty());  // last repair at 5: not yet quiet for 10 s
  CHECK(tracker.expire(15.0) == std::vector<std::string>{"r"});
  CHECK(tracker.contested().empty());
  CHECK(tracker.next_allowed({"r"}, 15.0) == 15.0);
}
