// Is this real server safe to serve each VIP? Pure: computed from what the
// kernel holds, the operator's drain, contested resources and service checks.
//
// A VIP is ready when it is present on its device, its suppression is verified
// on every ARP-facing interface for the policy's method, its service check (if
// any) passes, and the server is neither draining nor fighting over it.
// "Not ready" always carries named reasons: "vip 10.0.0.5/32 missing on lo".
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/model.h"

namespace arpguard {

struct CheckResult {
  bool ok = false;
  std::string detail;  ///< why it failed: "Connection refused"
};

struct ReadinessInputs {
  bool draining = false;
  std::map<std::string, int> contested;             ///< resource -> repairs in the window
  std::map<Ipv4Prefix, CheckResult> service_checks; ///< per VIP with a check, its last result
};

struct VipReadiness {
  VipOnDevice vip;
  bool present = false;
  bool ready = false;
  std::vector<std::string> reasons;
};

struct Readiness {
  bool ready = false;                 ///< every VIP ready (and at least one VIP)
  bool draining = false;
  std::vector<std::string> reasons;   ///< server-wide: suppression, draining, contested sysctls or table
  std::vector<VipReadiness> vips;

  /// Every reason, server-wide first: what `/ready` and `down #...` say.
  std::vector<std::string> all_reasons() const;
  const VipReadiness* vip(Ipv4 address) const;
};

Readiness assess_readiness(const Desired& desired, const Observed& observed, const ReadinessInputs& inputs);

}  // namespace arpguard
