// What a chaos run records as it goes, shared by its threads: drifts made,
// readiness answers, client outcomes, reloads and drains; the daemon's log
// with the time each line arrived; the latest kernel sample for deciding
// which drift may run next.
//
// Thread-safety: Records, DaemonLog and LatestSample lock internally.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/chaos/timeline.h"

namespace arpguard::chaos {

struct DriftRecord {
  std::string kind, command;
  double start = 0, end = 0;
  int exit_code = 0;
  std::string error;
  std::bitset<kGapKinds> causes;
};

/// One readiness answer: HTTP /ready (code) or agent-check (line).
struct Probe {
  double sent = 0, received = 0;
  int code = 0;      ///< HTTP status; 0 = no answer
  std::string text;  ///< agent-check line, or what went wrong
};

struct DrainWindow {
  double drained = 0;  ///< `arpguard drain` answered
  double resumed = 0;  ///< `arpguard resume` sent
};

class Records {
 public:
  void drift(DriftRecord r);
  void ready(Probe p);
  void agent(Probe p);
  void reload(ReloadEvent r);
  void drain(DrainWindow w);
  void sample(KernelSample s);
  /// Counts `what` under `group` ("http", "control", "drift-gated", ...).
  void count(const std::string& group, const std::string& what);
  /// Keeps an unexpected outcome for the report (and the failure list when `fails`).
  void anomaly(const std::string& text, bool fails);

  // Snapshots (copies), for the analysis after the threads stopped.
  std::vector<DriftRecord> drifts() const;
  std::vector<Probe> ready_probes() const;
  std::vector<Probe> agent_probes() const;
  std::vector<ReloadEvent> reloads() const;
  std::vector<DrainWindow> drains() const;
  std::vector<KernelSample> samples() const;
  std::map<std::string, std::map<std::string, int>> counts() const;
  std::vector<std::pair<std::string, bool>> anomalies() const;

 private:
  mutable std::mutex mutex_;
  std::vector<DriftRecord> drifts_;
  std::vector<Probe> ready_, agent_;
  std::vector<ReloadEvent> reloads_;
  std::vector<DrainWindow> drains_;
  std::vector<KernelSample> samples_;
  std::map<std::string, std::map<std::string, int>> counts_;
  std::vector<std::pair<std::string, bool>> anomalies_;
};

/// arpguardd's stderr through a FIFO, each line stamped with the wall-clock
/// time it arrived, copied to a file as "+SECONDS line".
class DaemonLog {
 public:
  /// Creates the FIFO at `fifo` (the daemon's log file) and starts reading it.
  DaemonLog(std::string fifo, std::string copy, double epoch);
  ~DaemonLog();
  DaemonLog(const DaemonLog&) = delete;
  DaemonLog& operator=(const DaemonLog&) = delete;

  const std::string& fifo() const { return fifo_; }
  /// The first line containing `text` that arrived after `after`, with its arrival time; waits up to `timeout`.
  std::optional<std::pair<double, std::string>> wait_for(const std::string& text, double after, double timeout) const;
  std::vector<std::pair<double, std::string>> lines() const;
  size_t count_containing(const std::string& text) const;

 private:
  void read_loop();

  std::string fifo_, copy_;
  double epoch_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  mutable std::mutex mutex_;
  mutable std::condition_variable arrived_;
  std::vector<std::pair<double, std::string>> lines_;
  std::thread reader_;
};

/// The sampler's newest verdict on the two suppression layers.
class LatestSample {
 public:
  void publish(double start, bool ok, Layers layers);
  /// The layers of the first successful sample that began after `t`; nullopt after `timeout`.
  std::optional<Layers> newer_than(double t, double timeout) const;

 private:
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  double start_ = 0;
  bool ok_ = false;
  Layers layers_;
};

/// Threads that stop when told or destroyed (joined before what they use goes away).
class Workers {
 public:
  ~Workers() { stop_and_join(); }
  template <class F>
  void start(F body) {
    threads_.emplace_back(std::move(body));
  }
  void stop_and_join() {
    stop = true;
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
    threads_.clear();
  }
  std::atomic<bool> stop{false};

 private:
  std::vector<std::thread> threads_;
};

}  // namespace arpguard::chaos
