#include "tests/chaos/timeline.h"

#include <algorithm>
#include <limits>

namespace arpguard::chaos {

std::set<int> policies_during(const std::vector<ReloadEvent>& reloads, int initial, double t0, double t1) {
  std::set<int> out;
  int current = initial;
  double current_from = -std::numeric_limits<double>::infinity();
  for (const ReloadEvent& r : reloads) {
    // [current_from, requested): current alone; [requested, acknowledged]: both.
    if (current_from <= t1 && r.requested >= t0) out.insert(current);
    if (r.requested <= t1 && r.acknowledged >= t0) {
      out.insert(r.before);
      out.insert(r.after);
    }
    current = r.after;
    current_from = r.acknowledged;
  }
  if (current_from <= t1) out.insert(current);
  return out;
}

namespace {

bool drift_between(const std::vector<DriftSpan>& drifts, int gap, double after, double until) {
  for (const DriftSpan& d : drifts) {
    if (d.causes.test(static_cast<size_t>(gap)) && d.end > after && d.start <= until) return true;
  }
  return false;
}

// Extends or closes the streak `open` with sample i (unmet or not).
void step(std::vector<Streak>& out, bool& open, bool unmet, bool split, const KernelSample& s, size_t i) {
  if (open && (!unmet || split)) open = false;
  if (!unmet) return;
  if (!open) {
    out.push_back(Streak{s.end, s.start, i, i});
    open = true;
  } else {
    out.back().last_seen = s.start;
    out.back().last_sample = i;
  }
}

}  // namespace

UnmetStreaks unmet_streaks(const std::vector<KernelSample>& samples, const std::vector<ReloadEvent>& reloads,
                           int initial, const std::vector<DriftSpan>& drifts) {
  UnmetStreaks result;
  std::array<bool, kGapKinds> open{};
  bool any_open = false;
  const KernelSample* previous = nullptr;
  for (size_t i = 0; i < samples.size(); ++i) {
    const KernelSample& s = samples[i];
    if (!s.ok) {  // unknown: it may have been met
      open.fill(false);
      any_open = false;
      previous = nullptr;
      continue;
    }
    const std::set<int> candidates = policies_during(reloads, initial, s.start, s.end);
    bool any_unmet = true;
    for (int p : candidates) any_unmet &= !s.verdicts.at(static_cast<size_t>(p)).met;
    step(result.any, any_open, any_unmet, false, s, i);
    for (int g = 0; g < kGapKinds; ++g) {
      bool unmet = true;
      for (int p : candidates) unmet &= s.verdicts.at(static_cast<size_t>(p)).has(static_cast<Gap>(g));
      const bool split = previous && drift_between(drifts, g, previous->start, s.end);
      step(result.by_gap[static_cast<size_t>(g)], open[static_cast<size_t>(g)], unmet, split, s, i);
    }
    previous = &s;
  }
  return result;
}

namespace {

Staleness staleness_in(const std::vector<Streak>& streaks, double sent, double received) {
  // Streaks are disjoint and in time order: the one seen unmet at or after `received`.
  auto it = std::lower_bound(streaks.begin(), streaks.end(), received,
                             [](const Streak& s, double t) { return s.last_seen < t; });
  Staleness out;
  if (it == streaks.end() || it->first_seen > received) return out;
  out.age = std::max(0.0, sent - it->first_seen);
  out.streak = &*it;
  return out;
}

}  // namespace

Staleness attributable_staleness(const UnmetStreaks& streaks, double sent, double received) {
  Staleness worst;
  for (int g = 0; g < kGapKinds; ++g) {
    Staleness s = staleness_in(streaks.by_gap[static_cast<size_t>(g)], sent, received);
    if (s.streak && (!worst.streak || s.age > worst.age)) {
      worst = s;
      worst.gap = g;
    }
  }
  return worst;
}

Staleness literal_staleness(const UnmetStreaks& streaks, double sent, double received) {
  return staleness_in(streaks.any, sent, received);
}

}  // namespace arpguard::chaos
