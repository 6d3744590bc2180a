// Is this real server safe to serve each VIP? Pure: computed from the cache
// of kernel state, the operator's drain, failing and contested resources and
// service checks. Readiness fails closed (I6): "ready" needs kernel state no
// older than a bound, and "not ready" always carries typed, named reasons.
//
// A bound VIP is ready when it is configured on its device with the
// attributes its protection needs, nowhere else, every layer of its method
// holds it (sysctls, its nft set), its service check passes and nothing
// about it fails or is fought over. A redirected VIP is ready when its NAT
// rules hold it and it is configured nowhere. Per-VIP answers cost O(log n).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/desired.h"
#include "core/kernel_api.h"
#include "core/model.h"
#include "core/plan.h"
#include "core/reason.h"
#include "core/wire_watch.h"

namespace arpguard {

struct CheckResult {
  bool ok = false;
  std::string detail;  ///< why it failed: "tcp:80 Connection refused"
};

/// Everything readiness needs besides the kernel cache.
struct ReadinessInputs {
  bool draining = false;
  bool fresh = false;                            ///< kernel state younger than the bound
  std::optional<std::string> observe_error;      ///< why the kernel cannot be read
  const std::map<Resource, int>* contested = nullptr;          ///< resource -> repairs in the window
  const std::map<Resource, std::string>* failing = nullptr;    ///< resource -> why its repair fails
  const std::map<IpPrefix, CheckResult>* checks = nullptr;     ///< per VIP with a check, its last result
  std::optional<ConntrackFill> conntrack;        ///< last read, when redirected VIPs need it
  int conntrack_warn_percent = 100;              ///< warn at or above this fill
  const WireWatch* watch = nullptr;              ///< claims and leaks heard on the wire
  double now = 0;                                ///< for the watch's holds
  const std::vector<Reason>* flux = nullptr;     ///< host addresses answered by no NIC or a foreign one (warnings)
};

/// Server-wide reasons: freshness, drain, sysctls, tables, failing and contested
/// resources that are not one VIP, no VIPs. Warnings included. O(interfaces + rules).
std::vector<Reason> server_reasons(const Desired& desired, const Observed& observed, const ReadinessInputs& inputs);

/// Warnings for addresses arpguard's sets still suppress though no VIP of the
/// policy holds them, because they are still configured here (I8: a VIP
/// whose ownership was lost keeps its suppression). O(elements): for status.
/// The first `named` are named; one more line counts the rest.
std::vector<Reason> orphan_reasons(const Desired& desired, const Observed& observed, size_t named = 10);

/// The reasons of the bound VIP `vip` alone. O(log n).
std::vector<Reason> vip_reasons(const Desired& desired, const Observed& observed, const ReadinessInputs& inputs,
                                const DesiredVip& vip);

/// The reasons of the redirected VIP `prefix` alone. O(log n).
std::vector<Reason> redirect_reasons(const Desired& desired, const Observed& observed, const ReadinessInputs& inputs,
                                     const IpPrefix& prefix);

/// True when `reasons` hold nothing that makes a VIP (or the server) not ready.
bool all_warnings(const std::vector<Reason>& reasons);

}  // namespace arpguard
