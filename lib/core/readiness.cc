#include "core/readiness.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "core/diff.h"

namespace arpguard {

std::vector<std::string> Readiness::all_reasons() const {
  std::vector<std::string> out = reasons;
  for (const VipReadiness& v : vips) {
    for (const std::string& reason : v.reasons) {
      if (std::find(out.begin(), out.end(), reason) == out.end()) out.push_back(reason);
    }
  }
  return out;
}

const VipReadiness* Readiness::vip(Ipv4 address) const {
  for (const VipReadiness& v : vips) {
    if (v.vip.prefix.address == address) return &v;
  }
  return nullptr;
}

Readiness assess_readiness(const Desired& desired, const Observed& observed, const ReadinessInputs& inputs) {
  Readiness r;
  r.draining = inputs.draining;
  if (inputs.draining) r.reasons.push_back("draining (arpguard drain)");
  for (const std::string& reason : verify_suppression(desired, observed)) r.reasons.push_back(reason);
  for (const auto& [resource, repairs] : inputs.contested) {
    if (resource.rfind("vip ", 0) != 0) {
      r.reasons.push_back(fmt::format("{} is contested ({} repairs in the window)", resource, repairs));
    }
  }
  if (desired.vips.empty()) r.reasons.push_back("no VIPs in the policy");

  const std::set<Ipv4Range> in_set(observed.nft.vips.begin(), observed.nft.vips.end());
  for (const VipOnDevice& vip : desired.vips) {
    VipReadiness v;
    v.vip = vip;
    const Link* link = observed.link_named(vip.device);
    v.present = link && std::any_of(observed.addresses.begin(), observed.addresses.end(), [&](const Address& a) {
                  return a.link_index == link->index && a.prefix == vip.prefix;
                });
    if (!link) {
      v.reasons.push_back(fmt::format("vip {}: device {} does not exist", vip.prefix.str(), vip.device));
    } else if (!v.present) {
      v.reasons.push_back(fmt::format("vip {} missing on {}", vip.prefix.str(), vip.device));
    }
    if (uses_nftables(desired.method) && !in_set.count(Ipv4Range::of(vip.prefix))) {
      v.reasons.push_back(fmt::format("vip {} not in nft set @{}", vip.prefix.str(), rules::kSet));
    }
    if (auto it = inputs.contested.find("vip " + vip.prefix.str()); it != inputs.contested.end()) {
      v.reasons.push_back(fmt::format("vip {} is contested ({} repairs in the window)", vip.prefix.str(), it->second));
    }
    if (auto it = inputs.service_checks.find(vip.prefix); it != inputs.service_checks.end() && !it->second.ok) {
      v.reasons.push_back(fmt::format("service check on {} failed: {}", vip.prefix.address.str(), it->second.detail));
    }
    v.ready = v.reasons.empty() && r.reasons.empty();
    r.vips.push_back(std::move(v));
  }
  r.ready = r.reasons.empty() &&
            std::all_of(r.vips.begin(), r.vips.end(), [](const VipReadiness& v) { return v.ready; });
  return r;
}

}  // namespace arpguard
