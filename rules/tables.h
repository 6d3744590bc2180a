// The tables arpguard installs, built as values (rules/nft_spec.h). This file
// and the golden texts under rules/golden/ are the single source of truth for
// what lands in the kernel:
//
//   table arp arpguard            ARP suppression of IPv4 VIPs
//     set vips                    ipv4_addr, interval
//     chain input  (filter)       arp operation request arp daddr ip @vips counter drop
//     chain output (filter)       per ARP-facing interface: a VIP as sender becomes
//                                 its real IP, or is dropped where it has no IPv4
//   table ip6 arpguard            NDP suppression of IPv6 VIPs
//     set vips                    ipv6_addr, interval
//     chain input  (filter)       neighbour solicitations whose target is a VIP: drop
//     chain output (filter)       neighbour advertisements whose target is a VIP: drop
//   The wire watch (watch.enabled) adds to both: a set `watched` of the VIPs the
//   other set does not hold (method sysctl, redirected), and log rules to
//   nfnetlink_log group G, each rate-limited: input "arpguard claim" (a frame
//   whose sender, or NA target, is a VIP) and "arpguard ask" (a request or
//   solicitation for one) before the drop; output "arpguard leak" after the
//   rules that protect (what still claims a VIP goes on the wire).
//   table ip arpguard_nat         redirect method (and ip6 arpguard_nat)
//     set keep                    addr . proto . port ranges redirected to the same port
//     map to                      addr . proto . port -> port
//     chain prerouting (nat, dstnat)
//
// nft 1.0.6 has no `icmpv6 taddr`: the NDP rules match the target with a
// transport-header payload (offset 8, 16 bytes) against the set, which nft
// lists as `@th,64,128 @vips`. Pure; thread-compatible.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/ip.h"
#include "rules/nft_spec.h"

namespace arpguard::rules {

inline constexpr std::string_view kTable = "arpguard";
inline constexpr std::string_view kNatTable = "arpguard_nat";
inline constexpr std::string_view kVipSet = "vips";
inline constexpr std::string_view kKeepSet = "keep";
inline constexpr std::string_view kToMap = "to";
inline constexpr std::string_view kWatchedSet = "watched";

/// The wire watch's log rules: the nfnetlink_log group, and how many frames a
/// second each rule hands over at most (a flood costs a bounded number of wake-ups).
struct Watch {
  uint16_t group = 4247;
  bool operator==(const Watch&) const = default;
};
inline constexpr uint64_t kWatchClaimsPerSecond = 100;
inline constexpr uint64_t kWatchAsksPerSecond = 20;

nft::TableId arp_table_id();
nft::TableId ndp_table_id();
nft::TableId nat_table_id(Family family);

/// The output rule of one ARP-facing interface: rewrite a VIP sender to
/// `real_ip`, or drop it when the interface has no IPv4 address.
struct ArpOutput {
  std::string interface;
  std::optional<IpAddress> real_ip;
};

/// `vips` are sorted, merged IPv4 ranges.
nft::TableSpec arp_table(std::vector<nft::Element> vips, const std::vector<ArpOutput>& outputs,
                         std::optional<Watch> watch = std::nullopt);
/// `vips` are sorted, merged IPv6 ranges.
nft::TableSpec ndp_table(std::vector<nft::Element> vips, std::optional<Watch> watch = std::nullopt);
/// `keep`: elements redirected to their own port; `to`: elements with a target port.
nft::TableSpec nat_table(Family family, std::vector<nft::Element> keep, std::vector<nft::Element> to);

/// An address-only element of the vips sets.
inline nft::Element vip_element(const IpRange& range) { return nft::Element{range, 0, 0, 0, 0}; }

}  // namespace arpguard::rules
