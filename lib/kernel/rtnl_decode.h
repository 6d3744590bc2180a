// rtnetlink messages (links, addresses of both families, local routes) as
// the cache's values. Pure functions over received bytes, shared by dumps
// and notifications, tested with captured messages.
#pragma once

#include <linux/netlink.h>

#include <optional>
#include <utility>

#include "core/model.h"
#include "core/observed_delta.h"

namespace arpguard::rtnl {

/// RTM_NEWLINK: the link; nullopt when malformed.
std::optional<Link> decode_link(const nlmsghdr* nlh);
/// RTM_NEWADDR / RTM_DELADDR of either family.
std::optional<std::pair<AddressKey, AddressInfo>> decode_address(const nlmsghdr* nlh);
/// RTM_NEWROUTE / RTM_DELROUTE: only type local routes of table local.
std::optional<std::pair<RouteKey, RouteInfo>> decode_local_route(const nlmsghdr* nlh);

/// RTM_NEWROUTE / RTM_DELROUTE: an IPv4 unicast route of a table other than
/// local, main and default (source routing's tables).
std::optional<std::pair<PolicyRouteKey, PolicyRouteInfo>> decode_policy_route(const nlmsghdr* nlh);
/// RTM_NEWRULE / RTM_DELRULE: an IPv4 rule `from PREFIX lookup TABLE`.
std::optional<std::pair<RoutingRuleKey, RoutingRuleInfo>> decode_rule(const nlmsghdr* nlh);

/// Any of the above as a cache change; a main-table route or another rule as
/// delta::RoutingChanged; nullopt for everything else.
std::optional<Delta> decode(const nlmsghdr* nlh);

}  // namespace arpguard::rtnl
