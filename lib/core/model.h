// The values the pure core reasons about: what the kernel holds (Observed),
// what the policy wants there (Desired), and arpguard's own records.
// Plain data; no syscalls.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/ipv4.h"
#include "core/policy.h"
#include "rules/arp_table.h"

namespace arpguard {

struct Link {
  int index = 0;
  std::string name;
  bool loopback = false;
  bool noarp = false;
  bool up = false;
};

/// RT_SCOPE_* values as the kernel numbers them.
inline constexpr uint8_t kScopeGlobal = 0;
inline constexpr uint8_t kScopeHost = 254;

struct Address {
  int link_index = 0;
  Ipv4Prefix prefix;
  bool secondary = false;
  uint8_t scope = kScopeGlobal;
};

/// net.ipv4.conf.<scope>.<name>; scope is "all", "default" or an interface.
struct SysctlKey {
  std::string scope;
  std::string name;

  auto operator<=>(const SysctlKey&) const = default;
  /// "net.ipv4.conf.all.arp_ignore"
  std::string str() const { return "net.ipv4.conf." + scope + "." + name; }
  std::string proc_path() const { return "/proc/sys/net/ipv4/conf/" + scope + "/" + name; }
};

inline constexpr const char* kArpIgnore = "arp_ignore";
inline constexpr const char* kArpAnnounce = "arp_announce";
inline constexpr const char* kArpFilter = "arp_filter";

using SysctlValues = std::map<SysctlKey, int>;

/// A VIP as the kernel identifies it, on a named device.
struct VipOnDevice {
  Ipv4Prefix prefix;
  std::string device;

  auto operator<=>(const VipOnDevice&) const = default;
  /// "10.0.0.5/32 dev lo"
  std::string str() const { return prefix.str() + " dev " + device; }
};

/// What arpguard has changed and must remember across runs (/run/arpguard/state.json).
struct ManagedState {
  std::vector<VipOnDevice> vips;       ///< VIPs arpguard added and still manages
  SysctlValues sysctl_origin;          ///< each key's value before arpguard first wrote it

  bool operator==(const ManagedState&) const = default;
};

struct ObservedRule {
  uint64_t handle = 0;
  std::string chain;
  std::optional<rules::ArpRule> rule;  ///< nullopt: a rule arpguard did not write
  uint64_t packets = 0;
  uint64_t bytes = 0;
};

struct ObservedArpTable {
  bool exists = false;
  uint32_t flags = 0;
  bool owned_by_us = false;
  bool persist_supported = false;
  bool set_ok = false;                 ///< set vips with type ipv4_addr and flags interval
  bool input_chain = false;            ///< base chain hooked at input
  bool output_chain = false;           ///< base chain hooked at output
  bool malformed = false;              ///< a set or chain of another shape, or one arpguard does not make
  std::vector<Ipv4Range> vips;
  std::vector<ObservedRule> rules;

  bool persistent() const { return (flags & rules::kTableFlagPersist) != 0; }
};

struct Observed {
  std::vector<Link> links;
  std::vector<Address> addresses;
  SysctlValues sysctls;                ///< arp_* of conf/all and of every link
  ObservedArpTable nft;
  ManagedState state;

  const Link* link_named(const std::string& name) const;
  const Link* link_at(int index) const;
};

/// How arpguard holds its nft table.
enum class TableOwnership {
  kHold,         ///< the daemon: owner of the table (NFT_TABLE_F_OWNER), adopting or replacing an unowned one
  kLeaveOrphan,  ///< a one-shot apply: creates the table owned and persistent, so a later daemon can adopt it
  kPlain,        ///< agent.own_nft_table = false: a table any root process may change
};

struct Desired {
  Method method = Method::kBoth;
  std::vector<std::string> arp_facing;            ///< interface names, sorted
  std::vector<VipOnDevice> vips;
  std::vector<std::pair<SysctlKey, int>> sysctls; ///< keys arpguard writes, with their values
  std::optional<rules::ArpTableSpec> nft;         ///< nullopt: the table must be absent
  TableOwnership ownership = TableOwnership::kLeaveOrphan;
  int arp_ignore = 1;
  int arp_announce = 2;
  bool arp_filter = false;
  uint8_t vip_scope = kScopeGlobal;
  std::vector<std::string> problems;              ///< what keeps the policy from being met
};

}  // namespace arpguard
