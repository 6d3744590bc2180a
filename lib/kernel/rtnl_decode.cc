#include "kernel/rtnl_decode.h"

#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/fib_rules.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <net/if.h>

#include <cstring>

namespace arpguard::rtnl {

namespace {

constexpr int kMaxAttr = 64;

struct Attributes {
  const nlattr* by_type[kMaxAttr] = {};
};

int collect(const nlattr* attr, void* data) {
  const uint16_t type = mnl_attr_get_type(attr);
  if (type < kMaxAttr) static_cast<Attributes*>(data)->by_type[type] = attr;
  return MNL_CB_OK;
}

template <class Header>
bool parse(const nlmsghdr* nlh, Attributes& attrs) {
  if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(Header))) return false;
  return mnl_attr_parse(nlh, sizeof(Header), collect, &attrs) >= 0;
}

std::optional<IpAddress> address_attr(const nlattr* attr) {
  if (!attr) return std::nullopt;
  return IpAddress::from_bytes(mnl_attr_get_payload(attr), mnl_attr_get_payload_len(attr));
}

}  // namespace

std::optional<Link> decode_link(const nlmsghdr* nlh) {
  Attributes attrs;
  if (!parse<ifinfomsg>(nlh, attrs)) return std::nullopt;
  const auto* ifi = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(nlh));
  Link link;
  link.index = ifi->ifi_index;
  if (const nlattr* name = attrs.by_type[IFLA_IFNAME]) {
    const char* text = static_cast<const char*>(mnl_attr_get_payload(name));
    link.name.assign(text, strnlen(text, mnl_attr_get_payload_len(name)));
  }
  if (const nlattr* mac = attrs.by_type[IFLA_ADDRESS]; mac && mnl_attr_get_payload_len(mac) == link.mac.bytes.size()) {
    std::memcpy(link.mac.bytes.data(), mnl_attr_get_payload(mac), link.mac.bytes.size());
  }
  link.loopback = (ifi->ifi_flags & IFF_LOOPBACK) != 0;
  link.noarp = (ifi->ifi_flags & IFF_NOARP) != 0;
  link.up = (ifi->ifi_flags & IFF_UP) != 0;
  return link;
}

std::optional<std::pair<AddressKey, AddressInfo>> decode_address(const nlmsghdr* nlh) {
  Attributes attrs;
  if (!parse<ifaddrmsg>(nlh, attrs)) return std::nullopt;
  const auto* ifa = static_cast<const ifaddrmsg*>(mnl_nlmsg_get_payload(nlh));
  if (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6) return std::nullopt;
  // IPv4: IFA_LOCAL is the address (IFA_ADDRESS the peer); IPv6: IFA_ADDRESS, unless point-to-point.
  const nlattr* local = attrs.by_type[IFA_LOCAL] ? attrs.by_type[IFA_LOCAL] : attrs.by_type[IFA_ADDRESS];
  auto address = address_attr(local);
  if (!address || static_cast<int>(ifa->ifa_prefixlen) > address->bits()) return std::nullopt;
  AddressInfo info;
  info.scope = ifa->ifa_scope;
  info.flags = attrs.by_type[IFA_FLAGS] && mnl_attr_get_payload_len(attrs.by_type[IFA_FLAGS]) >= 4
                   ? mnl_attr_get_u32(attrs.by_type[IFA_FLAGS])
                   : ifa->ifa_flags;
  return std::make_pair(AddressKey{*address, ifa->ifa_prefixlen, static_cast<int>(ifa->ifa_index)}, info);
}

