#include "core/desired.h"

#include <fmt/format.h>
#include <fnmatch.h>

#include <algorithm>

#include "rules/tables.h"

namespace arpguard {

// ---- desired ----

const DesiredVip* DesiredVips::bound_containing(const IpAddress& address) const {
  auto it = std::upper_bound(bound.begin(), bound.end(), address,
                             [](const IpAddress& a, const DesiredVip& v) { return a < v.prefix.first(); });
  if (it == bound.begin()) return nullptr;
  --it;
  return it->prefix.contains(address) ? &*it : nullptr;
}

const DesiredVip* DesiredVips::bound_containing(const IpAddress& address, size_t& hint) const {
  // bound[hint] is the last VIP starting at or before the last address asked:
  // it still is one for this address when this one is not smaller.
  constexpr size_t kSteps = 4;
  if (hint < bound.size() && !(address < bound[hint].prefix.first())) {
    size_t i = hint;
    for (size_t step = 0; step < kSteps && i + 1 < bound.size() && !(address < bound[i + 1].prefix.first()); ++step) ++i;
    if (i + 1 == bound.size() || address < bound[i + 1].prefix.first()) {
      hint = i;
      return bound[i].prefix.contains(address) ? &bound[i] : nullptr;
    }
  }
  auto it = std::upper_bound(bound.begin(), bound.end(), address,
                             [](const IpAddress& a, const DesiredVip& v) { return a < v.prefix.first(); });
  if (it == bound.begin()) return nullptr;
  --it;
  hint = static_cast<size_t>(it - bound.begin());
  return it->prefix.contains(address) ? &*it : nullptr;
}

bool DesiredVips::is_redirected(const IpAddress& address) const {
  auto it = std::upper_bound(redirected.begin(), redirected.end(), address,
                             [](const IpAddress& a, const IpPrefix& p) { return a < p.first(); });
  return it != redirected.begin() && std::prev(it)->contains(address);
}

const nft::TableSpec* DesiredHost::table(const nft::TableId& id) const {
  for (const nft::TableSpec& t : tables) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

nft::TableSpec DesiredHost::reference_table(const nft::TableId& id) const {
  if (const nft::TableSpec* wanted = table(id)) return *wanted;
  if (id == rules::arp_table_id()) return rules::arp_table({}, arp_outputs, watch);
  if (id == rules::ndp_table_id()) return rules::ndp_table({}, watch);
  return rules::nat_table(id.family == nft::TableFamily::kIp ? Family::kV4 : Family::kV6, {}, {});
}

bool is_arp_facing(const Link& link, const std::vector<std::string>& patterns) {
  if (link.loopback || link.noarp) return false;
  // A name is itself first: Linux allows "x[1]" and "b\\", which as globs match other names or none.
  return std::any_of(patterns.begin(), patterns.end(), [&](const std::string& pattern) {
    return pattern == link.name || fnmatch(pattern.c_str(), link.name.c_str(), 0) == 0;
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

namespace {

void add_redirect_elements(const VipPolicy& vip, DesiredVips& out) {
  const nft::TableId table = rules::nat_table_id(vip.prefix.family());
  std::vector<nft::Element>& keep = out.elements[SetRef{table, std::string(rules::kKeepSet)}];
  std::vector<nft::Element>& to = out.elements[SetRef{table, std::string(rules::kToMap)}];
  const IpRange range = IpRange::of(vip.prefix);
  if (vip.ports.empty()) {
    keep.push_back({range, kProtoTcp, 0, 65535, 0});
    keep.push_back({range, kProtoUdp, 0, 65535, 0});
    return;
  }
  for (const PortMapping& port : vip.ports) {
    if (port.to) {
      to.push_back({range, port.protocol, port.first, port.last, *port.to});
    } else {
      keep.push_back({range, port.protocol, port.first, port.last, 0});
    }
  }
}

}  // namespace

DesiredVips make_desired_vips(const Policy& policy) {
  DesiredVips out;
  std::vector<IpRange> arp_ranges;
  std::vector<IpRange> ndp_ranges;
  // The wire watch also hears who claims the VIPs no suppression set holds.
  std::vector<IpRange> arp_watched;
  std::vector<IpRange> ndp_watched;
  out.bound.reserve(policy.vips.size());
  auto watch_only = [&](const IpPrefix& prefix) {
    if (!policy.watch.enabled) return;
    (prefix.family() == Family::kV4 ? arp_watched : ndp_watched).push_back(IpRange::of(prefix));
  };
  for (const VipPolicy& vip : policy.vips) {
    if (vip.method == Method::kRedirect) {
      out.redirected.push_back(vip.prefix);
      add_redirect_elements(vip, out);
      watch_only(vip.prefix);
      continue;
    }
    const bool v4 = vip.prefix.family() == Family::kV4;
    DesiredVip desired{vip.prefix, vip.kind, vip.device, vip.method, kScopeGlobal, false};
    if (vip.kind == VipKind::kAddress) {
      // arp_ignore=3 still answers for global-scope addresses: the sysctl layer needs scope host.
      if (v4 && uses_sysctls(vip.method) && policy.arp.arp_ignore == 3) desired.scope = kScopeHost;
      desired.deprecated = !v4;
    }
    out.bound.push_back(std::move(desired));
    out.any_ipv4 |= v4;
    out.ipv4_sysctls |= v4 && uses_sysctls(vip.method);
    if (uses_nftables(vip.method)) {
      (v4 ? arp_ranges : ndp_ranges).push_back(IpRange::of(vip.prefix));
    } else {
      watch_only(vip.prefix);
    }
  }
  auto put_vips = [&](const nft::TableId& table, std::string_view set, std::vector<IpRange> ranges) {
    if (ranges.empty()) return;
    std::vector<nft::Element>& elements = out.elements[SetRef{table, std::string(set)}];
    const std::vector<IpRange> merged = merge_ranges(std::move(ranges));
    elements.reserve(elements.size() + merged.size());
    for (const IpRange& range : merged) elements.push_back(rules::vip_element(range));
  };
  put_vips(rules::arp_table_id(), rules::kVipSet, std::move(arp_ranges));
  put_vips(rules::ndp_table_id(), rules::kVipSet, std::move(ndp_ranges));
  put_vips(rules::arp_table_id(), rules::kWatchedSet, std::move(arp_watched));
  put_vips(rules::ndp_table_id(), rules::kWatchedSet, std::move(ndp_watched));
  for (auto& [set, elements] : out.elements) std::sort(elements.begin(), elements.end());
  out.bound.shrink_to_fit();  // redirected VIPs were reserved for too
  return out;
}

// The interface's real IPv4 address, the sender its rewrite rule puts in
// place of a VIP: its own 192.0.2.1/24 over /32s others add and remove, which
// would rewrite the rule each time.
std::optional<IpAddress> primary_ipv4(const Observed& observed, const Link& link, const DesiredVips& vips) {
  auto on_link = observed.addresses_by_link.find(link.index);
  if (on_link == observed.addresses_by_link.end()) return std::nullopt;
  // Widest subnet first, then lowest: the first that qualifies. This runs on
  // every change of the host; the walk stops at the interface's own address.
  for (const AddressKey& key : on_link->second) {
    if (key.address.family != Family::kV4) break;
    const AddressInfo& info = observed.addresses.at(key);
    if (info.secondary() || info.scope != kScopeGlobal || vips.bound_containing(key.address)) continue;
    return key.address;
  }
  return std::nullopt;
}

bool senders_unmoved(const Policy& policy, const DesiredVips& vips, const Observed& observed, const DesiredHost& host) {
  if (host.source_routing) return false;
  return std::all_of(host.arp_outputs.begin(), host.arp_outputs.end(), [&](const rules::ArpOutput& output) {
    if (policy.arp.real_ip.count(output.interface)) return true;
    const Link* link = observed.link_named(output.interface);
    return link && primary_ipv4(observed, *link, vips) == output.real_ip;
  });
}

namespace {

void add_sysctls(const Policy& policy, const Observed& observed, DesiredHost& host) {
  const ArpPolicy& arp = policy.arp;
  auto want = [&](const std::string& scope) {
    if (host.uses_sysctls) {
      host.sysctls.push_back({SysctlKey{scope, kArpIgnore}, arp.arp_ignore});
      host.sysctls.push_back({SysctlKey{scope, kArpAnnounce}, arp.arp_announce});
    }
    if (arp.arp_filter) host.sysctls.push_back({SysctlKey{scope, kArpFilter}, 1});
  };
  if (arp.all_interfaces()) {
    want("all");
    // conf/all cannot lower an interface's own arp_ignore: one set to a reserved
    // value (4-7 answer every request) would win the max() and expose the VIPs.
    for (const std::string& name : host.arp_facing) {
      auto it = observed.sysctls.find(SysctlKey{name, kArpIgnore});
      if (host.uses_sysctls && it != observed.sysctls.end() && !arp_ignore_protects(std::max(it->second, arp.arp_ignore))) {
        host.sysctls.push_back({SysctlKey{name, kArpIgnore}, arp.arp_ignore});
      }
    }
  } else {
    for (const std::string& name : host.arp_facing) want(name);
  }
}

// Each ARP-facing interface's own table routes its subnets out of it, from its
// address; a rule per address sends what leaves from that address there. The
// route arp_filter looks up back to an asker then leaves through the NIC that
// holds the address, so that NIC answers (core/flux.h).
void add_source_routing(const Policy& policy, const Observed& observed, const DesiredVips& vips, DesiredHost& host) {
  host.source_routing = true;
  host.source_table_base = policy.arp.source_routing_table;
  for (const std::string& name : host.arp_facing) {
    const Link* link = observed.link_named(name);
    if (!link) continue;
    auto on_link = observed.addresses_by_link.find(link->index);
    if (on_link == observed.addresses_by_link.end()) continue;
    const uint32_t table = policy.arp.source_routing_table + static_cast<uint32_t>(link->index);
    for (const AddressKey& key : on_link->second) {
      if (key.address.family != Family::kV4 || vips.bound_containing(key.address)) continue;
      const AddressInfo& info = observed.addresses.at(key);
      if (info.scope != kScopeGlobal) continue;
      const IpPrefix subnet{IpPrefix{key.address, key.length}.first(), key.length};
      // One route per subnet, from its first (primary) address.
      host.source_routes.emplace(PolicyRouteKey{table, subnet}, PolicyRouteInfo{link->index, kRouteProtoArpguard, key.address});
      host.source_rules.emplace(RoutingRuleKey{policy.arp.source_routing_priority, IpPrefix::host(key.address), table},
                                RoutingRuleInfo{kRouteProtoArpguard});
    }
  }
}

bool has_elements(const DesiredVips& vips, const nft::TableId& table) {
  return std::any_of(vips.elements.begin(), vips.elements.end(),
                     [&](const auto& entry) { return entry.first.table == table && !entry.second.empty(); });
}

}  // namespace

DesiredHost make_desired_host(const Policy& policy, const DesiredVips& vips, const Observed& observed, bool daemon) {
  DesiredHost host;
  host.ownership = !policy.agent.own_nft_table ? TableOwnership::kPlain
                   : daemon                    ? TableOwnership::kHold
                                               : TableOwnership::kLeaveOrphan;
  host.arp_announce = policy.arp.arp_announce;
  for (const auto& [index, link] : observed.links) {
    if (is_arp_facing(link, policy.arp.interfaces)) host.arp_facing.push_back(link.name);
  }
  std::sort(host.arp_facing.begin(), host.arp_facing.end());

  // No IPv4 VIP relying on sysctls, nothing for them to hide: a policy without
  // VIPs changes nothing (the packaged default).
  host.uses_sysctls = vips.ipv4_sysctls;
  // arp_filter is about the host's own addresses, not the VIPs: asked for, it
  // is set whatever the method (with method "nftables" too), once there are VIPs.
  if (host.uses_sysctls || (policy.arp.arp_filter && vips.any_ipv4)) add_sysctls(policy, observed, host);
  if (policy.watch.enabled) host.watch = rules::Watch{policy.watch.log_group};

  for (const std::string& name : host.arp_facing) {
    std::optional<IpAddress> real_ip;
    if (auto it = policy.arp.real_ip.find(name); it != policy.arp.real_ip.end()) {
      real_ip = it->second;
    } else {
      real_ip = primary_ipv4(observed, *observed.link_named(name), vips);
    }
    host.arp_outputs.push_back({name, real_ip});
  }
  if (policy.arp.source_routing && !vips.bound.empty()) add_source_routing(policy, observed, vips, host);
  if (has_elements(vips, rules::arp_table_id())) host.tables.push_back(rules::arp_table({}, host.arp_outputs, host.watch));
  if (has_elements(vips, rules::ndp_table_id())) host.tables.push_back(rules::ndp_table({}, host.watch));
  for (Family family : {Family::kV4, Family::kV6}) {
    if (has_elements(vips, rules::nat_table_id(family))) host.tables.push_back(rules::nat_table(family, {}, {}));
  }
  return host;
}

std::vector<Diagnostic> check_against_kernel(const Policy& policy, const Observed& observed) {
  std::vector<Diagnostic> errors;
  for (const auto& [key, info] : observed.addresses) {
    const VipPolicy* vip = policy.vip_containing(key.address);
    if (!vip) continue;
    const Link* link = observed.link_at(key.link_index);
    const std::string device = link ? link->name : fmt::format("ifindex {}", key.link_index);
    if (vip->kind == VipKind::kAddress) {
      // A host-length copy elsewhere is a misplaced VIP, repaired by Diff; a VIP
      // inside a wider address is that interface's own address.
      if (key.prefix().is_host()) continue;
      errors.push_back({policy.file, vip->where,
                        fmt::format("vip.address: {} is the own address of {} ({}), not a VIP",
                                    vip->prefix.address.str(), device, key.prefix().str())});
    } else if (link && !link->loopback) {
      errors.push_back({policy.file, vip->where,
                        fmt::format("vip.address: {} contains {}, an address of {}", vip->prefix.str(),
                                    key.address.str(), device)});
    }
  }
  // A real_ip must be the interface's own: any other address would be claimed
  // with this host's MAC by every ARP it sends there.
  for (const auto& [name, ip] : policy.arp.real_ip) {
    const Link* link = observed.link_named(name);
    if (!link) continue;  // it may come later; checked again then (reload)
    bool own = false;
    for (const auto& [key, info] : observed.addresses_of(ip)) own = own || key.link_index == link->index;
    if (!own) {
      auto where = policy.arp.real_ip_where.find(name);
      errors.push_back({policy.file, where != policy.arp.real_ip_where.end() ? where->second : SourceLocation{},
                        fmt::format("arp.real_ip.{}: {} is not an address of {}", name, ip.str(), name)});
    }
  }
  return errors;
}

}  // namespace arpguard
