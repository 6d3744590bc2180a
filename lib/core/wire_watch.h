// The wire watch's memory: who claimed which VIP on the segment, and when,
// from the frames the log rules hand over (core/wire.h), and which VIPs to
// ask the segment about. Pure: no clock (times are given), no sockets.
//
// A claim comes from
//   this host     one of the host's own MACs: the VIP was revealed (a leak),
//   the director  readiness.director_macs, or, without that list, the MAC
//                 that alone claimed VIPs for kLearnWindow after the first
//                 claim (learned, and shown as such); when a second MAC claims
//                 within that window nobody is taken for the director,
//   another host  anyone else: a warning, named with its MAC.
// Memory is bounded: at most kMaxClaims (VIP, MAC) pairs, the least recently
// seen forgotten first; probes are rate-limited per VIP and in all.
// Not thread-safe: one owner.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/ip.h"
#include "core/wire.h"

namespace arpguard {

enum class ClaimOrigin : uint8_t { kThisHost, kDirector, kOther };
std::string_view to_string(ClaimOrigin origin);  // "this_host", "director", "other"

/// One (VIP, MAC) pair seen claiming on the wire.
struct Claim {
  IpPrefix vip;
  MacAddress mac;
  ClaimOrigin origin = ClaimOrigin::kOther;
  int ifindex = 0;
  FrameKind last_kind = FrameKind::kArpReply;
  uint64_t frames = 0;
  double first_seen = 0;  ///< monotonic
  double last_seen = 0;
};

/// Ask the segment who holds `target`, out of interface `ifindex`.
struct ProbeRequest {
  int ifindex = 0;
  IpAddress target;

  bool operator==(const ProbeRequest&) const = default;
};

class WireWatch {
 public:
  static constexpr size_t kMaxClaims = 1024;
  /// How long a claim by another host stays a warning after it was last seen.
  static constexpr double kClaimHold = 300;
  /// How long a VIP stays not ready after this host last revealed it.
  static constexpr double kLeakHold = 10;
  /// A VIP is asked about at most once per this many seconds.
  static constexpr double kProbeCooldown = 1;
  /// Probes sent in all, per second (a token bucket of this size).
  static constexpr double kProbesPerSecond = 50;
  /// Without readiness.director_macs: how long the first MAC heard must be the
  /// only one claiming VIPs to be taken for the director.
  static constexpr double kLearnWindow = 2;

  /// `director_macs`: the policy's, normalised; empty: learn the director.
  explicit WireWatch(std::vector<MacAddress> director_macs = {});

  /// What one batch of frames changed.
  struct Seen {
    std::vector<Claim> new_claimants;   ///< (VIP, MAC) pairs not seen before: one log line each
    std::vector<IpPrefix> leaked;       ///< VIPs this host revealed in this batch
    std::vector<IpPrefix> changed;      ///< VIPs whose readiness may have changed
    std::vector<ProbeRequest> probes;   ///< someone asked for a VIP: hear who answers
    uint64_t ignored = 0;               ///< frames for no VIP of the policy
    /// Set when learning the director failed in this batch: these MACs claimed
    /// VIPs within kLearnWindow of each other; all of them are "other" now.
    std::vector<MacAddress> ambiguous;
  };

  /// `vip_of`: the VIP holding an address, if any. `own_macs`: this host's.
  template <class VipOf>
  Seen observe(const std::vector<WireFrame>& frames, const std::set<MacAddress>& own_macs, VipOf&& vip_of, double now);

  /// Up to `budget` probes of the periodic sweep, from `candidates` (VIP
  /// addresses to ask about, with the interface), resuming where it stopped.
  std::vector<ProbeRequest> sweep(const std::vector<ProbeRequest>& candidates, size_t budget, double now);

  /// True while `vip` was revealed by this host within kLeakHold of `now`.
  bool leaked(const IpPrefix& vip, double now) const;
  /// The other hosts claiming `vip` within kClaimHold of `now`.
  std::vector<const Claim*> others_claiming(const IpPrefix& vip, double now) const;
  /// VIPs whose leak or claim may have expired by `now` (readiness to look at again).
  std::vector<IpPrefix> expired(double now);

  const std::map<std::pair<IpPrefix, MacAddress>, Claim>& claims() const { return claims_; }
  const std::set<MacAddress>& learned_directors() const { return learned_; }
  uint64_t leaks_total() const { return leaks_total_; }
  uint64_t probes_sent() const { return probes_sent_; }
  uint64_t frames_total() const { return frames_total_; }
  uint64_t frames_lost() const { return frames_lost_; }
  void count_lost(uint64_t n) { frames_lost_ += n; }

 private:
  ClaimOrigin classify(const MacAddress& mac, const std::set<MacAddress>& own_macs, double now, Seen& seen);
  bool take_token(double now);
  void remember(Claim claim);

  std::vector<MacAddress> directors_;
  std::set<MacAddress> learned_;  ///< the learned director (tentative until kLearnWindow passed)
  enum class Learning : uint8_t { kNothingHeard, kTentative, kLearned, kAmbiguous };
  Learning learning_ = Learning::kNothingHeard;
  double tentative_since_ = 0;
  std::map<std::pair<IpPrefix, MacAddress>, Claim> claims_;
  std::map<IpPrefix, double> leaked_at_;
  std::map<IpAddress, double> probed_at_;  ///< bounded: entries older than the cooldown are dropped
  double tokens_ = kProbesPerSecond;
  double tokens_at_ = 0;
  size_t sweep_next_ = 0;
  uint64_t leaks_total_ = 0;
  uint64_t probes_sent_ = 0;
  uint64_t frames_total_ = 0;
  uint64_t frames_lost_ = 0;
};

template <class VipOf>
WireWatch::Seen WireWatch::observe(const std::vector<WireFrame>& frames, const std::set<MacAddress>& own_macs,
                                   VipOf&& vip_of, double now) {
  Seen seen;
  for (const WireFrame& frame : frames) {
    ++frames_total_;
    const std::optional<IpPrefix> vip = vip_of(frame.vip);
    if (!vip) {
      ++seen.ignored;
      continue;
    }
    if (frame.rule == WatchRule::kAsk) {
      // Someone resolves a VIP: whoever answers them answers us too, and only
      // an answer to us can be heard (theirs goes to them alone).
      if (own_macs.count(frame.mac)) continue;
      auto last = probed_at_.find(frame.vip);
      if (last != probed_at_.end() && now - last->second < kProbeCooldown) continue;
      if (!take_token(now)) continue;
      probed_at_[frame.vip] = now;
      ++probes_sent_;
      seen.probes.push_back({frame.ifindex, frame.vip});
      continue;
    }
    const ClaimOrigin origin = frame.rule == WatchRule::kLeak ? ClaimOrigin::kThisHost : classify(frame.mac, own_macs, now, seen);
    if (origin == ClaimOrigin::kThisHost) {
      ++leaks_total_;
      leaked_at_[*vip] = now;
      seen.leaked.push_back(*vip);
    }
    const auto key = std::make_pair(*vip, frame.mac);
    auto it = claims_.find(key);
    if (it == claims_.end()) {
      Claim claim{*vip, frame.mac, origin, frame.ifindex, frame.kind, 1, now, now};
      seen.new_claimants.push_back(claim);
      remember(std::move(claim));
    } else {
      it->second.frames++;
      it->second.last_seen = now;
      it->second.last_kind = frame.kind;
      it->second.ifindex = frame.ifindex;
      it->second.origin = origin;
    }
    if (origin != ClaimOrigin::kDirector) seen.changed.push_back(*vip);
  }
  return seen;
}

}  // namespace arpguard
