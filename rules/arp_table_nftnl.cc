#include "rules/arp_table_nftnl.h"

// libc networking headers before the kernel uapi ones, which defer to them.
#include <arpa/inet.h>
#include <net/if.h>

#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter_arp.h>

#include <array>
#include <cstring>
#include <algorithm>
#include <string>

namespace arpguard::rules {

void NftnlFree::operator()(nftnl_rule* p) const { nftnl_rule_free(p); }
void NftnlFree::operator()(nftnl_set* p) const { nftnl_set_free(p); }
void NftnlFree::operator()(nftnl_chain* p) const { nftnl_chain_free(p); }
void NftnlFree::operator()(nftnl_table* p) const { nftnl_table_free(p); }

namespace {

// ARP header offsets from the network header (Ethernet, IPv4: hlen 6, plen 4).
constexpr uint32_t kArpOperationOffset = 6;
constexpr uint32_t kArpSenderIpOffset = 14;
constexpr uint32_t kArpTargetIpOffset = 24;
constexpr uint16_t kArpOpRequest = 1;
constexpr uint32_t kIpv4AddrType = 7;  // nftables datatype TYPE_IPADDR

const std::string kTableName(kTable);
const std::string kSetName(kSet);

using IfName = std::array<char, IFNAMSIZ>;

IfName if_name_bytes(const std::string& name) {
  IfName bytes{};
  std::memcpy(bytes.data(), name.data(), std::min(name.size(), bytes.size() - 1));
  return bytes;
}

void add_payload_load(nftnl_rule* rule, uint32_t offset, uint32_t len) {
  nftnl_expr* e = nftnl_expr_alloc("payload");
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
  nftnl_rule_add_expr(rule, e);
}

void add_cmp_eq(nftnl_rule* rule, const void* data, uint32_t len) {
  nftnl_expr* e = nftnl_expr_alloc("cmp");
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, NFT_CMP_EQ);
  nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
  nftnl_rule_add_expr(rule, e);
}

void add_lookup_vips(nftnl_rule* rule) {
  nftnl_expr* e = nftnl_expr_alloc("lookup");
  nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
  nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, kSetName.c_str());
  nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID, kSetId);
  nftnl_rule_add_expr(rule, e);
}

void add_counter(nftnl_rule* rule) { nftnl_rule_add_expr(rule, nftnl_expr_alloc("counter")); }

void add_verdict_drop(nftnl_rule* rule) {
  nftnl_expr* e = nftnl_expr_alloc("immediate");
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, NF_DROP);
  nftnl_rule_add_expr(rule, e);
}

void add_match_oifname(nftnl_rule* rule, const std::string& interface) {
  nftnl_expr* meta = nftnl_expr_alloc("meta");
  nftnl_expr_set_u32(meta, NFTNL_EXPR_META_KEY, NFT_META_OIFNAME);
  nftnl_expr_set_u32(meta, NFTNL_EXPR_META_DREG, NFT_REG_1);
  nftnl_rule_add_expr(rule, meta);
  const IfName name = if_name_bytes(interface);
  add_cmp_eq(rule, name.data(), name.size());
}

void add_set_sender(nftnl_rule* rule, Ipv4 real_ip) {
  const uint32_t be = real_ip.network_order();
  nftnl_expr* imm = nftnl_expr_alloc("immediate");
  nftnl_expr_set_u32(imm, NFTNL_EXPR_IMM_DREG, NFT_REG_1);
  nftnl_expr_set(imm, NFTNL_EXPR_IMM_DATA, &be, sizeof(be));
  nftnl_rule_add_expr(rule, imm);
  nftnl_expr* write = nftnl_expr_alloc("payload");
  nftnl_expr_set_u32(write, NFTNL_EXPR_PAYLOAD_SREG, NFT_REG_1);
  nftnl_expr_set_u32(write, NFTNL_EXPR_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER);
  nftnl_expr_set_u32(write, NFTNL_EXPR_PAYLOAD_OFFSET, kArpSenderIpOffset);
  nftnl_expr_set_u32(write, NFTNL_EXPR_PAYLOAD_LEN, sizeof(be));
  nftnl_expr_set_u32(write, NFTNL_EXPR_PAYLOAD_CSUM_TYPE, NFT_PAYLOAD_CSUM_NONE);
  nftnl_rule_add_expr(rule, write);
}

