#include "rules/nft_spec.h"

#include <fmt/format.h>
#include <libnftnl/expr.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter_arp.h>

#include <algorithm>

namespace arpguard::nft {

std::string_view to_string(TableFamily family) {
  switch (family) {
    case TableFamily::kIp: return "ip";
    case TableFamily::kArp: return "arp";
    case TableFamily::kIp6: return "ip6";
  }
  return "?";
}

std::string TableId::str() const { return fmt::format("{} {}", to_string(family), name); }

std::string_view to_string(RuleRole role) {
  switch (role) {
    case RuleRole::kArpDropRequests: return "drop_requests";
    case RuleRole::kArpRewriteSender: return "rewrite_sender";
    case RuleRole::kArpDropAnnouncement: return "drop_announcements";
    case RuleRole::kNdpDropSolicitation: return "drop_solicitations";
    case RuleRole::kNdpDropAdvertisement: return "drop_advertisements";
    case RuleRole::kNdpDropVipSolicitation: return "drop_vip_solicitations";
    case RuleRole::kRedirectKeepPort: return "redirect";
    case RuleRole::kRedirectToPort: return "redirect_to_port";
    case RuleRole::kWatchClaim: return "watch_claims";
    case RuleRole::kWatchAsk: return "watch_asks";
    case RuleRole::kWatchLeak: return "watch_leaks";
  }
  return "?";
}

namespace {

bool is_data_attribute(const Expr& expr, uint16_t type) {
  return (expr.name == "cmp" && type == NFTNL_EXPR_CMP_DATA) || (expr.name == "immediate" && type == NFTNL_EXPR_IMM_DATA);
}

bool ignored_attribute(const Expr& expr, uint16_t type) {
  return (expr.name == "counter") || (expr.name == "lookup" && type == NFTNL_EXPR_LOOKUP_SET_ID);
}

bool all_zero(const std::string& bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](char c) { return c == 0; });
}

}  // namespace

std::vector<Expr> normalized(std::vector<Expr> exprs) {
  for (Expr& expr : exprs) {
    std::erase_if(expr.attrs, [&](const ExprAttr& attr) {
      if (ignored_attribute(expr, attr.type)) return true;
      return !is_data_attribute(expr, attr.type) && attr.bytes.size() <= 8 && all_zero(attr.bytes);
    });
    std::sort(expr.attrs.begin(), expr.attrs.end());
  }
  return exprs;
}

namespace {

std::string proto_name(uint8_t protocol) {
  switch (protocol) {
    case 6: return "tcp";
    case 17: return "udp";
    default: return std::to_string(protocol);
  }
}

}  // namespace

std::string Element::str() const {
  if (protocol == 0) return addresses.str();
  std::string out = fmt::format("{} . {} . ", addresses.str(), proto_name(protocol));
  out += port_first == port_last ? std::to_string(port_first) : fmt::format("{}-{}", port_first, port_last);
  if (to_port != 0) out += fmt::format(" : {}", to_port);
  return out;
}

namespace {

constexpr uint32_t kTypeBits = 6;  // nftables combines concatenated datatypes 6 bits each

uint32_t field_len(KeyField field) {
  switch (field) {
    case KeyField::kIpv4: return 4;
    case KeyField::kIpv6: return 16;
    case KeyField::kProto: return 1;
    case KeyField::kPort: return 2;
  }
  return 0;
}

std::string_view field_name(KeyField field) {
  switch (field) {
    case KeyField::kIpv4: return "ipv4_addr";
    case KeyField::kIpv6: return "ipv6_addr";
    case KeyField::kProto: return "inet_proto";
    case KeyField::kPort: return "inet_service";
  }
  return "?";
}

}  // namespace

uint32_t SetSpec::flags() const {
  uint32_t flags = NFT_SET_INTERVAL;
  if (concatenated()) flags |= NFT_SET_CONCAT;
  if (is_map()) flags |= NFT_SET_MAP;
  return flags;
}

uint32_t SetSpec::key_type() const {
  uint32_t type = 0;
  for (KeyField field : key) type = (type << kTypeBits) | static_cast<uint32_t>(field);
  return type;
}

uint32_t SetSpec::key_len() const {
  if (!concatenated()) return field_len(key.front());
  uint32_t len = 0;
  for (KeyField field : key) len += (field_len(field) + 3) / 4 * 4;
  return len;
}

std::string SetSpec::type_text() const {
  std::string out;
  for (KeyField field : key) {
    if (!out.empty()) out += " . ";
    out += field_name(field);
  }
  if (data) out += fmt::format(" : {}", field_name(*data));
  return out;
}

const SetSpec* TableSpec::set(std::string_view name) const {
  for (const SetSpec& s : sets) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

const ChainSpec* TableSpec::chain(std::string_view name) const {
  for (const ChainSpec& c : chains) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

namespace {

std::string hook_name(TableFamily family, uint32_t hook) {
  if (family == TableFamily::kArp) return hook == NF_ARP_IN ? "input" : "output";
  switch (hook) {
    case NF_INET_PRE_ROUTING: return "prerouting";
    case NF_INET_LOCAL_IN: return "input";
    case NF_INET_FORWARD: return "forward";
    case NF_INET_LOCAL_OUT: return "output";
    case NF_INET_POST_ROUTING: return "postrouting";
    default: return "?";
  }
}

std::string priority_name(const ChainSpec& chain) {
  if (chain.priority == 0) return "filter";
  if (chain.type == "nat" && chain.priority == -100) return "dstnat";
  return std::to_string(chain.priority);
}

void render_set(const SetSpec& set, std::string& out) {
  out += fmt::format("\t{} {} {{\n\t\ttype {}\n\t\tflags interval\n", set.is_map() ? "map" : "set", set.name,
                     set.type_text());
  if (!set.elements.empty()) {
    // nft 1.0.6 prints keys of up to 64 bits two to a line, longer ones one per line.
    const size_t per_line = set.key_len() * 8 <= 64 ? 2 : 1;
    out += "\t\telements = { ";
    for (size_t i = 0; i < set.elements.size(); ++i) {
      if (i > 0) out += (i % per_line == 0) ? ",\n\t\t\t     " : ", ";
      out += set.elements[i].str();
    }
    out += " }\n";
  }
  out += "\t}\n";
}

}  // namespace

std::string render_nft(const TableSpec& table) {
  std::string out = fmt::format("table {} {{\n", table.id.str());
  bool first = true;
  for (const SetSpec& set : table.sets) {
    if (!first) out += "\n";
    first = false;
    render_set(set, out);
  }
  for (const ChainSpec& chain : table.chains) {
    if (!first) out += "\n";
    first = false;
    out += fmt::format("\tchain {} {{\n\t\ttype {} hook {} priority {}; policy accept;\n", chain.name, chain.type,
                       hook_name(table.id.family, chain.hook), priority_name(chain));
    for (const RuleSpec& rule : table.rules) {
      if (rule.chain == chain.name) out += "\t\t" + rule.text + "\n";
    }
    out += "\t}\n";
  }
  out += "}\n";
  return out;
}

}  // namespace arpguard::nft
