// Kernel notifications as typed changes to Observed, and what they touched.
//
// lib/kernel decodes rtnetlink and nftables notifications into Deltas;
// apply_delta() folds one into the cache and says which address regions and
// whether host-wide state (links, sysctl-relevant addresses, table
// structure) changed, so the supervisor diffs only that (STYLE 8). Applying a
// delta twice, or a late one, leaves the same cache as applying it once: a
// duplicate event is harmless. Pure; thread-compatible.
#pragma once

#include <string>
#include <variant>
#include <vector>

#include "core/desired.h"
#include "core/model.h"
#include "core/plan.h"

namespace arpguard::delta {

struct LinkUpsert { Link link; };
struct LinkRemoved { int index = 0; };
struct AddressUpsert { AddressKey key; AddressInfo info; };
struct AddressRemoved { AddressKey key; };
struct RouteUpsert { RouteKey key; RouteInfo info; };
struct RouteRemoved { RouteKey key; };
struct PolicyRouteUpsert { PolicyRouteKey key; PolicyRouteInfo info; };
struct PolicyRouteRemoved { PolicyRouteKey key; };
struct RoutingRuleUpsert { RoutingRuleKey key; RoutingRuleInfo info; };
struct RoutingRuleRemoved { RoutingRuleKey key; };
/// A route of the main table, or a rule the cache does not hold, changed: not
/// cached, but what ARP flux analysis depends on (core/flux.h).
struct RoutingChanged {};
/// Bytes that could not be decoded (a message cut short, a length that lies):
/// whatever they said is unknown, so the cache is read again.
struct Undecodable { std::string what; };
struct TableUpsert { nft::TableId table; uint32_t flags = 0; std::optional<uint32_t> owner; };
struct TableRemoved { nft::TableId table; };
struct ChainUpsert { nft::TableId table; std::string name; ObservedChain chain; };
struct ChainRemoved { nft::TableId table; std::string name; };
/// A set's definition; its elements come separately.
struct SetUpsert { nft::TableId table; std::string name; ObservedSet set; };
struct SetRemoved { nft::TableId table; std::string name; };
struct RuleUpsert { nft::TableId table; ObservedRule rule; };
struct RuleRemoved { nft::TableId table; uint64_t handle = 0; };
/// Interval points (plain sets) or whole elements (concatenated sets).
struct ElementsAdded {
  SetRef set;
  std::vector<std::pair<IpAddress, bool>> points;  ///< (key, is_start)
  std::vector<nft::Element> elements;
};
struct ElementsRemoved {
  SetRef set;
  std::vector<std::pair<IpAddress, bool>> points;
  std::vector<nft::Element> elements;
};

}  // namespace arpguard::delta

namespace arpguard {

using Delta = std::variant<delta::LinkUpsert, delta::LinkRemoved, delta::AddressUpsert, delta::AddressRemoved,
                           delta::RouteUpsert, delta::RouteRemoved, delta::TableUpsert, delta::TableRemoved,
                           delta::ChainUpsert, delta::ChainRemoved, delta::SetUpsert, delta::SetRemoved,
                           delta::RuleUpsert, delta::RuleRemoved, delta::ElementsAdded, delta::ElementsRemoved,
                           delta::PolicyRouteUpsert, delta::PolicyRouteRemoved, delta::RoutingRuleUpsert,
                           delta::RoutingRuleRemoved, delta::RoutingChanged, delta::Undecodable>;

/// One decoded notification.
struct KernelEvent {
  uint32_t sender_portid = 0;  ///< netlink port whose request caused it; 0 when the kernel itself did
  Delta delta;
};

/// What a delta touched.
struct Touched {
  bool all = false;              ///< everything is in question (a link came, went or was renamed)
  std::vector<IpRange> regions;  ///< address regions (VIPs, routes, elements)
  bool host = false;             ///< links, addresses of ARP-facing links, table structure
  bool changed = false;          ///< the cache differs from before
  bool resync = false;           ///< the delta did not fit the cache: read everything again
  bool every_vip = false;        ///< each VIP's protection is in question (a table or set changed)
  bool routing = false;          ///< routes or rules changed: ARP flux to analyse again
  /// Addresses of links other than loopback changed: an interface's ARP sender
  /// (its primary address) may have moved, and ARP flux is to analyse again.
  bool link_addresses = false;

  void merge(Touched other);
};

/// Folds `delta` into `observed`.
Touched apply_delta(Observed& observed, const Delta& delta);

/// An element of an interval set as the kernel keeps it: its start, and the
/// flagged end one past its last address (none when it runs to the top).
std::vector<std::pair<IpAddress, bool>> interval_points(const nft::Element& element);

/// What the kernel notifies for an element change it committed; nullopt for
/// other changes. With it, an acknowledged transaction updates a picture of
/// the set without reading 100,000 elements back.
std::optional<Delta> committed_delta(const NftChange& change);

/// "RTM_DELADDR 192.0.2.10/32 dev lo", "NFT_MSG_DELTABLE arp arpguard": for logs.
std::string describe(const Delta& delta, const Observed& observed);

/// The deltas that turn `before` into `after` for what events can report;
/// empty when equal. For the audit: each one is a divergence of the cache.
std::vector<std::string> divergences(const Observed& cache, const Observed& fresh);

}  // namespace arpguard