// A flat view of one expression, enough to recognise arpguard's rules.
struct ExprView {
  std::string name;
  nftnl_expr* expr = nullptr;

  uint32_t u32(uint16_t attr) const { return nftnl_expr_is_set(expr, attr) ? nftnl_expr_get_u32(expr, attr) : ~0u; }
  std::string bytes(uint16_t attr) const {
    uint32_t len = 0;
    const void* data = nftnl_expr_get(expr, attr, &len);
    return data ? std::string(static_cast<const char*>(data), len) : std::string();
  }
  bool is_payload_load(uint32_t offset, uint32_t len) const {
    return name == "payload" && u32(NFTNL_EXPR_PAYLOAD_DREG) == NFT_REG_1 &&
           u32(NFTNL_EXPR_PAYLOAD_BASE) == NFT_PAYLOAD_NETWORK_HEADER && u32(NFTNL_EXPR_PAYLOAD_OFFSET) == offset &&
           u32(NFTNL_EXPR_PAYLOAD_LEN) == len && !nftnl_expr_is_set(expr, NFTNL_EXPR_PAYLOAD_SREG);
  }
  bool is_cmp_eq(const std::string& data) const {
    return name == "cmp" && u32(NFTNL_EXPR_CMP_SREG) == NFT_REG_1 && u32(NFTNL_EXPR_CMP_OP) == NFT_CMP_EQ &&
           bytes(NFTNL_EXPR_CMP_DATA) == data;
  }
  bool is_lookup_vips() const {
    return name == "lookup" && u32(NFTNL_EXPR_LOOKUP_SREG) == NFT_REG_1 &&
           nftnl_expr_is_set(expr, NFTNL_EXPR_LOOKUP_SET) &&
           nftnl_expr_get_str(expr, NFTNL_EXPR_LOOKUP_SET) == kSetName &&
           (!nftnl_expr_is_set(expr, NFTNL_EXPR_LOOKUP_FLAGS) || nftnl_expr_get_u32(expr, NFTNL_EXPR_LOOKUP_FLAGS) == 0) &&
           !nftnl_expr_is_set(expr, NFTNL_EXPR_LOOKUP_DREG);
  }
  bool is_drop() const {
    return name == "immediate" && u32(NFTNL_EXPR_IMM_DREG) == NFT_REG_VERDICT &&
           u32(NFTNL_EXPR_IMM_VERDICT) == static_cast<uint32_t>(NF_DROP);
  }
};

std::vector<ExprView> exprs_of(const nftnl_rule* rule) {
  std::vector<ExprView> out;
  nftnl_expr_iter* it = nftnl_expr_iter_create(rule);
  for (nftnl_expr* e = nftnl_expr_iter_next(it); e != nullptr; e = nftnl_expr_iter_next(it)) {
    out.push_back({nftnl_expr_get_str(e, NFTNL_EXPR_NAME), e});
  }
  nftnl_expr_iter_destroy(it);
  return out;
}

std::string chain_of(const nftnl_rule* rule) {
  return nftnl_rule_is_set(rule, NFTNL_RULE_CHAIN) ? nftnl_rule_get_str(rule, NFTNL_RULE_CHAIN) : "";
}

}  // namespace

TablePtr encode_table(uint32_t flags) {
  TablePtr table(nftnl_table_alloc());
  nftnl_table_set_str(table.get(), NFTNL_TABLE_NAME, kTableName.c_str());
  nftnl_table_set_u32(table.get(), NFTNL_TABLE_FAMILY, NFPROTO_ARP);
  nftnl_table_set_u32(table.get(), NFTNL_TABLE_FLAGS, flags);
  return table;
}

