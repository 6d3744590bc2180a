// Printing what a chaos run saw: evidence around a moment (drifts, daemon
// log, kernel verdicts), and the whole timeline as a file for replaying a
// failure by eye.
//
// Thread-safety: call after the run's threads stopped.
#pragma once

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "tests/chaos/records.h"

namespace arpguard::chaos {

struct RunView {
  double t0 = 0;  ///< the chaos began: times print as +seconds from here
  std::vector<ExpectedPolicy> policies;
  std::vector<KernelSample> samples;  ///< sorted by start
  std::vector<DriftRecord> drifts;
  std::vector<Probe> ready, agent;
  std::vector<ReloadEvent> reloads;
  std::vector<std::pair<double, std::string>> daemon_log;

  std::string at(double t) const;  ///< "+12.345"
};

/// Gaps of a sample under every policy, "A: gap; gap | B: gap".
std::string describe(const RunView& run, const KernelSample& sample);

/// Drifts, daemon log lines and kernel verdict changes within [from, to].
void print_evidence(std::FILE* out, const RunView& run, double from, double to);

/// Every drift, readiness change, kernel verdict change and daemon log line, in time order.
void write_timeline(const std::string& path, const RunView& run);

}  // namespace arpguard::chaos
