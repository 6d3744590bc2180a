#include "tests/chaos/report.h"

#include <algorithm>
#include <map>

namespace arpguard::chaos {

namespace {

struct Entry {
  double time;
  std::string text;
};

std::vector<Entry> entries(const RunView& run, double from, double to) {
  std::vector<Entry> out;
  for (const DriftRecord& d : run.drifts) {
    if (d.end < from || d.start > to) continue;
    std::string text = "drift   " + d.kind + ": " + d.command + " (" + std::to_string(static_cast<int>((d.end - d.start) * 1000)) +
                       " ms, exit " + std::to_string(d.exit_code) + ")";
    if (!d.error.empty()) text += " [" + d.error + "]";
    out.push_back({d.start, text});
  }
  for (const auto& [time, line] : run.daemon_log) {
    if (time >= from && time <= to) out.push_back({time, "daemon  " + line});
  }
  // Kernel verdicts and readiness answers: only where they change.
  std::string previous;
  for (const KernelSample& s : run.samples) {
    if (s.end < from || s.start > to) continue;
    const std::string text = s.ok ? describe(run, s) : "unreadable: " + s.error;
    if (text != previous) out.push_back({s.start, "kernel  " + text});
    previous = text;
  }
  for (const auto* probes : {&run.ready, &run.agent}) {
    previous.clear();
    const std::string what = probes == &run.ready ? "/ready  " : "agent   ";
    for (const Probe& p : *probes) {
      if (p.received < from || p.sent > to) continue;
      std::string text = probes == &run.ready ? std::to_string(p.code) : p.text;
      if (!text.empty() && text.back() == '\n') text.pop_back();
      if (text != previous) {
        out.push_back({p.sent, what + text + " (answered in " + std::to_string(static_cast<int>((p.received - p.sent) * 1000)) +
                                   " ms)"});
      }
      previous = text;
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.time < b.time; });
  return out;
}

}  // namespace

std::string RunView::at(double t) const {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%+.3f", t - t0);
  return buffer;
}

std::string describe(const RunView& run, const KernelSample& sample) {
  std::string out;
  for (size_t p = 0; p < sample.verdicts.size(); ++p) {
    if (!out.empty()) out += " | ";
    out += run.policies[p].name + ": ";
    const Verdict& v = sample.verdicts[p];
    if (v.met) {
      out += "met";
      continue;
    }
    for (size_t i = 0; i < v.gaps.size(); ++i) {
      if (i == 4) {
        out += "; and " + std::to_string(v.gaps.size() - 4) + " more";
        break;
      }
      out += (i ? "; " : "") + std::string("[") + to_string(v.gaps[i].first) + "] " + v.gaps[i].second;
    }
  }
  return out;
}

void print_evidence(std::FILE* out, const RunView& run, double from, double to) {
  for (const Entry& e : entries(run, from, to)) std::fprintf(out, "      %s %s\n", run.at(e.time).c_str(), e.text.c_str());
}

void write_timeline(const std::string& path, const RunView& run) {
  std::FILE* out = std::fopen(path.c_str(), "w");
  if (!out) return;
  for (const Entry& e : entries(run, -1e18, 1e18)) std::fprintf(out, "%s %s\n", run.at(e.time).c_str(), e.text.c_str());
  std::fclose(out);
}

}  // namespace arpguard::chaos
