#include "tests/chaos/records.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "tests/chaos/net_clients.h"

namespace arpguard::chaos {

void Records::drift(DriftRecord r) {
  std::lock_guard lock(mutex_);
  drifts_.push_back(std::move(r));
}
void Records::ready(Probe p) {
  std::lock_guard lock(mutex_);
  ready_.push_back(std::move(p));
}
void Records::agent(Probe p) {
  std::lock_guard lock(mutex_);
  agent_.push_back(std::move(p));
}
void Records::reload(ReloadEvent r) {
  std::lock_guard lock(mutex_);
  reloads_.push_back(r);
}
void Records::drain(DrainWindow w) {
  std::lock_guard lock(mutex_);
  drains_.push_back(w);
}
void Records::sample(KernelSample s) {
  std::lock_guard lock(mutex_);
  samples_.push_back(std::move(s));
}
void Records::count(const std::string& group, const std::string& what) {
  std::lock_guard lock(mutex_);
  ++counts_[group][what];
}
void Records::anomaly(const std::string& text, bool fails) {
  std::lock_guard lock(mutex_);
  anomalies_.emplace_back(text, fails);
}
std::vector<DriftRecord> Records::drifts() const {
  std::lock_guard lock(mutex_);
  return drifts_;
}
std::vector<Probe> Records::ready_probes() const {
  std::lock_guard lock(mutex_);
  return ready_;
}
std::vector<Probe> Records::agent_probes() const {
  std::lock_guard lock(mutex_);
  return agent_;
}
std::vector<ReloadEvent> Records::reloads() const {
  std::lock_guard lock(mutex_);
  return reloads_;
}
std::vector<DrainWindow> Records::drains() const {
  std::lock_guard lock(mutex_);
  return drains_;
}
std::vector<KernelSample> Records::samples() const {
  std::lock_guard lock(mutex_);
  return samples_;
}
std::map<std::string, std::map<std::string, int>> Records::counts() const {
  std::lock_guard lock(mutex_);
  return counts_;
}
std::vector<std::pair<std::string, bool>> Records::anomalies() const {
  std::lock_guard lock(mutex_);
  return anomalies_;
}

DaemonLog::DaemonLog(std::string fifo, std::string copy, double epoch)
    : fifo_(std::move(fifo)), copy_(std::move(copy)), epoch_(epoch) {
  if (::mkfifo(fifo_.c_str(), 0600) != 0) throw std::runtime_error("mkfifo " + fifo_ + ": " + std::strerror(errno));
  // Read and write: opening never blocks, and the reader never sees EOF between writers.
  fd_ = ::open(fifo_.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd_ < 0) throw std::runtime_error("open " + fifo_ + ": " + std::strerror(errno));
  reader_ = std::thread([this] { read_loop(); });
}

DaemonLog::~DaemonLog() {
  stop_ = true;
  if (reader_.joinable()) reader_.join();
  if (fd_ >= 0) ::close(fd_);
}

void DaemonLog::read_loop() {
  FILE* out = std::fopen(copy_.c_str(), "w");
  std::string partial;
  char buffer[8192];
  for (;;) {
    pollfd p{fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, 50);
    ssize_t n = 0;
    if (ready == 1) n = ::read(fd_, buffer, sizeof(buffer));
    if (n > 0) {
      const double now = wall_now();
      partial.append(buffer, static_cast<size_t>(n));
      std::lock_guard lock(mutex_);
      for (size_t nl; (nl = partial.find('\n')) != std::string::npos;) {
        std::string line = partial.substr(0, nl);
        partial.erase(0, nl + 1);
        if (out) std::fprintf(out, "+%.3f %s\n", now - epoch_, line.c_str());
        lines_.emplace_back(now, std::move(line));
      }
      if (out) std::fflush(out);
      arrived_.notify_all();
      continue;
    }
    if (stop_) break;
  }
  if (out) std::fclose(out);
}

std::optional<std::pair<double, std::string>> DaemonLog::wait_for(const std::string& text, double after,
                                                                  double timeout) const {
  const double deadline = wall_now() + timeout;
  std::unique_lock lock(mutex_);
  for (;;) {
    for (const auto& entry : lines_) {
      if (entry.first > after && entry.second.find(text) != std::string::npos) return entry;
    }
    const double left = deadline - wall_now();
    if (left <= 0) return std::nullopt;
    arrived_.wait_for(lock, std::chrono::duration<double>(std::min(left, 0.05)));
  }
}

std::vector<std::pair<double, std::string>> DaemonLog::lines() const {
  std::lock_guard lock(mutex_);
  return lines_;
}

size_t DaemonLog::count_containing(const std::string& text) const {
  std::lock_guard lock(mutex_);
  size_t n = 0;
  for (const auto& entry : lines_) n += entry.second.find(text) != std::string::npos;
  return n;
}

void LatestSample::publish(double start, bool ok, Layers layers) {
  std::lock_guard lock(mutex_);
  start_ = start;
  ok_ = ok;
  layers_ = layers;
  changed_.notify_all();
}

std::optional<Layers> LatestSample::newer_than(double t, double timeout) const {
  std::unique_lock lock(mutex_);
  const bool fresh = changed_.wait_for(lock, std::chrono::duration<double>(timeout), [&] { return start_ > t && ok_; });
  if (!fresh) return std::nullopt;
  return layers_;
}

}  // namespace arpguard::chaos
