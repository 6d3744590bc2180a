// The values the pure core reasons about: what the kernel holds (Observed),
// and arpguard's own record of what it changed (ManagedState).
//
// Observed is a cache indexed by the kernel's own identities, kept current
// by decoded events (core/observed_delta.h) and rebuilt by full dumps. Plain
// data; no syscalls; thread-compatible.
#pragma once

#include <bitset>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "core/ip.h"
#include "core/policy.h"
#include "core/wire.h"
#include "rules/nft_spec.h"

namespace arpguard {

struct Link {
  int index = 0;
  std::string name;
  bool loopback = false;
  bool noarp = false;
  bool up = false;
  MacAddress mac;  ///< all zero when the link has none

  bool operator==(const Link&) const = default;
};

/// RT_SCOPE_* values as the kernel numbers them.
inline constexpr uint8_t kScopeGlobal = 0;
inline constexpr uint8_t kScopeLink = 253;
inline constexpr uint8_t kScopeHost = 254;

/// IFA_F_* flags arpguard reads.
inline constexpr uint32_t kAddrFlagSecondary = 0x01;
inline constexpr uint32_t kAddrFlagNoDad = 0x02;
inline constexpr uint32_t kAddrFlagDeprecated = 0x20;
inline constexpr uint32_t kAddrFlagTentative = 0x40;
inline constexpr uint32_t kAddrFlagPermanent = 0x80;

/// An address as the kernel identifies it: family, address, prefix length, device.
struct AddressKey {
  IpAddress address;
  uint8_t length = 0;
  int link_index = 0;

  auto operator<=>(const AddressKey&) const = default;
  IpPrefix prefix() const { return {address, length}; }
};

/// One link's addresses widest subnet first: IPv4 before IPv6, then by prefix
/// length, then by address. The interface's own address comes first, however
/// many /32s others add to it.
struct WidestFirst {
  bool operator()(const AddressKey& a, const AddressKey& b) const {
    return std::tie(a.address.family, a.length, a.address, a.link_index) <
           std::tie(b.address.family, b.length, b.address, b.link_index);
  }
};

struct AddressInfo {
  uint8_t scope = kScopeGlobal;
  uint32_t flags = 0;  ///< IFA_F_*

  bool operator==(const AddressInfo&) const = default;
  bool secondary() const { return (flags & kAddrFlagSecondary) != 0; }
  bool deprecated() const { return (flags & kAddrFlagDeprecated) != 0; }
  bool tentative() const { return (flags & kAddrFlagTentative) != 0; }
};

/// RT_TABLE_LOCAL, RTN_LOCAL and arpguard's route protocol number.
inline constexpr uint32_t kTableLocal = 255;
inline constexpr uint8_t kRouteTypeLocal = 2;
inline constexpr uint8_t kRouteProtoKernel = 2;
/// The rtm_protocol of routes arpguard makes: its mark of ownership on them
/// (unassigned in iproute2's rt_protos; `ip route` shows it as "proto 247").
inline constexpr uint8_t kRouteProtoArpguard = 247;

/// A local route in table local, as the kernel identifies it.
struct RouteKey {
  IpPrefix destination;
  uint32_t priority = 0;  ///< metric (IPv6 local routes: 0)

  auto operator<=>(const RouteKey&) const = default;
};

struct RouteInfo {
  int link_index = 0;
  uint8_t protocol = 0;
  uint8_t scope = kScopeHost;

  bool operator==(const RouteInfo&) const = default;
};

/// Source routing (arp.source_routing): an IPv4 route of one of arpguard's
/// per-interface tables, as the kernel identifies it.
struct PolicyRouteKey {
  uint32_t table = 0;
  IpPrefix destination;

  auto operator<=>(const PolicyRouteKey&) const = default;
};

struct PolicyRouteInfo {
  int link_index = 0;
  uint8_t protocol = 0;
  std::optional<IpAddress> source;  ///< RTA_PREFSRC

  bool operator==(const PolicyRouteInfo&) const = default;
};

/// An IPv4 routing rule `from SOURCE lookup TABLE priority PRIORITY`.
struct RoutingRuleKey {
  uint32_t priority = 0;
  IpPrefix source;
  uint32_t table = 0;

  auto operator<=>(const RoutingRuleKey&) const = default;
  /// "from 192.0.2.11 lookup 5003 priority 1000"
  std::string str() const;
};

struct RoutingRuleInfo {
  uint8_t protocol = 0;

  bool operator==(const RoutingRuleInfo&) const = default;
};

/// net.ipv4.conf.<scope>.<name>; scope is "all", "default" or an interface.
struct SysctlKey {
  std::string scope;
  std::string name;

  auto operator<=>(const SysctlKey&) const = default;
  /// "net.ipv4.conf.all.arp_ignore"
  std::string str() const { return "net.ipv4.conf." + scope + "." + name; }
};

inline constexpr const char* kArpIgnore = "arp_ignore";
inline constexpr const char* kArpAnnounce = "arp_announce";
inline constexpr const char* kArpFilter = "arp_filter";

using SysctlValues = std::map<SysctlKey, int>;

/// A VIP arpguard configured, as it records it.
struct ManagedVip {
  IpPrefix prefix;
  VipKind kind = VipKind::kAddress;
  std::string device;

  auto operator<=>(const ManagedVip&) const = default;
  /// "10.0.0.5/32 dev lo", "10.100.0.0/24 (route) dev lo"
  std::string str() const;
};

/// What arpguard has changed and must remember across runs (state_dir/state.json).
struct ManagedState {
  std::set<ManagedVip> vips;     ///< VIPs arpguard added and still manages
  SysctlValues sysctl_origin;    ///< each key's value before arpguard first wrote it

