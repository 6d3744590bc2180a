#include "rules/tables.h"

// libc networking headers before the kernel uapi ones, which defer to them.
#include <arpa/inet.h>
#include <net/if.h>

#include <fmt/format.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter_arp.h>

#include "core/wire.h"
#include "rules/expr.h"

namespace arpguard::rules {

using nft::ChainSpec;
using nft::Element;
using nft::KeyField;
using nft::RuleRole;
using nft::RuleSpec;
using nft::SetSpec;
using nft::TableFamily;
using nft::TableSpec;

namespace {

// ARP header offsets from the network header (Ethernet, IPv4: hlen 6, plen 4).
constexpr uint32_t kArpOperationOffset = 6;
constexpr uint32_t kArpSenderIpOffset = 14;
constexpr uint32_t kArpTargetIpOffset = 24;
constexpr uint16_t kArpOpRequest = 1;
// ICMPv6: type at 0; a neighbour solicitation's or advertisement's target at 8.
constexpr uint8_t kIcmpv6 = 58;
constexpr uint8_t kNeighbourSolicitation = 135;
constexpr uint8_t kNeighbourAdvertisement = 136;
constexpr uint32_t kNdTargetOffset = 8;
// Destination address in the IPv4 / IPv6 header; destination port in TCP and UDP.
constexpr uint32_t kIpv4DaddrOffset = 16;
constexpr uint32_t kIpv6DaddrOffset = 24;
constexpr uint32_t kIpv6SaddrOffset = 8;
constexpr uint32_t kDportOffset = 2;

const std::string kVips(kVipSet);

std::string one_byte(uint8_t value) { return std::string(1, static_cast<char>(value)); }

std::string interface_bytes(const std::string& name) {
  std::string bytes(IFNAMSIZ, '\0');
  name.copy(bytes.data(), std::min(name.size(), bytes.size() - 1));
  return bytes;
}

RuleSpec rule(std::string chain, RuleRole role, std::string text, std::vector<nft::Expr> exprs,
              std::string interface = {}) {
  std::vector<nft::Expr> match = nft::normalized(exprs);
  return RuleSpec{std::move(chain), std::move(exprs), std::move(match), std::move(text), role, std::move(interface)};
}

RuleSpec arp_input_drop() {
  return rule("input", RuleRole::kArpDropRequests,
              "arp operation request arp daddr ip @vips counter packets 0 bytes 0 drop",
              {nft::payload_load(NFT_PAYLOAD_NETWORK_HEADER, kArpOperationOffset, 2, NFT_REG_1),
               nft::cmp_eq(nft::be16_bytes(kArpOpRequest), NFT_REG_1),
               nft::payload_load(NFT_PAYLOAD_NETWORK_HEADER, kArpTargetIpOffset, 4, NFT_REG_1),
               nft::lookup(kVips, NFT_REG_1), nft::counter(), nft::verdict(NF_DROP)});
}

std::string quoted(std::string_view text) { return "\"" + std::string(text) + "\""; }

// limit rate R/second burst R packets log prefix "P" group G
void add_log(std::vector<nft::Expr>& exprs, std::string& text, std::string_view prefix, uint64_t per_second,
             const Watch& watch) {
  exprs.push_back(nft::limit_packets(per_second, 1, static_cast<uint32_t>(per_second)));
  exprs.push_back(nft::log_group(std::string(prefix), watch.group));
  text += fmt::format(" limit rate {}/second burst {} packets log prefix {} group {}", per_second, per_second,
                      quoted(prefix), watch.group);
}

// ARP frames whose sender IP (claim, leak) or, for requests, target IP (ask) is in `set`.
RuleSpec arp_watch(std::string chain, RuleRole role, const std::string& set, const Watch& watch) {
  std::vector<nft::Expr> exprs;
  std::string text;
  if (role == RuleRole::kWatchAsk) {
    exprs = {nft::payload_load(NFT_PAYLOAD_NETWORK_HEADER, kArpOperationOffset, 2, NFT_REG_1),
             nft::cmp_eq(nft::be16_bytes(kArpOpRequest), NFT_REG_1),
             nft::payload_load(NFT_PAYLOAD_NETWORK_HEADER, kArpTargetIpOffset, 4, NFT_REG_1),
             nft::lookup(set, NFT_REG_1)};
    text = "arp operation request arp daddr ip @" + set;
  } else {
    exprs = {nft::payload_load(NFT_PAYLOAD_NETWORK_HEADER, kArpSenderIpOffset, 4, NFT_REG_1), nft::lookup(set, NFT_REG_1)};
    text = "arp saddr ip @" + set;
  }
  const std::string_view prefix = role == RuleRole::kWatchClaim ? kLogPrefixClaim
                                  : role == RuleRole::kWatchAsk ? kLogPrefixAsk
                                                                : kLogPrefixLeak;
  add_log(exprs, text, prefix, role == RuleRole::kWatchAsk ? kWatchAsksPerSecond : kWatchClaimsPerSecond, watch);
  return rule(std::move(chain), role, std::move(text), std::move(exprs));
}

// Neighbour solicitations (ask) or advertisements (claim, leak) whose target is in `set`.
RuleSpec ndp_watch(std::string chain, RuleRole role, const std::string& set, const Watch& watch);

RuleSpec arp_output(const ArpOutput& output) {
  std::vector<nft::Expr> exprs{nft::meta_load(NFT_META_OIFNAME, NFT_REG_1),
                               nft::cmp_eq(interface_bytes(output.interface), NFT_REG_1),
                               nft::payload_load(NFT_PAYLOAD_NETWORK_HEADER, kArpSenderIpOffset, 4, NFT_REG_1),
                               nft::lookup(kVips, NFT_REG_1), nft::counter()};
  const std::string match = fmt::format("oifname \"{}\" arp saddr ip @vips counter packets 0 bytes 0", output.interface);
  if (!output.real_ip) {
    exprs.push_back(nft::verdict(NF_DROP));
    return rule("output", RuleRole::kArpDropAnnouncement, match + " drop", std::move(exprs), output.interface);
  }
  const auto ip = output.real_ip->bytes();
  exprs.push_back(nft::immediate_data(std::string(ip.begin(), ip.begin() + 4), NFT_REG_1));
  exprs.push_back(nft::payload_write(NFT_PAYLOAD_NETWORK_HEADER, kArpSenderIpOffset, 4, NFT_REG_1));
  return rule("output", RuleRole::kArpRewriteSender,
              fmt::format("{} arp saddr ip set {}", match, output.real_ip->str()), std::move(exprs), output.interface);
}

RuleSpec ndp_drop(std::string chain, uint8_t icmp_type) {
  const bool solicitation = icmp_type == kNeighbourSolicitation;
  return rule(std::move(chain), solicitation ? RuleRole::kNdpDropSolicitation : RuleRole::kNdpDropAdvertisement,
              fmt::format("icmpv6 type {} @th,64,128 @vips counter packets 0 bytes 0 drop",
                          solicitation ? "nd-neighbor-solicit" : "nd-neighbor-advert"),
              {nft::meta_load(NFT_META_L4PROTO, NFT_REG_1), nft::cmp_eq(one_byte(kIcmpv6), NFT_REG_1),
               nft::payload_load(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1, NFT_REG_1),
               nft::cmp_eq(one_byte(icmp_type), NFT_REG_1),
               nft::payload_load(NFT_PAYLOAD_TRANSPORT_HEADER, kNdTargetOffset, 16, NFT_REG_1),
               nft::lookup(kVips, NFT_REG_1), nft::counter(), nft::verdict(NF_DROP)});
}

// Solicitations this host sends from a VIP: the kernel takes the source of the
// packet that needs the neighbour when that address is on the outgoing device
// (a VIP misplaced there, until arpguard moves it), and the source link-layer
// option then teaches the neighbour this host's MAC for the VIP.
RuleSpec ndp_drop_vip_solicitation() {
  return rule("output", RuleRole::kNdpDropVipSolicitation,
              "icmpv6 type nd-neighbor-solicit ip6 saddr @vips counter packets 0 bytes 0 drop",
              {nft::meta_load(NFT_META_L4PROTO, NFT_REG_1), nft::cmp_eq(one_byte(kIcmpv6), NFT_REG_1),
               nft::payload_load(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1, NFT_REG_1),
               nft::cmp_eq(one_byte(kNeighbourSolicitation), NFT_REG_1),
               nft::payload_load(NFT_PAYLOAD_NETWORK_HEADER, kIpv6SaddrOffset, 16, NFT_REG_1),
               nft::lookup(kVips, NFT_REG_1), nft::counter(), nft::verdict(NF_DROP)});
}

RuleSpec ndp_watch(std::string chain, RuleRole role, const std::string& set, const Watch& watch) {
  const bool ask = role == RuleRole::kWatchAsk;
  const uint8_t icmp_type = ask ? kNeighbourSolicitation : kNeighbourAdvertisement;
  std::vector<nft::Expr> exprs{nft::meta_load(NFT_META_L4PROTO, NFT_REG_1), nft::cmp_eq(one_byte(kIcmpv6), NFT_REG_1),
                               nft::payload_load(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1, NFT_REG_1),
                               nft::cmp_eq(one_byte(icmp_type), NFT_REG_1),
                               nft::payload_load(NFT_PAYLOAD_TRANSPORT_HEADER, kNdTargetOffset, 16, NFT_REG_1),
                               nft::lookup(set, NFT_REG_1)};
  std::string text = fmt::format("icmpv6 type {} @th,64,128 @{}", ask ? "nd-neighbor-solicit" : "nd-neighbor-advert", set);
  const std::string_view prefix = role == RuleRole::kWatchClaim ? kLogPrefixClaim : ask ? kLogPrefixAsk : kLogPrefixLeak;
  add_log(exprs, text, prefix, ask ? kWatchAsksPerSecond : kWatchClaimsPerSecond, watch);
  return rule(std::move(chain), role, std::move(text), std::move(exprs));
}

// daddr . l4proto . dport into consecutive registers, as nft lays out a concatenation.
std::vector<nft::Expr> concat_key(Family family) {
  const bool v4 = family == Family::kV4;
  // After the address, the next 32-bit registers. An IPv6 address fills the whole
  // first 16-byte register, so the protocol starts the second: the kernel names
  // such a register by its 16-byte number (NFT_REG_2), as nft does.
  const uint32_t proto_reg = v4 ? NFT_REG32_01 : NFT_REG_2;
  const uint32_t port_reg = v4 ? NFT_REG32_02 : NFT_REG32_05;
  return {nft::payload_load(NFT_PAYLOAD_NETWORK_HEADER, v4 ? kIpv4DaddrOffset : kIpv6DaddrOffset, v4 ? 4 : 16,
                            NFT_REG_1),
          nft::meta_load(NFT_META_L4PROTO, proto_reg),
          nft::byteorder(proto_reg, proto_reg, NFT_BYTEORDER_HTON, 1, 2),
          nft::payload_load(NFT_PAYLOAD_TRANSPORT_HEADER, kDportOffset, 2, port_reg)};
}

RuleSpec nat_keep(Family family) {
  std::vector<nft::Expr> exprs = concat_key(family);
  exprs.push_back(nft::lookup(std::string(kKeepSet), NFT_REG_1));
  exprs.push_back(nft::counter());
  exprs.push_back(nft::redirect(std::nullopt, 0));
  return rule("prerouting", RuleRole::kRedirectKeepPort,
              fmt::format("{} daddr . meta l4proto . th dport @keep counter packets 0 bytes 0 redirect",
                          family == Family::kV4 ? "ip" : "ip6"),
              std::move(exprs));
}

RuleSpec nat_to(Family family, uint8_t protocol) {
  std::vector<nft::Expr> exprs{nft::meta_load(NFT_META_L4PROTO, NFT_REG_1), nft::cmp_eq(one_byte(protocol), NFT_REG_1),
                               nft::counter()};
  for (nft::Expr& e : concat_key(family)) exprs.push_back(std::move(e));
  exprs.push_back(nft::lookup(std::string(kToMap), NFT_REG_1, NFT_REG_1));
  exprs.push_back(nft::redirect(NFT_REG_1, NF_NAT_RANGE_PROTO_SPECIFIED));
  const char* name = protocol == 6 ? "tcp" : "udp";
  return rule("prerouting", RuleRole::kRedirectToPort,
              fmt::format("meta l4proto {} counter packets 0 bytes 0 redirect to :{} daddr . meta l4proto . {} dport "
                          "map @to",
                          name, family == Family::kV4 ? "ip" : "ip6", name),
              std::move(exprs));
}

}  // namespace

nft::TableId arp_table_id() { return {TableFamily::kArp, std::string(kTable)}; }
nft::TableId ndp_table_id() { return {TableFamily::kIp6, std::string(kTable)}; }
nft::TableId nat_table_id(Family family) {
  return {family == Family::kV4 ? TableFamily::kIp : TableFamily::kIp6, std::string(kNatTable)};
}

TableSpec arp_table(std::vector<Element> vips, const std::vector<ArpOutput>& outputs, std::optional<Watch> watch) {
  TableSpec table{arp_table_id(), {}, {}, {}};
  table.sets.push_back(SetSpec{kVips, {KeyField::kIpv4}, std::nullopt, std::move(vips)});
  const std::string watched(kWatchedSet);
  if (watch) table.sets.push_back(SetSpec{watched, {KeyField::kIpv4}, std::nullopt, {}});
  table.chains = {ChainSpec{"input", "filter", NF_ARP_IN, 0}, ChainSpec{"output", "filter", NF_ARP_OUT, 0}};
  if (watch) {
    for (RuleRole role : {RuleRole::kWatchClaim, RuleRole::kWatchAsk}) {
      for (const std::string& set : {kVips, watched}) table.rules.push_back(arp_watch("input", role, set, *watch));
    }
  }
  table.rules.push_back(arp_input_drop());
  for (const ArpOutput& output : outputs) table.rules.push_back(arp_output(output));
  if (watch) {
    for (const std::string& set : {kVips, watched}) table.rules.push_back(arp_watch("output", RuleRole::kWatchLeak, set, *watch));
  }
  return table;
}

TableSpec ndp_table(std::vector<Element> vips, std::optional<Watch> watch) {
  TableSpec table{ndp_table_id(), {}, {}, {}};
  table.sets.push_back(SetSpec{kVips, {KeyField::kIpv6}, std::nullopt, std::move(vips)});
  const std::string watched(kWatchedSet);
  if (watch) table.sets.push_back(SetSpec{watched, {KeyField::kIpv6}, std::nullopt, {}});
  table.chains = {ChainSpec{"input", "filter", NF_INET_LOCAL_IN, 0}, ChainSpec{"output", "filter", NF_INET_LOCAL_OUT, 0}};
  if (watch) {
    for (RuleRole role : {RuleRole::kWatchClaim, RuleRole::kWatchAsk}) {
      for (const std::string& set : {kVips, watched}) table.rules.push_back(ndp_watch("input", role, set, *watch));
    }
  }
  table.rules.push_back(ndp_drop("input", kNeighbourSolicitation));
  table.rules.push_back(ndp_drop("output", kNeighbourAdvertisement));
  table.rules.push_back(ndp_drop_vip_solicitation());
  // Advertisements for @vips are dropped above: only the watched ones can still leave.
  if (watch) table.rules.push_back(ndp_watch("output", RuleRole::kWatchLeak, watched, *watch));
  return table;
}

TableSpec nat_table(Family family, std::vector<Element> keep, std::vector<Element> to) {
  const KeyField address = family == Family::kV4 ? KeyField::kIpv4 : KeyField::kIpv6;
  const std::vector<KeyField> key{address, KeyField::kProto, KeyField::kPort};
  TableSpec table{nat_table_id(family), {}, {}, {}};
  table.sets.push_back(SetSpec{std::string(kKeepSet), key, std::nullopt, std::move(keep)});
  table.sets.push_back(SetSpec{std::string(kToMap), key, KeyField::kPort, std::move(to)});
  table.chains = {ChainSpec{"prerouting", "nat", NF_INET_PRE_ROUTING, -100}};
  table.rules.push_back(nat_keep(family));
  table.rules.push_back(nat_to(family, 6));
  table.rules.push_back(nat_to(family, 17));
  return table;
}

}  // namespace arpguard::rules