namespace {

// The key of a route message for table local, not cloned, of type RTN_LOCAL
// when `local`, else of any other type; `attrs` and `rtm` are filled for the caller.
std::optional<RouteKey> local_table_key(const nlmsghdr* nlh, bool local, Attributes& attrs, const rtmsg*& rtm) {
  if (!parse<rtmsg>(nlh, attrs)) return std::nullopt;
  rtm = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(nlh));
  if (rtm->rtm_family != AF_INET && rtm->rtm_family != AF_INET6) return std::nullopt;
  if ((rtm->rtm_type == RTN_LOCAL) != local || (rtm->rtm_flags & RTM_F_CLONED)) return std::nullopt;
  const uint32_t table = attrs.by_type[RTA_TABLE] ? mnl_attr_get_u32(attrs.by_type[RTA_TABLE]) : rtm->rtm_table;
  if (table != kTableLocal) return std::nullopt;
  std::optional<IpAddress> destination = address_attr(attrs.by_type[RTA_DST]);
  if (!destination) destination = IpAddress{rtm->rtm_family == AF_INET ? Family::kV4 : Family::kV6, 0};
  if (static_cast<int>(rtm->rtm_dst_len) > destination->bits()) return std::nullopt;
  RouteKey key{IpPrefix{*destination, rtm->rtm_dst_len}, 0};
  if (attrs.by_type[RTA_PRIORITY]) key.priority = mnl_attr_get_u32(attrs.by_type[RTA_PRIORITY]);
  return key;
}

}  // namespace

std::optional<std::pair<RouteKey, RouteInfo>> decode_local_route(const nlmsghdr* nlh) {
  Attributes attrs;
  const rtmsg* rtm = nullptr;
  std::optional<RouteKey> key = local_table_key(nlh, true, attrs, rtm);
  if (!key) return std::nullopt;
  RouteInfo info;
  info.protocol = rtm->rtm_protocol;
  info.scope = rtm->rtm_scope;
  if (attrs.by_type[RTA_OIF]) info.link_index = static_cast<int>(mnl_attr_get_u32(attrs.by_type[RTA_OIF]));
  return std::make_pair(*key, info);
}

std::optional<std::pair<PolicyRouteKey, PolicyRouteInfo>> decode_policy_route(const nlmsghdr* nlh) {
  Attributes attrs;
  if (!parse<rtmsg>(nlh, attrs)) return std::nullopt;
  const auto* rtm = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(nlh));
  if (rtm->rtm_family != AF_INET || rtm->rtm_type != RTN_UNICAST || (rtm->rtm_flags & RTM_F_CLONED)) return std::nullopt;
  const uint32_t table = attrs.by_type[RTA_TABLE] ? mnl_attr_get_u32(attrs.by_type[RTA_TABLE]) : rtm->rtm_table;
  if (table == RT_TABLE_UNSPEC || table == RT_TABLE_DEFAULT || table == RT_TABLE_MAIN || table == RT_TABLE_LOCAL) {
    return std::nullopt;
  }
  std::optional<IpAddress> destination = address_attr(attrs.by_type[RTA_DST]);
  if (!destination) destination = IpAddress::v4(0);
  if (destination->family != Family::kV4 || rtm->rtm_dst_len > 32) return std::nullopt;
  PolicyRouteKey key{table, IpPrefix{*destination, rtm->rtm_dst_len}};
  PolicyRouteInfo info;
  info.protocol = rtm->rtm_protocol;
  if (attrs.by_type[RTA_OIF]) info.link_index = static_cast<int>(mnl_attr_get_u32(attrs.by_type[RTA_OIF]));
  info.source = address_attr(attrs.by_type[RTA_PREFSRC]);
  return std::make_pair(key, info);
}

