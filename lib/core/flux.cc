#include "core/flux.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/desired.h"

namespace arpguard {

namespace {

struct Candidate {
  const Link* link;
  int arp_ignore;
  bool arp_filter;
};

bool skipped(const IpAddress& address, const DesiredVips& vips) {
  return vips.bound_containing(address) != nullptr || vips.is_redirected(address);
}

// A neighbour in the address's subnet to ask from: the subnet's first host
// that is not the address itself. Point-to-point and host subnets have none.
std::optional<IpAddress> asker_for(const AddressKey& key) {
  if (key.length >= 31) return std::nullopt;
  const IpPrefix subnet{key.address, key.length};
  IpAddress asker = subnet.first().next();
  if (asker == key.address) asker = asker.next();
  return asker;
}

// The IPv4 addresses of ARP-facing, up interfaces: those an ARP request can be for.
template <class F>
void for_each_address(const Observed& observed, const std::vector<std::string>& arp_facing,
                      const DesiredVips& skip, F&& f) {
  for (const std::string& name : arp_facing) {
    const Link* link = observed.link_named(name);
    if (!link || !link->up) continue;
    auto on_link = observed.addresses_by_link.find(link->index);
    if (on_link == observed.addresses_by_link.end()) continue;
    for (const AddressKey& key : on_link->second) {
      if (key.address.family != Family::kV4 || skipped(key.address, skip)) continue;
      f(*link, key, observed.addresses.at(key));
    }
  }
}

// The ARP-facing NICs on `key`'s segment: those with an address in its subnet.
std::vector<Candidate> hearers(const Observed& observed, const std::vector<std::string>& arp_facing, const AddressKey& key) {
  const IpPrefix subnet{key.address, key.length};
  std::vector<Candidate> out;
  for (const std::string& name : arp_facing) {
    const Link* link = observed.link_named(name);
    if (!link || !link->up) continue;
    bool on_segment = link->index == key.link_index;
    if (auto on_link = observed.addresses_by_link.find(link->index); !on_segment && on_link != observed.addresses_by_link.end()) {
      on_segment = std::any_of(on_link->second.begin(), on_link->second.end(), [&](const AddressKey& k) {
        return k.address.family == Family::kV4 && subnet.contains(k.address);
      });
    }
    if (on_segment) {
      out.push_back({link, effective_sysctl(observed.sysctls, name, kArpIgnore),
                     effective_sysctl(observed.sysctls, name, kArpFilter) != 0});
    }
  }
  return out;
}

bool configured_on(const Observed& observed, const IpAddress& address, int link_index) {
  for (const auto& [key, info] : observed.addresses_of(address)) {
    if (key.link_index == link_index) return true;
  }
  return false;
}

}  // namespace

std::vector<RouteQuery> flux_queries(const Observed& observed, const std::vector<std::string>& arp_facing,
                                     const DesiredVips& skip) {
  std::vector<RouteQuery> out;
  for_each_address(observed, arp_facing, skip, [&](const Link&, const AddressKey& key, const AddressInfo&) {
    auto asker = asker_for(key);
    if (!asker) return;
    const std::vector<Candidate> candidates = hearers(observed, arp_facing, key);
    if (std::any_of(candidates.begin(), candidates.end(), [](const Candidate& c) { return c.arp_filter; })) {
      out.push_back({key.address, *asker});
    }
  });
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<AddressAnswer> arp_answers(const Observed& observed, const std::vector<std::string>& arp_facing,
                                       const DesiredVips& skip, const RouteAnswers& routes) {
  std::vector<AddressAnswer> out;
  for_each_address(observed, arp_facing, skip, [&](const Link& own, const AddressKey& key, const AddressInfo& info) {
    AddressAnswer answer{key, own.name, {}, {}};
    auto asker = asker_for(key);
    if (!asker) return;  // nobody on a /31 or /32 to ask from
    std::optional<int> route_out;
    if (auto it = routes.find(RouteQuery{key.address, *asker}); it != routes.end()) route_out = it->second;
    std::vector<std::string> silenced;  // why each hearer stays silent
    for (const Candidate& c : hearers(observed, arp_facing, key)) {
      const std::string& name = c.link->name;
      bool answers = true;
      switch (c.arp_ignore) {
        case 1:
        case 2:
          if (!configured_on(observed, key.address, c.link->index)) {
            answers = false;
            silenced.push_back(fmt::format("arp_ignore {} on {}", c.arp_ignore, name));
          }
          break;
        case 3:
          if (info.scope == kScopeHost) {
            answers = false;
            silenced.push_back(fmt::format("arp_ignore 3 on {} and scope host", name));
          }
          break;
        case 8:
          answers = false;
          silenced.push_back(fmt::format("arp_ignore 8 on {}", name));
          break;
        default: break;  // 0 and 4-7: any local address
      }
      if (answers && c.arp_filter) {
        if (!route_out) {
          answers = false;
          silenced.push_back(fmt::format("arp_filter on {}, with no route known back to {}", name, asker->str()));
        } else if (*route_out != c.link->index) {
          answers = false;
          const Link* via = observed.link_at(*route_out);
          silenced.push_back(fmt::format("arp_filter on {}: the route back to {} from {} leaves through {}", name,
                                         asker->str(), key.address.str(), via ? via->name : fmt::format("ifindex {}", *route_out)));
        }
      }
      if (answers) answer.answered_by.push_back(name);
    }
    std::sort(answer.answered_by.begin(), answer.answered_by.end());
    if (answer.answered_by.empty()) {
      // Why its own NIC is silent is the reason that matters.
      std::string own_reason;
      for (const std::string& s : silenced) {
        if (s.find(" on " + own.name) != std::string::npos) own_reason = s;
      }
      answer.why = fmt::format("no interface answers ARP for {}, an address of {} ({})", key.address.str(), own.name,
                               own_reason.empty() ? "every one is silenced" : own_reason);
      if (own_reason.find("arp_filter") != std::string::npos) answer.why += "; arp.source_routing = true fixes this";
    } else if (!answer.right()) {
      std::vector<std::string> others;
      for (const std::string& name : answer.answered_by) {
        if (name != own.name) others.push_back(name);
      }
      answer.why = fmt::format("{} answer{} ARP for {}, an address of {} (ARP flux: arp_ignore 1 answers only for "
                               "the receiving interface's own addresses)",
                               fmt::join(others, ", "), others.size() == 1 ? "s" : "", key.address.str(), own.name);
    }
    out.push_back(std::move(answer));
  });
  return out;
}

}  // namespace arpguard
