// Why the server, or one VIP, is not ready, as a typed value (STYLE 9, 16).
//
// Decisions read `kind` and `severity`; `text` is only ever shown. Pure.
#pragma once

#include <cstdint>
#include <string>

namespace arpguard {

enum class ReasonKind : uint8_t {
  // server-wide
  kDraining,           ///< the operator drains (arpguard drain)
  kNoVips,             ///< the policy has no VIP to be ready for
  kStale,              ///< kernel state older than the bound, or not read yet
  kObserveFailed,      ///< reading the kernel failed
  kSysctlWrong,        ///< a sysctl arpguard sets has another value
  kArpIgnoreExposes,   ///< effective arp_ignore answers ARP for VIPs
  kArpAnnounceLow,     ///< effective arp_announce lower than the policy's
  kTableMissing,       ///< one of arpguard's nft tables is absent
  kTableMismatch,      ///< it exists but differs from what it should be
  kRepairFailing,      ///< a repair failed (EPERM, EROFS, ENODEV...)
  kContested,          ///< someone keeps undoing a resource
  kConntrackHigh,      ///< conntrack fuller than the policy's threshold (warning)
  kOrphanGuarded,      ///< a VIP no longer in the policy is still configured: its suppression is kept (warning)
  kAddressUnanswered,  ///< a host address no ARP-facing NIC will answer for (warning)
  kVipClaimed,         ///< another host claims a VIP on the wire (warning)
  kVipLeaked,          ///< this host revealed a VIP on the wire
  kStateUnrecorded,    ///< the state record cannot be written or read: ownership is not kept (warning)
  // per VIP
  kVipMissing,         ///< not configured on its device
  kVipDeviceMissing,   ///< its device does not exist
  kVipDeviceDown,      ///< its device is down: no traffic reaches it
  kVipWrongAttributes, ///< configured, but with a scope or lifetime its protection forbids
  kVipNotSuppressed,   ///< its nft set does not hold it
  kVipMisplaced,       ///< also configured on another device
  kVipForeignRoute,    ///< a local route arpguard did not make holds it (warning)
  kRedirectConfigured, ///< a redirected VIP is configured on a device
  kCheckFailed,        ///< its service check fails
};

enum class Severity : uint8_t {
  kNotReady,  ///< readiness says no
  kWarning,   ///< reported, readiness unaffected
};

struct Reason {
  ReasonKind kind = ReasonKind::kStale;
  Severity severity = Severity::kNotReady;
  std::string text;  ///< "vip 10.0.0.5/32 missing on lo"

  bool operator==(const Reason&) const = default;
};

inline Reason not_ready(ReasonKind kind, std::string text) { return {kind, Severity::kNotReady, std::move(text)}; }
inline Reason warning(ReasonKind kind, std::string text) { return {kind, Severity::kWarning, std::move(text)}; }

}  // namespace arpguard
