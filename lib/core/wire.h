// What the wire watch sees: ARP and NDP frames that claim or ask for a VIP,
// as the kernel's log rules in arpguard's own tables hand them over
// (rules/tables.h: "arpguard claim", "arpguard ask", "arpguard leak"), and
// who sent them. Plain data; pure.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/ip.h"

namespace arpguard {

/// An Ethernet address.
struct MacAddress {
  std::array<uint8_t, 6> bytes{};

  auto operator<=>(const MacAddress&) const = default;
  /// "02:00:00:00:00:11"
  std::string str() const;
  /// Six hex pairs separated by ':' or '-', any case.
  static std::optional<MacAddress> parse(std::string_view text);
};

/// Which log rule handed the frame over: the rule's log prefix.
enum class WatchRule : uint8_t {
  kClaim,  ///< input: a frame whose sender (ARP) or target (NA) is a VIP, from another host
  kAsk,    ///< input: a request or solicitation for a VIP
  kLeak,   ///< output: this host sends a frame that claims a VIP, past every protecting rule
};

/// The log prefixes of the three rules, as nft lists them.
inline constexpr std::string_view kLogPrefixClaim = "arpguard claim";
inline constexpr std::string_view kLogPrefixAsk = "arpguard ask";
inline constexpr std::string_view kLogPrefixLeak = "arpguard leak";

enum class FrameKind : uint8_t {
  kArpRequest,
  kArpReply,
  kNeighbourSolicitation,
  kNeighbourAdvertisement,
};

std::string_view to_string(FrameKind kind);

/// One logged frame, decoded.
struct WireFrame {
  WatchRule rule = WatchRule::kClaim;
  FrameKind kind = FrameKind::kArpReply;
  int ifindex = 0;        ///< the interface it came in on (claim, ask) or went out of (leak)
  IpAddress vip;          ///< the address claimed (ARP sender IP; NA target) or asked for (ARP target IP; NS target)
  MacAddress mac;         ///< who claims or asks: ARP sender hardware address; NDP link-layer option, else the frame's source
  std::optional<IpAddress> sender;  ///< ARP sender IP / IPv6 source of an ask: where a probe's answer goes
  bool gratuitous = false;          ///< ARP with sender IP == target IP, or an unsolicited NA

  bool operator==(const WireFrame&) const = default;
};

}  // namespace arpguard