SetPtr encode_set() {
  SetPtr set(nftnl_set_alloc());
  nftnl_set_set_str(set.get(), NFTNL_SET_TABLE, kTableName.c_str());
  nftnl_set_set_str(set.get(), NFTNL_SET_NAME, kSetName.c_str());
  nftnl_set_set_u32(set.get(), NFTNL_SET_FAMILY, NFPROTO_ARP);
  nftnl_set_set_u32(set.get(), NFTNL_SET_ID, kSetId);
  nftnl_set_set_u32(set.get(), NFTNL_SET_KEY_TYPE, kIpv4AddrType);
  nftnl_set_set_u32(set.get(), NFTNL_SET_KEY_LEN, sizeof(uint32_t));
  nftnl_set_set_u32(set.get(), NFTNL_SET_FLAGS, NFT_SET_INTERVAL);
  return set;
}

SetPtr encode_elements(const std::vector<Ipv4Range>& vips) {
  SetPtr set(nftnl_set_alloc());
  nftnl_set_set_str(set.get(), NFTNL_SET_TABLE, kTableName.c_str());
  nftnl_set_set_str(set.get(), NFTNL_SET_NAME, kSetName.c_str());
  nftnl_set_set_u32(set.get(), NFTNL_SET_FAMILY, NFPROTO_ARP);
  nftnl_set_set_u32(set.get(), NFTNL_SET_ID, kSetId);
  for (const Ipv4Range& range : vips) {
    const uint32_t start = range.first.network_order();
    nftnl_set_elem* begin = nftnl_set_elem_alloc();
    nftnl_set_elem_set(begin, NFTNL_SET_ELEM_KEY, &start, sizeof(start));
    nftnl_set_elem_add(set.get(), begin);
    if (range.last.value == 0xffffffffu) continue;  // open-ended: no end marker
    const uint32_t end = Ipv4{range.last.value + 1}.network_order();
    nftnl_set_elem* finish = nftnl_set_elem_alloc();
    nftnl_set_elem_set(finish, NFTNL_SET_ELEM_KEY, &end, sizeof(end));
    nftnl_set_elem_set_u32(finish, NFTNL_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
    nftnl_set_elem_add(set.get(), finish);
  }
  return set;
}

ChainPtr encode_chain(std::string_view name) {
  ChainPtr chain(nftnl_chain_alloc());
  const std::string chain_name(name);
  nftnl_chain_set_str(chain.get(), NFTNL_CHAIN_TABLE, kTableName.c_str());
  nftnl_chain_set_str(chain.get(), NFTNL_CHAIN_NAME, chain_name.c_str());
  nftnl_chain_set_u32(chain.get(), NFTNL_CHAIN_FAMILY, NFPROTO_ARP);
  nftnl_chain_set_u32(chain.get(), NFTNL_CHAIN_HOOKNUM, name == kInputChain ? NF_ARP_IN : NF_ARP_OUT);
  nftnl_chain_set_s32(chain.get(), NFTNL_CHAIN_PRIO, 0);
  nftnl_chain_set_str(chain.get(), NFTNL_CHAIN_TYPE, "filter");
  nftnl_chain_set_u32(chain.get(), NFTNL_CHAIN_POLICY, NF_ACCEPT);
  return chain;
}

RulePtr encode_rule(const ArpRule& arp_rule) {
  RulePtr rule(nftnl_rule_alloc());
  const std::string chain(arp_rule.chain());
  nftnl_rule_set_str(rule.get(), NFTNL_RULE_TABLE, kTableName.c_str());
  nftnl_rule_set_str(rule.get(), NFTNL_RULE_CHAIN, chain.c_str());
  nftnl_rule_set_u32(rule.get(), NFTNL_RULE_FAMILY, NFPROTO_ARP);
  switch (arp_rule.kind) {
    case ArpRule::Kind::kInputDrop: {
      const uint16_t request = htons(kArpOpRequest);
      add_payload_load(rule.get(), kArpOperationOffset, sizeof(request));
      add_cmp_eq(rule.get(), &request, sizeof(request));
      add_payload_load(rule.get(), kArpTargetIpOffset, 4);
      add_lookup_vips(rule.get());
      add_counter(rule.get());
      add_verdict_drop(rule.get());
      break;
    }
    case ArpRule::Kind::kOutputMangle:
    case ArpRule::Kind::kOutputDrop:
      add_match_oifname(rule.get(), arp_rule.interface);
      add_payload_load(rule.get(), kArpSenderIpOffset, 4);
      add_lookup_vips(rule.get());
      add_counter(rule.get());
      if (arp_rule.kind == ArpRule::Kind::kOutputMangle) {
        add_set_sender(rule.get(), arp_rule.real_ip);
      } else {
        add_verdict_drop(rule.get());
      }
      break;
  }
  return rule;
}

std::optional<ArpRule> decode_rule(const nftnl_rule* rule) {
  const std::vector<ExprView> e = exprs_of(rule);
  const std::string chain = chain_of(rule);
  if (chain == kInputChain) {
    const uint16_t request = htons(kArpOpRequest);
    if (e.size() == 6 && e[0].is_payload_load(kArpOperationOffset, 2) &&
        e[1].is_cmp_eq(std::string(reinterpret_cast<const char*>(&request), 2)) &&
        e[2].is_payload_load(kArpTargetIpOffset, 4) && e[3].is_lookup_vips() && e[4].name == "counter" &&
        e[5].is_drop()) {
      return ArpRule::input_drop();
    }
    return std::nullopt;
  }
  if (chain != kOutputChain || e.size() < 6) return std::nullopt;
  // oifname "IF": meta load oifname, then a 16-byte compare.
  if (e[0].name != "meta" || e[0].u32(NFTNL_EXPR_META_KEY) != NFT_META_OIFNAME ||
      e[0].u32(NFTNL_EXPR_META_DREG) != NFT_REG_1 || e[1].name != "cmp" ||
      e[1].u32(NFTNL_EXPR_CMP_OP) != NFT_CMP_EQ || e[1].u32(NFTNL_EXPR_CMP_SREG) != NFT_REG_1) {
    return std::nullopt;
  }
  const std::string name_bytes = e[1].bytes(NFTNL_EXPR_CMP_DATA);
  if (name_bytes.size() != IFNAMSIZ || name_bytes.back() != '\0') return std::nullopt;
  const std::string interface(name_bytes.c_str());
  if (interface.empty() || if_name_bytes(interface) != *reinterpret_cast<const IfName*>(name_bytes.data())) {
    return std::nullopt;
  }
  if (!e[2].is_payload_load(kArpSenderIpOffset, 4) || !e[3].is_lookup_vips() || e[4].name != "counter") {
    return std::nullopt;
  }
  if (e.size() == 6 && e[5].is_drop()) return ArpRule::output_drop(interface);
  if (e.size() == 7 && e[5].name == "immediate" && e[5].u32(NFTNL_EXPR_IMM_DREG) == NFT_REG_1 &&
      e[6].name == "payload" && e[6].u32(NFTNL_EXPR_PAYLOAD_SREG) == NFT_REG_1 &&
      e[6].u32(NFTNL_EXPR_PAYLOAD_BASE) == NFT_PAYLOAD_NETWORK_HEADER &&
      e[6].u32(NFTNL_EXPR_PAYLOAD_OFFSET) == kArpSenderIpOffset && e[6].u32(NFTNL_EXPR_PAYLOAD_LEN) == 4) {
    const std::string ip = e[5].bytes(NFTNL_EXPR_IMM_DATA);
    if (ip.size() != 4) return std::nullopt;
    uint32_t be = 0;
    std::memcpy(&be, ip.data(), 4);
    return ArpRule::output_mangle(interface, Ipv4::from_network_order(be));
  }
  return std::nullopt;
}

std::pair<uint64_t, uint64_t> decode_counter(const nftnl_rule* rule) {
  for (const ExprView& view : exprs_of(rule)) {
    if (view.name == "counter") {
      return {nftnl_expr_get_u64(view.expr, NFTNL_EXPR_CTR_PACKETS), nftnl_expr_get_u64(view.expr, NFTNL_EXPR_CTR_BYTES)};
    }
  }
  return {0, 0};
}

bool set_has_expected_shape(const nftnl_set* set) {
  auto u32 = [&](uint16_t attr) { return nftnl_set_is_set(set, attr) ? nftnl_set_get_u32(set, attr) : 0u; };
  return u32(NFTNL_SET_KEY_TYPE) == kIpv4AddrType && u32(NFTNL_SET_KEY_LEN) == 4 &&
         (u32(NFTNL_SET_FLAGS) & ~uint32_t{NFT_SET_INTERVAL}) == 0 && (u32(NFTNL_SET_FLAGS) & NFT_SET_INTERVAL) != 0;
}

bool chain_has_expected_shape(const nftnl_chain* chain) {
  if (!nftnl_chain_is_set(chain, NFTNL_CHAIN_HOOKNUM) || !nftnl_chain_is_set(chain, NFTNL_CHAIN_TYPE)) return false;
  const std::string name = nftnl_chain_get_str(chain, NFTNL_CHAIN_NAME);
  const uint32_t want_hook = name == kInputChain ? NF_ARP_IN : NF_ARP_OUT;
  const bool policy_accept =
      !nftnl_chain_is_set(chain, NFTNL_CHAIN_POLICY) || nftnl_chain_get_u32(chain, NFTNL_CHAIN_POLICY) == NF_ACCEPT;
  return (name == kInputChain || name == kOutputChain) && nftnl_chain_get_u32(chain, NFTNL_CHAIN_HOOKNUM) == want_hook &&
         std::string(nftnl_chain_get_str(chain, NFTNL_CHAIN_TYPE)) == "filter" &&
         nftnl_chain_get_s32(chain, NFTNL_CHAIN_PRIO) == 0 && policy_accept;
}

std::vector<Ipv4Range> decode_elements(nftnl_set* set) {
  // Interval sets hold a start element and an end element (flagged END, one past
  // the last address) per range; the dump comes in no useful order.
  // Adjacent ranges share a key (one's end, the next one's start): keep both,
  // ends sorted first.
  std::vector<std::pair<uint32_t, int>> points;  // host-order key, 0 = end, 1 = start
  nftnl_set_elems_iter* it = nftnl_set_elems_iter_create(set);
  for (nftnl_set_elem* elem = nftnl_set_elems_iter_next(it); elem; elem = nftnl_set_elems_iter_next(it)) {
    uint32_t len = 0;
    const void* key = nftnl_set_elem_get(elem, NFTNL_SET_ELEM_KEY, &len);
    if (!key || len != 4) continue;
    uint32_t be = 0;
    std::memcpy(&be, key, 4);
    const bool end = nftnl_set_elem_is_set(elem, NFTNL_SET_ELEM_FLAGS) &&
                     (nftnl_set_elem_get_u32(elem, NFTNL_SET_ELEM_FLAGS) & NFT_SET_ELEM_INTERVAL_END);
    points.emplace_back(ntohl(be), end ? 0 : 1);
  }
  nftnl_set_elems_iter_destroy(it);
  std::sort(points.begin(), points.end());

  std::vector<Ipv4Range> ranges;
  std::optional<uint32_t> open;
  for (const auto& [key, kind] : points) {
    if (kind == 0) {  // an end without a start (nft's 0.0.0.0 marker) closes nothing
      if (open && key > *open) ranges.push_back({Ipv4{*open}, Ipv4{key - 1}});
      open.reset();
    } else {
      if (open && key > *open) ranges.push_back({Ipv4{*open}, Ipv4{key - 1}});
      open = key;
    }
  }
  if (open) ranges.push_back({Ipv4{*open}, Ipv4{0xffffffffu}});
  return ranges;
}

}  // namespace arpguard::rules
