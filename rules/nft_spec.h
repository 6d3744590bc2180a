// nftables tables as values: family, name, sets with their elements, chains
// and rules. Every table arpguard installs (the ARP table, the IPv6 NDP
// table, the redirect NAT tables) is one TableSpec, so Diff, the libnftnl
// codec, golden text and status treat them alike.
//
// A rule is its list of expressions in a small IR (expression name and
// attribute bytes, as libnftnl names them) plus the text nft prints for it.
// Rules are compared by IR: what the kernel dumps is decoded to the same IR,
// so one of arpguard's rules is recognised exactly, and anything else is
// foreign. Pure values; no syscalls. Thread-compatible.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/ip.h"

namespace arpguard::nft {

/// NFPROTO_* values.
enum class TableFamily : uint8_t { kIp = 2, kArp = 3, kIp6 = 10 };

/// "arp", "ip", "ip6"
std::string_view to_string(TableFamily family);

struct TableId {
  TableFamily family = TableFamily::kArp;
  std::string name;

  auto operator<=>(const TableId&) const = default;
  /// "arp arpguard"
  std::string str() const;
};

/// Table flags (linux/netfilter/nf_tables.h; PERSIST is newer than Debian 12's headers).
inline constexpr uint32_t kTableFlagOwner = 0x2;
inline constexpr uint32_t kTableFlagPersist = 0x4;

/// One attribute of an expression: its libnftnl attribute number and value
/// bytes, as nftnl_expr_get() returns them (strings with their NUL).
struct ExprAttr {
  uint16_t type = 0;
  std::string bytes;

  auto operator<=>(const ExprAttr&) const = default;
};

/// One expression: "payload", "cmp", "lookup", ... with attributes sorted by type.
struct Expr {
  std::string name;
  std::vector<ExprAttr> attrs;

  auto operator<=>(const Expr&) const = default;
};

/// Compares what matters: counter values, set ids and zero-valued numeric
/// attributes (which the kernel may or may not echo) are dropped.
std::vector<Expr> normalized(std::vector<Expr> exprs);

/// What a rule of arpguard's is for, for status and metrics.
enum class RuleRole : uint8_t {
  kArpDropRequests,      ///< input: ARP requests for a VIP
  kArpRewriteSender,     ///< output: a VIP as ARP sender becomes the interface's real IP
  kArpDropAnnouncement,  ///< output: a VIP as ARP sender on an interface without IPv4
  kNdpDropSolicitation,  ///< input: neighbour solicitations for a VIP
  kNdpDropAdvertisement, ///< output: neighbour advertisements for a VIP
  kNdpDropVipSolicitation, ///< output: neighbour solicitations with a VIP as source (one misplaced on a device)
  kRedirectKeepPort,     ///< prerouting: redirect to the same port
  kRedirectToPort,       ///< prerouting: redirect to a mapped port
  kWatchClaim,           ///< input: log a frame that claims a VIP (the wire watch)
  kWatchAsk,             ///< input: log a request or solicitation for a VIP
  kWatchLeak,            ///< output: log a frame of this host's that still claims a VIP
};
std::string_view to_string(RuleRole role);

struct RuleSpec {
  std::string chain;
  std::vector<Expr> exprs;  ///< as sent to the kernel
  std::vector<Expr> match;  ///< normalized(exprs): what a dumped copy of it decodes to
  std::string text;         ///< as `nft list` prints it, counters at zero
  RuleRole role = RuleRole::kArpDropRequests;
  std::string interface;    ///< output rules: the interface they match

  /// The same rule: chain and normalized expressions (text and role follow from them).
  bool same_as(const std::string& other_chain, const std::vector<Expr>& other_normalized) const {
    return chain == other_chain && match == other_normalized;
  }
};

/// Types of a set key's fields (nftables datatype numbers).
enum class KeyField : uint8_t { kIpv4 = 7, kIpv6 = 8, kProto = 12, kPort = 13 };

/// One element: an address range, and for concatenated keys a protocol and
/// port range; for maps the target port.
struct Element {
  IpRange addresses;
  uint8_t protocol = 0;
  uint16_t port_first = 0;
  uint16_t port_last = 0;
  uint16_t to_port = 0;

  auto operator<=>(const Element&) const = default;
  /// nft's text: "10.0.0.0/24", "10.0.0.1 . tcp . 80", "10.0.0.1 . tcp . 8080 : 18080"
  std::string str() const;
};

struct SetSpec {
  std::string name;
  std::vector<KeyField> key;       ///< one field, or several (a concatenation)
  std::optional<KeyField> data;    ///< a map's value type
  std::vector<Element> elements;   ///< sorted, non-overlapping

  bool concatenated() const { return key.size() > 1; }
  bool is_map() const { return data.has_value(); }
  /// NFT_SET_* flags: interval, plus concat and map where they apply.
  uint32_t flags() const;
  /// nftables' datatype number for the key (concatenations combined as nft does).
  uint32_t key_type() const;
  /// Key length in bytes (each field of a concatenation padded to 4 bytes).
  uint32_t key_len() const;
  /// "ipv4_addr", "ipv4_addr . inet_proto . inet_service"
  std::string type_text() const;
};

struct ChainSpec {
  std::string name;
  std::string type;     ///< "filter" or "nat"
  uint32_t hook = 0;    ///< NF_INET_* or NF_ARP_*
  int32_t priority = 0;

  bool operator==(const ChainSpec&) const = default;
};

struct TableSpec {
  TableId id;
  std::vector<SetSpec> sets;
  std::vector<ChainSpec> chains;
  std::vector<RuleSpec> rules;

  const SetSpec* set(std::string_view name) const;
  const ChainSpec* chain(std::string_view name) const;
};

/// The table as `nft list table` prints it (nftables 1.0.6), counters at zero,
/// no flags line.
std::string render_nft(const TableSpec& table);

}  // namespace arpguard::nft