std::optional<std::pair<RoutingRuleKey, RoutingRuleInfo>> decode_rule(const nlmsghdr* nlh) {
  Attributes attrs;
  if (!parse<fib_rule_hdr>(nlh, attrs)) return std::nullopt;
  const auto* rule = static_cast<const fib_rule_hdr*>(mnl_nlmsg_get_payload(nlh));
  if (rule->family != AF_INET || rule->action != FR_ACT_TO_TBL || rule->src_len == 0 || rule->dst_len != 0) {
    return std::nullopt;
  }
  // Only plain "from PREFIX lookup TABLE" rules: anything more selective is someone else's design.
  for (int type : {FRA_IIFNAME, FRA_OIFNAME, FRA_FWMARK, FRA_DST, FRA_L3MDEV, FRA_UID_RANGE, FRA_IP_PROTO,
                   FRA_SPORT_RANGE, FRA_DPORT_RANGE}) {
    if (type < kMaxAttr && attrs.by_type[type]) return std::nullopt;
  }
  auto source = address_attr(attrs.by_type[FRA_SRC]);
  if (!source || source->family != Family::kV4 || rule->src_len > 32) return std::nullopt;
  RoutingRuleKey key;
  key.source = IpPrefix{*source, rule->src_len};
  key.table = attrs.by_type[FRA_TABLE] ? mnl_attr_get_u32(attrs.by_type[FRA_TABLE]) : rule->table;
  key.priority = attrs.by_type[FRA_PRIORITY] ? mnl_attr_get_u32(attrs.by_type[FRA_PRIORITY]) : 0;
  RoutingRuleInfo info;
  if (attrs.by_type[FRA_PROTOCOL]) info.protocol = mnl_attr_get_u8(attrs.by_type[FRA_PROTOCOL]);
  return std::make_pair(key, info);
}

namespace {

// A route of another type in table local (`ip route replace blackhole VIP
// table local`) takes the place of a local route with its key: the kernel
// says nothing of the one it replaced.
std::optional<RouteKey> displacing_local_route(const nlmsghdr* nlh) {
  Attributes attrs;
  const rtmsg* rtm = nullptr;
  return local_table_key(nlh, false, attrs, rtm);
}

bool is_main_route(const nlmsghdr* nlh) {
  if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(rtmsg))) return false;
  const auto* rtm = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(nlh));
  return rtm->rtm_family == AF_INET && rtm->rtm_table == RT_TABLE_MAIN && !(rtm->rtm_flags & RTM_F_CLONED);
}

}  // namespace

std::optional<Delta> decode(const nlmsghdr* nlh) {
  switch (nlh->nlmsg_type) {
    case RTM_NEWLINK:
      if (auto link = decode_link(nlh)) return Delta{delta::LinkUpsert{std::move(*link)}};
      return std::nullopt;
    case RTM_DELLINK:
      if (auto link = decode_link(nlh)) return Delta{delta::LinkRemoved{link->index}};
      return std::nullopt;
    case RTM_NEWADDR:
      if (auto a = decode_address(nlh)) return Delta{delta::AddressUpsert{a->first, a->second}};
      return std::nullopt;
    case RTM_DELADDR:
      if (auto a = decode_address(nlh)) return Delta{delta::AddressRemoved{a->first}};
      return std::nullopt;
    case RTM_NEWROUTE:
      if (auto r = decode_local_route(nlh)) return Delta{delta::RouteUpsert{r->first, r->second}};
      if (auto key = displacing_local_route(nlh)) return Delta{delta::RouteRemoved{*key}};
      if (auto r = decode_policy_route(nlh)) return Delta{delta::PolicyRouteUpsert{r->first, r->second}};
      if (is_main_route(nlh)) return Delta{delta::RoutingChanged{}};
      return std::nullopt;
    case RTM_DELROUTE:
      if (auto r = decode_local_route(nlh)) return Delta{delta::RouteRemoved{r->first}};
      if (auto r = decode_policy_route(nlh)) return Delta{delta::PolicyRouteRemoved{r->first}};
      if (is_main_route(nlh)) return Delta{delta::RoutingChanged{}};
      return std::nullopt;
    case RTM_NEWRULE:
      if (auto r = decode_rule(nlh)) return Delta{delta::RoutingRuleUpsert{r->first, r->second}};
      return Delta{delta::RoutingChanged{}};
    case RTM_DELRULE:
      if (auto r = decode_rule(nlh)) return Delta{delta::RoutingRuleRemoved{r->first}};
      return Delta{delta::RoutingChanged{}};
    default: return std::nullopt;
  }
}

}  // namespace arpguard::rtnl
