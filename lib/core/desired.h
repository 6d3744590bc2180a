// What the kernel should hold, from the policy and what the kernel holds.
//
// Two halves with different costs: DesiredVips depends on the policy alone
// (O(VIPs), made at start and at each reload) and holds every VIP and every
// set element; DesiredHost depends on the policy and the host (links, their
// addresses and sysctls; O(interfaces), made again whenever those change) and
// holds sysctls and the structure of each nft table. Pure; thread-compatible.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/model.h"
#include "core/policy.h"
#include "rules/nft_spec.h"
#include "rules/tables.h"

namespace arpguard {

/// A VIP arpguard configures, with every attribute its protection depends on
/// (I1: a VIP matches the kernel's only when all of them match).
struct DesiredVip {
  IpPrefix prefix;
  VipKind kind = VipKind::kAddress;
  std::string device;
  Method method = Method::kBoth;
  uint8_t scope = kScopeGlobal;  ///< address VIPs: host where arp_ignore=3 must not answer them
  bool deprecated = false;       ///< IPv6 address VIPs: preferred_lft 0, never a source of new connections

  ManagedVip managed() const { return {prefix, kind, device}; }
};

/// One set of one table: where desired elements go.
struct SetRef {
  nft::TableId table;
  std::string set;

  auto operator<=>(const SetRef&) const = default;
  std::string str() const { return table.str() + " @" + set; }
};

struct DesiredVips {
  std::vector<DesiredVip> bound;        ///< configured VIPs, sorted by prefix
  std::vector<IpPrefix> redirected;     ///< never configured, sorted
  /// Elements of each set, sorted and merged (adjacent VIPs form one interval).
  std::map<SetRef, std::vector<nft::Element>> elements;
  bool any_ipv4 = false;      ///< some bound VIP is IPv4
  bool ipv4_sysctls = false;  ///< some bound IPv4 VIP relies on the sysctl layer

  /// The bound VIP whose prefix contains `address`; nullptr when none.
  const DesiredVip* bound_containing(const IpAddress& address) const;
  /// The same, for addresses asked mostly in increasing order: `hint` (start
  /// at 0) keeps where the last answer was, and a few steps on from it replace
  /// the search.
  const DesiredVip* bound_containing(const IpAddress& address, size_t& hint) const;
  bool is_redirected(const IpAddress& address) const;
};

/// How arpguard holds its nft tables.
enum class TableOwnership {
  kHold,         ///< the daemon: owner of its tables (NFT_TABLE_F_OWNER), adopting orphaned ones
  kLeaveOrphan,  ///< a one-shot apply: creates them owned and persistent, so a later daemon adopts them
  kPlain,        ///< agent.own_nft_table = false: tables any root process may change
};

/// How many tables above arp.source_routing_table arpguard takes as its own (ifindexes).
inline constexpr uint32_t kSourceTables = 1u << 20;

struct DesiredHost {
  std::vector<std::string> arp_facing;             ///< interface names, sorted
  std::vector<std::pair<SysctlKey, int>> sysctls;  ///< keys arpguard writes, with their values
  std::vector<nft::TableSpec> tables;              ///< structure only: sets have no elements here
  TableOwnership ownership = TableOwnership::kLeaveOrphan;
  int arp_announce = 2;
  bool uses_sysctls = false;  ///< some IPv4 VIP relies on the sysctl layer
  std::vector<rules::ArpOutput> arp_outputs;  ///< per ARP-facing interface, its ARP sender for VIPs
  std::optional<rules::Watch> watch;          ///< the wire watch's log rules, when on
  /// arp.source_routing: per ARP-facing interface, a table routing its subnets
  /// out of it, and a rule sending each of its addresses' traffic to that table.
  bool source_routing = false;
  uint32_t source_table_base = 0;  ///< tables [base, base + kSourceTables) are arpguard's
  std::map<PolicyRouteKey, PolicyRouteInfo> source_routes;
  std::map<RoutingRuleKey, RoutingRuleInfo> source_rules;

  const nft::TableSpec* table(const nft::TableId& id) const;
  /// The table arpguard writes as `id` on this host, whether or not the policy
  /// wants it now (to recognise the rules of one left behind).
  nft::TableSpec reference_table(const nft::TableId& id) const;
};

struct Desired {
  DesiredVips vips;
  DesiredHost host;
};

/// Policy-only half. `policy.vips` is sorted (parse_policy sorts it).
DesiredVips make_desired_vips(const Policy& policy);

/// The ARP sender of `link` when the policy names none: of its primary global
/// IPv4 addresses that are no VIP, the one with the widest subnet, the lowest of those.
std::optional<IpAddress> primary_ipv4(const Observed& observed, const Link& link, const DesiredVips& vips);

/// True when address changes on links other than loopback leave `host` as it
/// was: no ARP sender moved, and no source routing follows the addresses.
bool senders_unmoved(const Policy& policy, const DesiredVips& vips, const Observed& observed, const DesiredHost& host);

/// Host half. `daemon`: the caller runs for long and holds its tables.
DesiredHost make_desired_host(const Policy& policy, const DesiredVips& vips, const Observed& observed, bool daemon);

inline Desired make_desired(const Policy& policy, const Observed& observed, bool daemon) {
  Desired desired{make_desired_vips(policy), {}};
  desired.host = make_desired_host(policy, desired.vips, observed, daemon);
  return desired;
}

/// Checks of the policy that need the kernel's view: a VIP that is, or
/// contains, an interface's own address; a VIP of method sysctl on an
/// interface that answers ARP. Located at the VIP's address value.
std::vector<Diagnostic> check_against_kernel(const Policy& policy, const Observed& observed);

/// True when `link` is ARP-facing under `patterns` (each the exact name, or
/// an fnmatch glob; "*" means all): never lo, never a NOARP link.
bool is_arp_facing(const Link& link, const std::vector<std::string>& patterns);

/// The kernel's effective value of an ARP sysctl on `interface`:
/// max(all, interface) for arp_ignore and arp_announce, all OR interface for arp_filter.
int effective_sysctl(const SysctlValues& values, const std::string& interface, const std::string& name);

/// True when an effective arp_ignore keeps the kernel from answering ARP for a VIP on lo.
bool arp_ignore_protects(int value);

}  // namespace arpguard
