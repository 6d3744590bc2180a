#include "core/readiness.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "core/diff.h"
#include "rules/tables.h"

namespace arpguard {

bool all_warnings(const std::vector<Reason>& reasons) {
  return std::all_of(reasons.begin(), reasons.end(), [](const Reason& r) { return r.severity == Severity::kWarning; });
}

std::vector<Reason> server_reasons(const Desired& desired, const Observed& observed, const ReadinessInputs& in) {
  std::vector<Reason> reasons;
  if (in.draining) reasons.push_back(not_ready(ReasonKind::kDraining, "draining (arpguard drain)"));
  if (in.observe_error) {
    reasons.push_back(not_ready(ReasonKind::kObserveFailed, "cannot read kernel state: " + *in.observe_error));
  } else if (!in.fresh) {
    reasons.push_back(not_ready(ReasonKind::kStale, "kernel state not read recently enough to vouch for"));
  }
  if (desired.vips.bound.empty() && desired.vips.redirected.empty()) {
    reasons.push_back(not_ready(ReasonKind::kNoVips, "no VIPs in the policy"));
  }
  for (Reason& r : sysctl_gaps(desired, observed.sysctls)) reasons.push_back(std::move(r));
  for (const nft::TableSpec& table : desired.host.tables) {
    for (Reason& r : table_gaps(desired, observed, table.id)) reasons.push_back(std::move(r));
  }
  // A VIP of the policy says so among its own reasons; any other (one being removed) is the server's.
  auto in_policy = [&](const Resource& resource) {
    if (resource.kind != Resource::Kind::kVip) return false;
    auto prefix = IpPrefix::parse(resource.name);
    if (!prefix) return false;
    const DesiredVip* vip = desired.vips.bound_containing(prefix->address);
    return (vip && vip->prefix == *prefix) || desired.vips.is_redirected(prefix->address);
  };
  if (in.failing) {
    for (const auto& [resource, why] : *in.failing) {
      if (in_policy(resource)) continue;
      reasons.push_back(not_ready(ReasonKind::kRepairFailing, fmt::format("cannot repair {}: {}", resource.str(), why)));
    }
  }
  if (in.contested) {
    for (const auto& [resource, repairs] : *in.contested) {
      if (in_policy(resource)) continue;
      reasons.push_back(not_ready(ReasonKind::kContested,
                                  fmt::format("{} is contested ({} repairs in the window)", resource.str(), repairs)));
    }
  }
  if (in.flux) reasons.insert(reasons.end(), in.flux->begin(), in.flux->end());
  // A full conntrack table drops new connections silently, redirected ones
  // included: a warning while there is still room, so the operator can act.
  if (!desired.vips.redirected.empty() && in.conntrack && in.conntrack->max > 0 &&
      in.conntrack->entries * 100 >= in.conntrack->max * static_cast<uint64_t>(in.conntrack_warn_percent)) {
    reasons.push_back(warning(ReasonKind::kConntrackHigh,
                              fmt::format("conntrack holds {} of {} entries ({}%, warning at {}%): when it is full, new "
                                          "connections to redirected VIPs are dropped (raise net.netfilter.nf_conntrack_max)",
                                          in.conntrack->entries, in.conntrack->max,
                                          in.conntrack->entries * 100 / in.conntrack->max, in.conntrack_warn_percent)));
  }
  if (in.watch) {
    // Said once for the server too, so that a summary that lists only VIPs
    // that are not ready still warns. At most kMaxClaims entries.
    std::set<MacAddress> others;
    std::set<IpPrefix> vips;
    for (const auto& [key, claim] : in.watch->claims()) {
      if (claim.origin != ClaimOrigin::kOther || in.now - claim.last_seen > WireWatch::kClaimHold) continue;
      others.insert(claim.mac);
      vips.insert(claim.vip);
    }
    if (!others.empty()) {
      // Named up to a few: a flood of forged claimants must not make the line endless.
      constexpr size_t kNamed = 4;
      std::vector<std::string> macs;
      for (const MacAddress& mac : others) {
        if (macs.size() == kNamed) break;
        macs.push_back(mac.str());
      }
      const std::string more = others.size() > kNamed ? fmt::format(" and {} more", others.size() - kNamed) : "";
      reasons.push_back(warning(ReasonKind::kVipClaimed,
                                fmt::format("{} VIP(s) claimed on the wire by another host: {}{}", vips.size(),
                                            fmt::join(macs, ", "), more)));
    }
  }
  return reasons;
}

namespace {

void resource_reasons(const ReadinessInputs& in, const IpPrefix& prefix, std::vector<Reason>& reasons) {
  const Resource resource{Resource::Kind::kVip, prefix.str()};
  if (in.failing) {
    if (auto it = in.failing->find(resource); it != in.failing->end()) {
      reasons.push_back(not_ready(ReasonKind::kRepairFailing, fmt::format("cannot repair {}: {}", resource.str(), it->second)));
    }
  }
  if (in.contested) {
    if (auto it = in.contested->find(resource); it != in.contested->end()) {
      reasons.push_back(not_ready(ReasonKind::kContested,
                                  fmt::format("{} is contested ({} repairs in the window)", resource.str(), it->second)));
    }
  }
  if (in.checks) {
    if (auto it = in.checks->find(prefix); it != in.checks->end() && !it->second.ok) {
      reasons.push_back(not_ready(ReasonKind::kCheckFailed,
                                  fmt::format("service check on {} failed: {}", prefix.address.str(), it->second.detail)));
    }
  }
  if (in.watch) {
    if (in.watch->leaked(prefix, in.now)) {
      reasons.push_back(not_ready(ReasonKind::kVipLeaked,
                                  fmt::format("vip {} was revealed on the wire by this host in the last {:.0f} s", prefix.str(),
                                              WireWatch::kLeakHold)));
    }
    for (const Claim* claim : in.watch->others_claiming(prefix, in.now)) {
      reasons.push_back(warning(ReasonKind::kVipClaimed,
                                fmt::format("vip {} is claimed on the wire by another host, {} (last seen {:.0f} s ago)",
                                            prefix.str(), claim->mac.str(), in.now - claim->last_seen)));
    }
  }
}

std::string device_name(const Observed& observed, int index) {
  const Link* link = observed.link_at(index);
  return link ? link->name : fmt::format("ifindex {}", index);
}

}  // namespace

std::vector<Reason> vip_reasons(const Desired& desired, const Observed& observed, const ReadinessInputs& in,
                                const DesiredVip& vip) {
  std::vector<Reason> reasons;
  auto name = [&vip] { return vip.prefix.str(); };  // only when there is something to say
  const Link* device = observed.link_named(vip.device);
  if (!device) {
    reasons.push_back(not_ready(ReasonKind::kVipDeviceMissing, fmt::format("vip {}: device {} does not exist", name(), vip.device)));
  } else if (!device->up) {
    // The kernel keeps the addresses of a device that is down but drops its
    // local routes: nothing sent to the VIP is delivered.
    reasons.push_back(not_ready(ReasonKind::kVipDeviceDown, fmt::format("vip {}: device {} is down", name(), vip.device)));
  }
  if (vip.kind == VipKind::kAddress) {
    bool present = false;
    for (const auto& [key, info] : observed.addresses_of(vip.prefix.address)) {
      if (device && key.link_index == device->index && key.length == vip.prefix.length) {
        present = true;
        const bool scope_ok = vip.prefix.family() == Family::kV6 || info.scope == vip.scope;
        const bool lifetime_ok = vip.prefix.family() == Family::kV4 || info.deprecated() == vip.deprecated;
        if (!scope_ok) {
          reasons.push_back(not_ready(ReasonKind::kVipWrongAttributes,
                                      fmt::format("vip {} on {} has scope {}, want {}", name(), vip.device,
                                                  info.scope == kScopeHost ? "host" : "global",
                                                  vip.scope == kScopeHost ? "host" : "global")));
        }
        if (!lifetime_ok) {
          reasons.push_back(not_ready(ReasonKind::kVipWrongAttributes,
                                      fmt::format("vip {} on {} is preferred as a source address, want preferred_lft 0",
                                                  name(), vip.device)));
        }
      } else if (key.length == vip.prefix.length) {
        reasons.push_back(not_ready(ReasonKind::kVipMisplaced, fmt::format("vip {} is also on {}, which may answer {} for it",
                                                                          name(), device_name(observed, key.link_index),
                                                                          vip.prefix.family() == Family::kV4 ? "ARP" : "NDP")));
      }
    }
    if (device && !present) {
      reasons.push_back(not_ready(ReasonKind::kVipMissing, fmt::format("vip {} missing on {}", name(), vip.device)));
    }
  } else {
    bool ours = false;
    bool foreign = false;
    for (auto it = observed.local_routes.lower_bound(RouteKey{vip.prefix, 0});
         it != observed.local_routes.end() && it->first.destination == vip.prefix; ++it) {
      (it->second.protocol == kRouteProtoArpguard ? ours : foreign) = true;
    }
    if (!ours && !foreign) {
      reasons.push_back(not_ready(ReasonKind::kVipMissing, fmt::format("vip {}: local route missing", name())));
    } else if (!ours) {
      reasons.push_back(warning(ReasonKind::kVipForeignRoute,
                                fmt::format("vip {} is local through a route arpguard did not make", name())));
    }
  }
  for (Reason& r : vip_suppression_gaps(desired, observed, vip)) reasons.push_back(std::move(r));
  // arp_ignore answers for the receiving interface's own addresses: on an
  // ARP-facing device, only the nftables layer hides the VIP.
  if (vip.prefix.family() == Family::kV4 && vip.method == Method::kBoth &&
      std::binary_search(desired.host.arp_facing.begin(), desired.host.arp_facing.end(), vip.device)) {
    reasons.push_back(warning(ReasonKind::kVipMisplaced,
                              fmt::format("vip {} is on {}, where only the nftables layer hides it (arp_ignore answers "
                                          "for the receiving interface's own addresses)",
                                          name(), vip.device)));
  }
  resource_reasons(in, vip.prefix, reasons);
  return reasons;
}

std::vector<Reason> redirect_reasons(const Desired& desired, const Observed& observed, const ReadinessInputs& in,
                                     const IpPrefix& prefix) {
  std::vector<Reason> reasons;
  const std::string name = prefix.str();
  for (const auto& [key, info] : observed.addresses_of(prefix.address)) {
    if (key.length == prefix.length) {
      reasons.push_back(not_ready(ReasonKind::kRedirectConfigured,
                                  fmt::format("redirected vip {} is configured on {}", name,
                                              device_name(observed, key.link_index))));
    }
  }
  // A local route the kernel made for an address is that address's; others count.
  auto route = observed.local_routes.lower_bound(RouteKey{prefix, 0});
  if (route != observed.local_routes.end() && route->first.destination == prefix &&
      route->second.protocol != kRouteProtoKernel) {
    reasons.push_back(not_ready(ReasonKind::kRedirectConfigured,
                                fmt::format("redirected vip {} has a local route", name)));
  }
  // Every element the policy wants for it must be in the NAT table.
  const nft::TableId table_id = rules::nat_table_id(prefix.family());
  const ObservedTable* table = observed.table(table_id);
  const IpRange range = IpRange::of(prefix);
  for (std::string_view set_name : {rules::kKeepSet, rules::kToMap}) {
    auto wanted = desired.vips.elements.find(SetRef{table_id, std::string(set_name)});
    if (wanted == desired.vips.elements.end()) continue;
    std::vector<nft::Element> have;
    if (table) {
      auto set = table->sets.find(std::string(set_name));
      if (set != table->sets.end()) have = set->second.elements_overlapping(range);
    }
    const std::vector<nft::Element>& all = wanted->second;
    for (auto it = std::lower_bound(all.begin(), all.end(), nft::Element{range, 0, 0, 0, 0});
         it != all.end() && it->addresses == range; ++it) {
      const nft::Element& e = *it;
      if (std::find(have.begin(), have.end(), e) == have.end()) {
        reasons.push_back(not_ready(ReasonKind::kVipNotSuppressed,
                                    fmt::format("redirect of {} missing in {} @{}", e.str(), table_id.str(), set_name)));
      }
    }
  }
  resource_reasons(in, prefix, reasons);
  return reasons;
}

}  // namespace arpguard

