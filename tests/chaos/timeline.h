// The chaos run after the fact: which policy was in force when, how long the
// kernel was seen failing the policy, and how stale each "ready" was.
//
// A readiness claim (HTTP 200 on /ready, agent-check "up") made at [sent,
// received] is stale by `sent - first_seen` when the sampler saw the policy
// unmet for the same reason from first_seen through a reading that began at
// or after `received`, without a drift in between that could have caused that
// reason again (a gap repaired and caused anew between two samples is two
// gaps, not one). The literal staleness ignores reasons and drifts: every
// sample unmet for whatever reason.
//
// Pure: no I/O. Thread-safety: values only.
#pragma once

#include <array>
#include <bitset>
#include <set>
#include <string>
#include <vector>

#include "tests/chaos/model.h"

namespace arpguard::chaos {

struct KernelSample {
  double start = 0, end = 0;
  bool ok = false;                ///< the reading succeeded
  std::string error;
  std::vector<Verdict> verdicts;  ///< one per policy, by index
  Layers layers;
};

/// An accepted reload: `before` until `requested`, either during
/// [requested, acknowledged], `after` from then on.
struct ReloadEvent {
  double requested = 0, acknowledged = 0;
  int before = 0, after = 0;
};

/// The policies possibly in force at some instant of [t0, t1].
std::set<int> policies_during(const std::vector<ReloadEvent>& reloads, int initial, double t0, double t1);

/// A drift the chaos made, and which kinds of gap it may cause.
struct DriftSpan {
  double start = 0, end = 0;
  std::bitset<kGapKinds> causes;
};

struct Streak {
  double first_seen = 0, last_seen = 0;  ///< end of its first sample, start of its last
  size_t first_sample = 0, last_sample = 0;
};

struct UnmetStreaks {
  std::array<std::vector<Streak>, kGapKinds> by_gap;
  std::vector<Streak> any;  ///< literal: every sample unmet, for any reason
};

/// REQUIRES: samples sorted by start.
UnmetStreaks unmet_streaks(const std::vector<KernelSample>& samples, const std::vector<ReloadEvent>& reloads,
                           int initial, const std::vector<DriftSpan>& drifts);

struct Staleness {
  double age = 0;  ///< seconds; 0 when the claim was not made during an unmet streak
  int gap = -1;    ///< the Gap of the oldest attributable streak, -1 for none
  const Streak* streak = nullptr;
};

/// How stale a readiness claim made over [sent, received] was, attributably.
Staleness attributable_staleness(const UnmetStreaks& streaks, double sent, double received);
/// The same ignoring reasons and drifts.
Staleness literal_staleness(const UnmetStreaks& streaks, double sent, double received);

}  // namespace arpguard::chaos
