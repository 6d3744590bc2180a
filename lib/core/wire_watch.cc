#include "core/wire_watch.h"

#include <algorithm>

namespace arpguard {

std::string_view to_string(ClaimOrigin origin) {
  switch (origin) {
    case ClaimOrigin::kThisHost: return "this_host";
    case ClaimOrigin::kDirector: return "director";
    case ClaimOrigin::kOther: return "other";
  }
  return "other";
}

WireWatch::WireWatch(std::vector<MacAddress> director_macs) : directors_(std::move(director_macs)) {}

ClaimOrigin WireWatch::classify(const MacAddress& mac, const std::set<MacAddress>& own_macs, double now, Seen& seen) {
  if (own_macs.count(mac)) return ClaimOrigin::kThisHost;
  if (!directors_.empty()) {
    return std::find(directors_.begin(), directors_.end(), mac) != directors_.end() ? ClaimOrigin::kDirector
                                                                                     : ClaimOrigin::kOther;
  }
  switch (learning_) {
    case Learning::kNothingHeard:
      learning_ = Learning::kTentative;
      tentative_since_ = now;
      learned_.insert(mac);
      return ClaimOrigin::kDirector;
    case Learning::kTentative:
      if (learned_.count(mac)) return ClaimOrigin::kDirector;
      if (now - tentative_since_ >= kLearnWindow) {
        learning_ = Learning::kLearned;
        return ClaimOrigin::kOther;
      }
      // Two MACs claim VIPs from the start: which is the director cannot be told.
      learning_ = Learning::kAmbiguous;
      seen.ambiguous.assign(learned_.begin(), learned_.end());
      seen.ambiguous.push_back(mac);
      for (auto& [key, claim] : claims_) {
        if (claim.origin != ClaimOrigin::kDirector) continue;
        claim.origin = ClaimOrigin::kOther;
        seen.changed.push_back(claim.vip);
      }
      learned_.clear();
      return ClaimOrigin::kOther;
    case Learning::kLearned: return learned_.count(mac) ? ClaimOrigin::kDirector : ClaimOrigin::kOther;
    case Learning::kAmbiguous: return ClaimOrigin::kOther;
  }
  return ClaimOrigin::kOther;
}

bool WireWatch::take_token(double now) {
  tokens_ = std::min(kProbesPerSecond, tokens_ + (now - tokens_at_) * kProbesPerSecond);
  tokens_at_ = now;
  if (tokens_ < 1) return false;
  tokens_ -= 1;
  // Forget cooldowns that are over, so the map holds at most a second's worth.
  if (probed_at_.size() > 4 * kProbesPerSecond) {
    std::erase_if(probed_at_, [&](const auto& entry) { return now - entry.second >= kProbeCooldown; });
  }
  return true;
}

void WireWatch::remember(Claim claim) {
  if (claims_.size() >= kMaxClaims) {
    auto oldest = std::min_element(claims_.begin(), claims_.end(), [](const auto& a, const auto& b) {
      return a.second.last_seen < b.second.last_seen;
    });
    claims_.erase(oldest);
  }
  const auto key = std::make_pair(claim.vip, claim.mac);
  claims_.emplace(key, std::move(claim));
}

std::vector<ProbeRequest> WireWatch::sweep(const std::vector<ProbeRequest>& candidates, size_t budget, double now) {
  std::vector<ProbeRequest> out;
  if (candidates.empty()) return out;
  for (size_t tried = 0; tried < candidates.size() && out.size() < budget; ++tried) {
    const ProbeRequest& next = candidates[sweep_next_ % candidates.size()];
    auto last = probed_at_.find(next.target);
    if (last != probed_at_.end() && now - last->second < kProbeCooldown) {
      ++sweep_next_;
      continue;
    }
    if (!take_token(now)) break;
    ++sweep_next_;
    probed_at_[next.target] = now;
    ++probes_sent_;
    out.push_back(next);
  }
  sweep_next_ %= candidates.size();
  return out;
}

bool WireWatch::leaked(const IpPrefix& vip, double now) const {
  auto it = leaked_at_.find(vip);
  return it != leaked_at_.end() && now - it->second < kLeakHold;
}

std::vector<const Claim*> WireWatch::others_claiming(const IpPrefix& vip, double now) const {
  std::vector<const Claim*> out;
  for (auto it = claims_.lower_bound({vip, MacAddress{}}); it != claims_.end() && it->first.first == vip; ++it) {
    if (it->second.origin == ClaimOrigin::kOther && now - it->second.last_seen < kClaimHold) out.push_back(&it->second);
  }
  return out;
}

std::vector<IpPrefix> WireWatch::expired(double now) {
  std::vector<IpPrefix> out;
  for (auto it = leaked_at_.begin(); it != leaked_at_.end();) {
    if (now - it->second >= kLeakHold) {
      out.push_back(it->first);
      it = leaked_at_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [key, claim] : claims_) {
    if (claim.origin == ClaimOrigin::kOther && now - claim.last_seen >= kClaimHold &&
        now - claim.last_seen < kClaimHold + 60) {
      out.push_back(claim.vip);
    }
  }
  return out;
}

}  // namespace arpguard
