#include "core/desired.h"

#include <fmt/format.h>
#include <fnmatch.h>

#include <algorithm>

namespace arpguard {

const Link* Observed::link_named(const std::string& name) const {
  for (const Link& link : links) {
    if (link.name == name) return &link;
  }
  return nullptr;
}

const Link* Observed::link_at(int index) const {
  for (const Link& link : links) {
    if (link.index == index) return &link;
  }
  return nullptr;
}

bool is_arp_facing(const Link& link, const std::vector<std::string>& patterns) {
  if (link.loopback || link.noarp) return false;
  return std::any_of(patterns.begin(), patterns.end(), [&](const std::string& pattern) {
    return fnmatch(pattern.c_str(), link.name.c_str(), 0) == 0;
  });
}

bool arp_ignore_protects(int value) { return value == 1 || value == 2 || value == 3 || value == 8; }

int effective_sysctl(const SysctlValues& values, const std::string& interface, const std::string& name) {
  auto value_of = [&](const std::string& scope) {
    auto it = values.find(SysctlKey{scope, name});
    return it == values.end() ? 0 : it->second;
  };
  const int all = value_of("all");
  const int own = value_of(interface);
  if (name == kArpFilter) return (all != 0 || own != 0) ? 1 : 0;
  return std::max(all, own);
}

std::vector<Diagnostic> check_against_kernel(const Policy& policy, const Observed& observed) {
  std::vector<Diagnostic> errors;
  for (const VipPolicy& vip : policy.vips) {
    for (const Address& address : observed.addresses) {
      // A /32 of the VIP elsewhere is a misplaced VIP, repaired by Diff; a VIP inside a
      // wider address is that interface's own address, and a policy error.
      if (address.prefix.address != vip.prefix.address || address.prefix.length == 32) continue;
      const Link* link = observed.link_at(address.link_index);
      errors.push_back({vip.where, fmt::format("vip.address: {} is the own address of {} ({}), not a VIP",
                                               vip.prefix.address.str(), link ? link->name : "?",
                                               address.prefix.str())});
    }
  }
  return errors;
}

namespace {

// The interface's primary IPv4: its first non-secondary global address that is not a VIP.
std::optional<Ipv4> primary_ipv4(const Observed& observed, const Link& link, const Policy& policy) {
  for (const Address& address : observed.addresses) {
    if (address.link_index != link.index || address.secondary || address.scope != kScopeGlobal) continue;
    const bool is_vip = std::any_of(policy.vips.begin(), policy.vips.end(), [&](const VipPolicy& vip) {
      return vip.prefix.address == address.prefix.address;
    });
    if (!is_vip) return address.prefix.address;
  }
  return std::nullopt;
}

void add_sysctls(const Policy& policy, const Observed& observed, Desired& desired) {
  const ArpPolicy& arp = policy.arp;
  auto want = [&](const std::string& scope) {
    desired.sysctls.push_back({SysctlKey{scope, kArpIgnore}, arp.arp_ignore});
    desired.sysctls.push_back({SysctlKey{scope, kArpAnnounce}, arp.arp_announce});
    if (arp.arp_filter) desired.sysctls.push_back({SysctlKey{scope, kArpFilter}, 1});
  };
  if (arp.all_interfaces()) {
    want("all");
    // conf/all cannot lower an interface's own arp_ignore: one set to a reserved
    // value (4-7 answer every request) would win the max() and expose the VIPs.
    for (const std::string& name : desired.arp_facing) {
      auto it = observed.sysctls.find(SysctlKey{name, kArpIgnore});
      if (it != observed.sysctls.end() && !arp_ignore_protects(std::max(it->second, arp.arp_ignore))) {
        desired.sysctls.push_back({SysctlKey{name, kArpIgnore}, arp.arp_ignore});
      }
    }
  } else {
    for (const std::string& name : desired.arp_facing) want(name);
  }
}

}  // namespace

Desired make_desired(const Policy& policy, const Observed& observed, bool daemon) {
  Desired desired;
  desired.method = policy.arp.method;
  desired.ownership = !policy.agent.own_nft_table ? TableOwnership::kPlain
                      : daemon                    ? TableOwnership::kHold
                                                  : TableOwnership::kLeaveOrphan;
  desired.arp_ignore = policy.arp.arp_ignore;
  desired.arp_announce = policy.arp.arp_announce;
  desired.arp_filter = policy.arp.arp_filter;
  // arp_ignore=3 still answers for global-scope addresses: the VIPs must be scope host.
  desired.vip_scope = policy.arp.arp_ignore == 3 ? kScopeHost : kScopeGlobal;

  for (const Link& link : observed.links) {
    if (is_arp_facing(link, policy.arp.interfaces)) desired.arp_facing.push_back(link.name);
  }
  std::sort(desired.arp_facing.begin(), desired.arp_facing.end());

  for (const VipPolicy& vip : policy.vips) {
    desired.vips.push_back({vip.prefix, vip.device});
    if (!observed.link_named(vip.device)) {
      desired.problems.push_back(fmt::format("vip {}: device {} does not exist", vip.prefix.str(), vip.device));
    }
  }
  std::sort(desired.vips.begin(), desired.vips.end());

  // No VIPs, nothing to hide: a policy without VIPs changes nothing (the
  // packaged default), and a table left from earlier VIPs goes after them.
  if (policy.vips.empty()) return desired;

  if (uses_sysctls(policy.arp.method)) add_sysctls(policy, observed, desired);

  if (uses_nftables(policy.arp.method)) {
    rules::ArpTableSpec spec;
    for (const VipOnDevice& vip : desired.vips) spec.vips.push_back(Ipv4Range::of(vip.prefix));
    spec.rules.push_back(rules::ArpRule::input_drop());
    for (const std::string& name : desired.arp_facing) {
      std::optional<Ipv4> real_ip;
      if (auto it = policy.arp.real_ip.find(name); it != policy.arp.real_ip.end()) {
        real_ip = it->second;
      } else {
        real_ip = primary_ipv4(observed, *observed.link_named(name), policy);
      }
      spec.rules.push_back(real_ip ? rules::ArpRule::output_mangle(name, *real_ip)
                                   : rules::ArpRule::output_drop(name));
    }
    desired.nft = std::move(spec);
  }
  return desired;
}

}  // namespace arpguard
