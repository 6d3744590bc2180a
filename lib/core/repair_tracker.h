// Which resources someone keeps undoing. Pure: the caller passes the time.
//
// A resource (a VIP, a sysctl key, an nft table) repaired more than
// `threshold` times within `window` seconds is contested: it is still
// repaired, but each further repair waits twice as long as the last (from
// 50 ms up to 5 s) until the resource stays quiet for a whole window. Only
// repairs within the window count, whenever expire() runs. Not thread-safe.
#pragma once

#include <deque>
#include <map>
#include <vector>

#include "core/plan.h"

namespace arpguard {

class RepairTracker {
 public:
  explicit RepairTracker(int threshold = 5, double window_seconds = 10.0)
      : threshold_(threshold), window_(window_seconds) {}

  /// Records a repair of `resource` at `now`; true when this repair made it contested.
  bool record(const Resource& resource, double now);
  /// The earliest time a repair touching `resources` may run: `now` unless one is contested.
  double next_allowed(const std::vector<Resource>& resources, double now) const;
  /// Forgets repairs older than the window; returns the resources that stopped being contested.
  std::vector<Resource> expire(double now);
  /// Contested resources with their repair counts in the window.
  std::map<Resource, int> contested() const;
  /// Whether any resource is contested now (until expire() calms it).
  bool any_contested() const { return contested_count_ > 0; }

 private:
  struct History {
    std::deque<double> times;  ///< repairs within the window, oldest first
    bool contested = false;
    int streak = 0;            ///< repairs since it became contested: how long the backoff has grown
  };
  void forget_before(History& history, double now) const;

  int threshold_;
  double window_;
  std::map<Resource, History> repairs_;
  size_t contested_count_ = 0;
};

}  // namespace arpguard