namespace arpguard {

std::vector<Reason> orphan_reasons(const Desired& desired, const Observed& observed, size_t named) {
  std::vector<Reason> out;
  size_t unnamed = 0;
  auto add = [&](auto&& text) {
    if (out.size() < named) {
      out.push_back(warning(ReasonKind::kOrphanGuarded, text()));
    } else {
      ++unnamed;
    }
  };
  for (const nft::TableId& id : {rules::arp_table_id(), rules::ndp_table_id()}) {
    const ObservedTable* table = observed.table(id);
    if (!table) continue;
    auto set = table->sets.find(std::string(rules::kVipSet));
    if (set == table->sets.end()) continue;
    // Elements, addresses and routes are all in order, and elements do not
    // overlap: one walk through each, and each VIP looked up a few steps on
    // from the last.
    size_t address_hint = 0;
    size_t route_hint = 0;
    auto address = observed.addresses.begin();
    auto route = observed.local_routes.begin();
    for (const nft::Element& e : set->second.all_elements()) {
      while (address != observed.addresses.end() && address->first.address < e.addresses.first) ++address;
      while (route != observed.local_routes.end() && route->first.destination.address < e.addresses.first) ++route;
      // Each configured address the element holds that no VIP of the policy does.
      for (auto& it = address; it != observed.addresses.end() && it->first.address <= e.addresses.last; ++it) {
        const IpAddress& a = it->first.address;
        if (desired.vips.bound_containing(a, address_hint) || desired.vips.is_redirected(a)) continue;
        const Link* link = observed.link_at(it->first.link_index);
        if (!link || !link->loopback) continue;  // an interface's own address is not a VIP left behind
        add([&] {
          return fmt::format("{} on {} is in no VIP of the policy but still configured, so {} @vips keeps "
                             "hiding it (remove it with ip addr del, or put it back in the policy)",
                             it->first.prefix().str(), link->name, id.str());
        });
      }
      for (auto& it = route; it != observed.local_routes.end() && it->first.destination.address <= e.addresses.last;
           ++it) {
        const IpPrefix& p = it->first.destination;
        if (it->second.protocol == kRouteProtoKernel || desired.vips.bound_containing(p.address, route_hint)) continue;
        add([&] {
          return fmt::format("local route {} is in no VIP of the policy but still configured, so {} "
                             "@vips keeps hiding it (ip route del local {} table local)",
                             p.str(), id.str(), p.str());
        });
      }
    }
  }
  if (unnamed > 0) {
    out.push_back(warning(ReasonKind::kOrphanGuarded,
                          fmt::format("and {} more address(es) or local route(s) in no VIP of the policy, still "
                                      "configured and hidden by @vips (ip -br addr show dev lo; ip route show table local)",
                                      unnamed)));
  }
  return out;
}

}  // namespace arpguard