  bool operator==(const ManagedState&) const = default;
};

// ---- nftables, as the kernel holds it ----

struct ObservedRule {
  uint64_t handle = 0;
  std::string chain;
  std::vector<nft::Expr> exprs;  ///< normalized
  uint64_t packets = 0;
  uint64_t bytes = 0;
};

struct ObservedChain {
  std::string type;
  uint32_t hook = 0;
  int32_t priority = 0;
  uint32_t policy = 1;  ///< NF_ACCEPT
  bool base = false;    ///< hooked; a regular chain is never arpguard's

  bool operator==(const ObservedChain&) const = default;
  bool matches(const nft::ChainSpec& spec) const {
    return base && type == spec.type && hook == spec.hook && priority == spec.priority && policy == 1;
  }
};

/// A set's definition, and its elements. Interval sets without concatenation
/// hold their ranges as points (a start, and an end one past the last
/// address, flagged), exactly as the kernel keeps and notifies them;
/// concatenated ones hold whole elements.
struct ObservedSet {
  uint32_t flags = 0;
  uint32_t key_type = 0;
  uint32_t key_len = 0;
  uint32_t data_type = 0;
  uint32_t data_len = 0;
  std::set<std::pair<IpAddress, bool>> points;  ///< (key, is_start): an end sorts before a start at one key
  std::set<nft::Element> elements;              ///< concatenated sets and maps

  bool matches(const nft::SetSpec& spec) const;
  /// Every element, as ranges: O(n).
  std::vector<nft::Element> all_elements() const;
  /// The elements that overlap `range` (addresses only): O(log n + k).
  std::vector<nft::Element> elements_overlapping(const IpRange& range) const;
  /// The elements that overlap any of `area` (sorted and merged), sorted, each
  /// once: O(regions * log n + k).
  std::vector<nft::Element> elements_overlapping(const std::vector<IpRange>& area) const;
  size_t size() const;
};

/// The elements of `sorted` (ordered by their addresses' first) that overlap
/// any region of `area` (sorted and merged): one walk beside both.
std::vector<nft::Element> elements_in_area(std::vector<nft::Element> sorted, const std::vector<IpRange>& area);

struct ObservedTable {
  uint32_t flags = 0;
  std::optional<uint32_t> owner;  ///< netlink port id of the owner, for owned tables
  std::map<std::string, ObservedSet> sets;
  std::map<std::string, ObservedChain> chains;
  std::map<uint64_t, ObservedRule> rules;  ///< by handle

  bool persistent() const { return (flags & nft::kTableFlagPersist) != 0; }
  bool owned() const { return (flags & nft::kTableFlagOwner) != 0; }
};

/// Which prefix lengths occur, per family: lookups of what contains an address
/// try only these. A superset is always correct; all of them is the default.
struct PrefixLengths {
  std::bitset<129> v4;
  std::bitset<129> v6;

  static PrefixLengths all() {
    PrefixLengths out;
    out.v4.set();
    out.v6.set();
    return out;
  }
  void add(const IpPrefix& prefix) { (prefix.family() == Family::kV4 ? v4 : v6).set(prefix.length); }
  bool has(Family family, int length) const { return (family == Family::kV4 ? v4 : v6).test(static_cast<size_t>(length)); }
};

struct Observed {
  std::map<int, Link> links;
  std::map<AddressKey, AddressInfo> addresses;  ///< every address, ordered by address
  /// The addresses of each link but loopback ones (an index of `addresses`), widest first.
  std::map<int, std::set<AddressKey, WidestFirst>> addresses_by_link;
  std::map<RouteKey, RouteInfo> local_routes;   ///< type local routes in table local
  /// IPv4 unicast routes of tables other than local, main and default: source routing's.
  std::map<PolicyRouteKey, PolicyRouteInfo> policy_routes;
  std::map<RoutingRuleKey, RoutingRuleInfo> rules;  ///< IPv4 rules that select a table by source
  uint64_t routing_changes = 0;                 ///< main-table routes and rules changed: ARP flux to look at again
  SysctlValues sysctls;                         ///< arp_* of all, default and every link
  std::map<nft::TableId, ObservedTable> tables; ///< arpguard's tables that exist
  bool persist_supported = false;               ///< the kernel knows NFT_TABLE_F_PERSIST
  uint32_t nft_portid = 0;                      ///< our nfnetlink port: a table it owns is ours
  ManagedState state;
  std::optional<std::string> state_error;       ///< the record could not be read: ownership unknown
  std::optional<std::string> state_unsaved;     ///< the record cannot be written: the file lacks what arpguard did
  std::optional<std::string> state_notice;      ///< about the record, for the log (once)
  /// The lengths of what arpguard may own: recorded VIPs and routes with its mark (a superset).
  PrefixLengths managed_lengths = PrefixLengths::all();

  void put_address(const AddressKey& key, const AddressInfo& info);
  void remove_address(const AddressKey& key);
  /// Replaces every address (a full dump), rebuilding the index.
  void set_addresses(std::map<AddressKey, AddressInfo> all);

  const Link* link_named(const std::string& name) const;
  const Link* link_at(int index) const;
  /// Addresses with exactly this address (any length, any device).
  std::vector<std::pair<AddressKey, AddressInfo>> addresses_of(const IpAddress& address) const;
  /// True when an address or local route inside `range` is configured anywhere.
  bool anything_local_in(const IpRange& range) const;
  /// The parts of `range` that are local (addresses, and local routes
  /// clipped to it), merged and in order: O(log n + k).
  std::vector<IpRange> local_ranges_in(const IpRange& range) const;
  const ObservedTable* table(const nft::TableId& id) const;
  bool table_is_ours(const ObservedTable& table) const {
    return table.owned() && table.owner && *table.owner == nft_portid;
  }
};

}  // namespace arpguard
