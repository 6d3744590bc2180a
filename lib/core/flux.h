// ARP flux on a host with several NICs on one segment: which NIC answers a
// neighbour's ARP request for each of the host's own IPv4 addresses, from the
// effective sysctls, the addresses, and (where arp_filter is on) the route
// the kernel would take back to the asker. Pure: the routes come in as
// answers to queries the caller put to the kernel (`ip route get ASKER from
// ADDRESS`, exactly the lookup arp_filter makes).
//
// The kernel's rules (net/ipv4/arp.c, arp_process): a NIC R receiving a
// request for a local address A answers unless
//   arp_ignore(R) = max(all, R) is 1 or 2 and A is not configured on R,
//                   is 3 and A has scope host, or is 8;
//   arp_filter(R) = all || R is on and the route to the asker from A does not
//                   leave through R.
// Every NIC with an address in A's subnet is taken to hear the request (one
// segment); the answer is right when exactly A's own NIC answers.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/desired.h"
#include "core/ip.h"
#include "core/model.h"

namespace arpguard {

/// `ip route get asker from address`: which interface it leaves through.
struct RouteQuery {
  IpAddress address;
  IpAddress asker;

  auto operator<=>(const RouteQuery&) const = default;
};

/// route query -> outgoing ifindex (absent: unknown, no route, or the query failed)
using RouteAnswers = std::map<RouteQuery, int>;

struct AddressAnswer {
  AddressKey key;                    ///< the address and its NIC
  std::string device;
  std::vector<std::string> answered_by;
  std::string why;                   ///< empty when right

  bool right() const { return answered_by.size() == 1 && answered_by.front() == device; }
};

/// The queries arp_answers needs: one per IPv4 address of an ARP-facing
/// interface (but the VIPs) that a NIC with arp_filter on could hear.
std::vector<RouteQuery> flux_queries(const Observed& observed, const std::vector<std::string>& arp_facing,
                                     const DesiredVips& vips);

/// Every IPv4 address of the ARP-facing interfaces but the VIPs, and who
/// answers for it. O(addresses of ARP-facing interfaces x those interfaces).
std::vector<AddressAnswer> arp_answers(const Observed& observed, const std::vector<std::string>& arp_facing,
                                       const DesiredVips& vips, const RouteAnswers& routes);

}  // namespace arpguard
