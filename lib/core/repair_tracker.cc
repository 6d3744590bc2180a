#include "core/repair_tracker.h"

#include <algorithm>
#include <cmath>

namespace arpguard {

namespace {

constexpr double kFirstBackoff = 0.05;
constexpr double kMaxBackoff = 5.0;

}  // namespace

bool RepairTracker::record(const Resource& resource, double now) {
  std::deque<double>& times = repairs_[resource];
  const bool was = is_contested(times);
  times.push_back(now);
  return !was && is_contested(times);
}

double RepairTracker::next_allowed(const std::vector<Resource>& resources, double now) const {
  double allowed = now;
  for (const Resource& resource : resources) {
    auto it = repairs_.find(resource);
    if (it == repairs_.end() || !is_contested(it->second)) continue;
    const int excess = static_cast<int>(it->second.size()) - threshold_;
    const double backoff = std::min(kMaxBackoff, kFirstBackoff * std::pow(2.0, excess - 1));
    allowed = std::max(allowed, it->second.back() + backoff);
  }
  return allowed;
}

std::vector<Resource> RepairTracker::expire(double now) {
  std::vector<Resource> calmed;
  for (auto it = repairs_.begin(); it != repairs_.end();) {
    std::deque<double>& times = it->second;
    const bool was = is_contested(times);
    // A contested resource stays so until it has been quiet for a whole window.
    if (was && now - times.back() < window_) {
      ++it;
      continue;
    }
    while (!times.empty() && now - times.front() >= window_) times.pop_front();
    if (was && !is_contested(times)) calmed.push_back(it->first);
    it = times.empty() ? repairs_.erase(it) : std::next(it);
  }
  return calmed;
}

std::map<Resource, int> RepairTracker::contested() const {
  std::map<Resource, int> out;
  for (const auto& [resource, times] : repairs_) {
    if (is_contested(times)) out[resource] = static_cast<int>(times.size());
  }
  return out;
}

}  // namespace arpguard
