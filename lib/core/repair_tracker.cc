#include "core/repair_tracker.h"

#include <algorithm>
#include <cmath>

namespace arpguard {

namespace {

constexpr double kFirstBackoff = 0.05;
constexpr double kMaxBackoff = 5.0;

}  // namespace

void RepairTracker::forget_before(History& history, double now) const {
  while (!history.times.empty() && now - history.times.front() >= window_) history.times.pop_front();
}

bool RepairTracker::record(const Resource& resource, double now) {
  History& history = repairs_[resource];
  forget_before(history, now);
  history.times.push_back(now);
  if (history.contested) {
    ++history.streak;
    return false;
  }
  if (static_cast<int>(history.times.size()) <= threshold_) return false;
  history.contested = true;
  ++contested_count_;
  history.streak = 1;
  return true;
}

double RepairTracker::next_allowed(const std::vector<Resource>& resources, double now) const {
  double allowed = now;
  for (const Resource& resource : resources) {
    auto it = repairs_.find(resource);
    if (it == repairs_.end() || !it->second.contested || it->second.times.empty()) continue;
    const double backoff = std::min(kMaxBackoff, kFirstBackoff * std::pow(2.0, it->second.streak - 1));
    allowed = std::max(allowed, it->second.times.back() + backoff);
  }
  return allowed;
}

std::vector<Resource> RepairTracker::expire(double now) {
  std::vector<Resource> calmed;
  for (auto it = repairs_.begin(); it != repairs_.end();) {
    History& history = it->second;
    forget_before(history, now);
    // A contested resource stays so until it has been quiet for a whole window.
    if (history.times.empty()) {
      if (history.contested) {
        calmed.push_back(it->first);
        --contested_count_;
      }
      it = repairs_.erase(it);
    } else {
      ++it;
    }
  }
  return calmed;
}

std::map<Resource, int> RepairTracker::contested() const {
  std::map<Resource, int> out;
  for (const auto& [resource, history] : repairs_) {
    if (history.contested) out[resource] = static_cast<int>(history.times.size());
  }
  return out;
}

}  // namespace arpguard
