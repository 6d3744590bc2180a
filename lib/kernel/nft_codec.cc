#include "kernel/nft_codec.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnftnl/batch.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "core/overloaded.h"

namespace arpguard::nftcodec {

namespace {

constexpr uint32_t kPageSize = 256 * 1024;
constexpr uint32_t kPageOverrun = 128 * 1024;  // room for the largest single message
constexpr size_t kElementsPerMessage = 500;

struct Free {
  void operator()(nftnl_table* p) const { nftnl_table_free(p); }
  void operator()(nftnl_chain* p) const { nftnl_chain_free(p); }
  void operator()(nftnl_set* p) const { nftnl_set_free(p); }
  void operator()(nftnl_rule* p) const { nftnl_rule_free(p); }
};
using TablePtr = std::unique_ptr<nftnl_table, Free>;
using ChainPtr = std::unique_ptr<nftnl_chain, Free>;
using SetPtr = std::unique_ptr<nftnl_set, Free>;
using RulePtr = std::unique_ptr<nftnl_rule, Free>;

// The attributes worth reading, per expression; what is not here is compared by name only.
struct ExprSchema {
  const char* name;
  std::vector<uint16_t> attrs;
};

const std::vector<ExprSchema>& schemas() {
  static const std::vector<ExprSchema> kSchemas = {
      {"payload",
       {NFTNL_EXPR_PAYLOAD_DREG, NFTNL_EXPR_PAYLOAD_BASE, NFTNL_EXPR_PAYLOAD_OFFSET, NFTNL_EXPR_PAYLOAD_LEN,
        NFTNL_EXPR_PAYLOAD_SREG, NFTNL_EXPR_PAYLOAD_CSUM_TYPE, NFTNL_EXPR_PAYLOAD_CSUM_OFFSET,
        NFTNL_EXPR_PAYLOAD_FLAGS}},
      {"meta", {NFTNL_EXPR_META_KEY, NFTNL_EXPR_META_DREG, NFTNL_EXPR_META_SREG}},
      {"cmp", {NFTNL_EXPR_CMP_SREG, NFTNL_EXPR_CMP_OP, NFTNL_EXPR_CMP_DATA}},
      {"immediate", {NFTNL_EXPR_IMM_DREG, NFTNL_EXPR_IMM_DATA, NFTNL_EXPR_IMM_VERDICT, NFTNL_EXPR_IMM_CHAIN}},
      {"counter", {}},
      {"lookup", {NFTNL_EXPR_LOOKUP_SREG, NFTNL_EXPR_LOOKUP_DREG, NFTNL_EXPR_LOOKUP_SET, NFTNL_EXPR_LOOKUP_FLAGS}},
      {"byteorder",
       {NFTNL_EXPR_BYTEORDER_DREG, NFTNL_EXPR_BYTEORDER_SREG, NFTNL_EXPR_BYTEORDER_OP, NFTNL_EXPR_BYTEORDER_LEN,
        NFTNL_EXPR_BYTEORDER_SIZE}},
      {"redir", {NFTNL_EXPR_REDIR_REG_PROTO_MIN, NFTNL_EXPR_REDIR_REG_PROTO_MAX, NFTNL_EXPR_REDIR_FLAGS}},
      {"limit",
       {NFTNL_EXPR_LIMIT_RATE, NFTNL_EXPR_LIMIT_UNIT, NFTNL_EXPR_LIMIT_BURST, NFTNL_EXPR_LIMIT_TYPE,
        NFTNL_EXPR_LIMIT_FLAGS}},
      {"log",
       {NFTNL_EXPR_LOG_PREFIX, NFTNL_EXPR_LOG_GROUP, NFTNL_EXPR_LOG_SNAPLEN, NFTNL_EXPR_LOG_QTHRESHOLD,
        NFTNL_EXPR_LOG_LEVEL, NFTNL_EXPR_LOG_FLAGS}},
  };
  return kSchemas;
}

// A marker attribute for expressions arpguard never writes: they never equal one of ours.
constexpr uint16_t kUnknownExpr = 0xffff;

std::string str_or_empty(const char* s) { return s ? s : ""; }

nft::TableFamily family_of(uint32_t nfproto) {
  switch (nfproto) {
    case NFPROTO_ARP: return nft::TableFamily::kArp;
    case NFPROTO_IPV4: return nft::TableFamily::kIp;
    default: return nft::TableFamily::kIp6;
  }
}

bool known_family(uint32_t nfproto) {
  return nfproto == NFPROTO_ARP || nfproto == NFPROTO_IPV4 || nfproto == NFPROTO_IPV6;
}

std::optional<nft::TableId> ours_named(uint8_t nfproto, const char* table, const std::vector<nft::TableId>& ours) {
  if (!table || !known_family(nfproto)) return std::nullopt;
  const nft::TableId id{family_of(nfproto), table};
  if (std::find(ours.begin(), ours.end(), id) == ours.end()) return std::nullopt;
  return id;
}

// ---- elements ----

std::string tuple_bytes(const IpAddress& address, uint8_t protocol, uint16_t port) {
  const auto raw = address.bytes();
  std::string out(reinterpret_cast<const char*>(raw.data()), address.size());
  out += std::string{static_cast<char>(protocol), 0, 0, 0};
  out += std::string{static_cast<char>(port >> 8), static_cast<char>(port & 0xff), 0, 0};
  return out;
}

struct Tuple {
  IpAddress address;
  uint8_t protocol = 0;
  uint16_t port = 0;
};

std::optional<Tuple> parse_tuple(const void* data, uint32_t len) {
  if (len != 12 && len != 24) return std::nullopt;
  const size_t addr_len = len == 12 ? 4 : 16;
  const auto* p = static_cast<const uint8_t*>(data);
  auto address = IpAddress::from_bytes(p, addr_len);
  if (!address) return std::nullopt;
  return Tuple{*address, p[addr_len], static_cast<uint16_t>((p[addr_len + 4] << 8) | p[addr_len + 5])};
}

void add_elements(nftnl_set* set, const nft::SetSpec& shape, const std::vector<nft::Element>& elements) {
  for (const nft::Element& e : elements) {
    if (!shape.concatenated()) {
      const auto start = e.addresses.first.bytes();
      nftnl_set_elem* begin = nftnl_set_elem_alloc();
      nftnl_set_elem_set(begin, NFTNL_SET_ELEM_KEY, start.data(), e.addresses.first.size());
      nftnl_set_elem_add(set, begin);
      if (e.addresses.last.is_max()) continue;  // open-ended: no end marker
      const auto end = e.addresses.last.next().bytes();
      nftnl_set_elem* finish = nftnl_set_elem_alloc();
      nftnl_set_elem_set(finish, NFTNL_SET_ELEM_KEY, end.data(), e.addresses.last.size());
      nftnl_set_elem_set_u32(finish, NFTNL_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
      nftnl_set_elem_add(set, finish);
      continue;
    }
    nftnl_set_elem* elem = nftnl_set_elem_alloc();
    const std::string key = tuple_bytes(e.addresses.first, e.protocol, e.port_first);
    const std::string key_end = tuple_bytes(e.addresses.last, e.protocol, e.port_last);
    nftnl_set_elem_set(elem, NFTNL_SET_ELEM_KEY, key.data(), static_cast<uint32_t>(key.size()));
    nftnl_set_elem_set(elem, NFTNL_SET_ELEM_KEY_END, key_end.data(), static_cast<uint32_t>(key_end.size()));
    if (shape.is_map()) {
      const uint8_t port[2] = {static_cast<uint8_t>(e.to_port >> 8), static_cast<uint8_t>(e.to_port & 0xff)};
      nftnl_set_elem_set(elem, NFTNL_SET_ELEM_DATA, port, sizeof(port));
    }
    nftnl_set_elem_add(set, elem);
  }
}

void read_elements(nftnl_set* set, std::vector<std::pair<IpAddress, bool>>& points, std::vector<nft::Element>& elements) {
  nftnl_set_elems_iter* it = nftnl_set_elems_iter_create(set);
  if (!it) return;
  for (nftnl_set_elem* elem = nftnl_set_elems_iter_next(it); elem; elem = nftnl_set_elems_iter_next(it)) {
    uint32_t len = 0;
    const void* key = nftnl_set_elem_get(elem, NFTNL_SET_ELEM_KEY, &len);
    if (!key) continue;
    if (nftnl_set_elem_is_set(elem, NFTNL_SET_ELEM_KEY_END)) {
      uint32_t end_len = 0;
      const void* key_end = nftnl_set_elem_get(elem, NFTNL_SET_ELEM_KEY_END, &end_len);
      auto first = parse_tuple(key, len);
      auto last = parse_tuple(key_end, end_len);
      if (!first || !last || first->address.family != last->address.family) continue;
      nft::Element e{IpRange{first->address, last->address}, first->protocol, first->port, last->port, 0};
      uint32_t data_len = 0;
      const void* data = nftnl_set_elem_is_set(elem, NFTNL_SET_ELEM_DATA)
                             ? nftnl_set_elem_get(elem, NFTNL_SET_ELEM_DATA, &data_len)
                             : nullptr;
      if (data && data_len >= 2) {
        const auto* p = static_cast<const uint8_t*>(data);
        e.to_port = static_cast<uint16_t>((p[0] << 8) | p[1]);
      }
      elements.push_back(e);
      continue;
    }
    auto address = IpAddress::from_bytes(key, len);
    if (!address) continue;
    const bool end = nftnl_set_elem_is_set(elem, NFTNL_SET_ELEM_FLAGS) &&
                     (nftnl_set_elem_get_u32(elem, NFTNL_SET_ELEM_FLAGS) & NFT_SET_ELEM_INTERVAL_END);
    points.emplace_back(*address, !end);
  }
  nftnl_set_elems_iter_destroy(it);
}

// ---- expressions ----

nftnl_expr* encode_expr(const nft::Expr& expr, std::optional<uint32_t> set_id) {
  nftnl_expr* e = nftnl_expr_alloc(expr.name.c_str());
  if (!e) return nullptr;
  for (const nft::ExprAttr& attr : expr.attrs) {
    nftnl_expr_set(e, attr.type, attr.bytes.data(), static_cast<uint32_t>(attr.bytes.size()));
  }
  if (expr.name == "lookup" && set_id) nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID, *set_id);
  return e;
}

}  // namespace

std::vector<nft::Expr> decode_exprs(const nftnl_rule* rule) {
  std::vector<nft::Expr> out;
  nftnl_expr_iter* it = nftnl_expr_iter_create(rule);
  if (!it) return out;
  for (nftnl_expr* e = nftnl_expr_iter_next(it); e; e = nftnl_expr_iter_next(it)) {
    nft::Expr expr{str_or_empty(nftnl_expr_get_str(e, NFTNL_EXPR_NAME)), {}};
    const auto& all = schemas();
    auto schema = std::find_if(all.begin(), all.end(), [&](const ExprSchema& s) { return expr.name == s.name; });
    if (schema == all.end()) {
      expr.attrs.push_back({kUnknownExpr, expr.name});
    } else {
      for (uint16_t type : schema->attrs) {
        if (!nftnl_expr_is_set(e, type)) continue;
        uint32_t len = 0;
        const void* data = nftnl_expr_get(e, type, &len);
        if (data) expr.attrs.push_back({type, std::string(static_cast<const char*>(data), len)});
      }
    }
    out.push_back(std::move(expr));
  }
  nftnl_expr_iter_destroy(it);
  return nft::normalized(std::move(out));
}

namespace {

std::pair<uint64_t, uint64_t> counter_of(const nftnl_rule* rule) {
  std::pair<uint64_t, uint64_t> out{0, 0};
  nftnl_expr_iter* it = nftnl_expr_iter_create(rule);
  if (!it) return out;
  for (nftnl_expr* e = nftnl_expr_iter_next(it); e; e = nftnl_expr_iter_next(it)) {
    if (str_or_empty(nftnl_expr_get_str(e, NFTNL_EXPR_NAME)) == "counter") {
      out = {nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_PACKETS), nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_BYTES)};
      break;
    }
  }
  nftnl_expr_iter_destroy(it);
  return out;
}

uint32_t u32_or(const nftnl_set* set, uint16_t attr) { return nftnl_set_is_set(set, attr) ? nftnl_set_get_u32(set, attr) : 0; }

}  // namespace

std::optional<uint32_t> generation_of(const nlmsghdr* nlh) {
  if (NFNL_MSG_TYPE(nlh->nlmsg_type) != NFT_MSG_NEWGEN) return std::nullopt;
  std::optional<uint32_t> id;
  mnl_attr_parse(nlh, sizeof(nfgenmsg), [](const nlattr* attr, void* data) {
    if (mnl_attr_get_type(attr) == NFTA_GEN_ID && mnl_attr_validate(attr, MNL_TYPE_U32) >= 0) {
      *static_cast<std::optional<uint32_t>*>(data) = ntohl(mnl_attr_get_u32(attr));
    }
    return MNL_CB_OK;
  }, &id);
  return id;
}

std::optional<Delta> decode(const nlmsghdr* nlh, const std::vector<nft::TableId>& ours) {
  if ((nlh->nlmsg_type >> 8) != NFNL_SUBSYS_NFTABLES || nlh->nlmsg_len < NLMSG_LENGTH(sizeof(nfgenmsg))) {
    return std::nullopt;
  }
  const auto* gen = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(nlh));
  const uint16_t message = nlh->nlmsg_type & 0xff;
  switch (message) {
    case NFT_MSG_NEWTABLE:
    case NFT_MSG_DELTABLE: {
      TablePtr t(nftnl_table_alloc());
      if (nftnl_table_nlmsg_parse(nlh, t.get()) < 0) return std::nullopt;
      auto id = ours_named(gen->nfgen_family, nftnl_table_get_str(t.get(), NFTNL_TABLE_NAME), ours);
      if (!id) return std::nullopt;
      if (message == NFT_MSG_DELTABLE) return Delta{delta::TableRemoved{*id}};
      delta::TableUpsert up{*id, nftnl_table_is_set(t.get(), NFTNL_TABLE_FLAGS) ? nftnl_table_get_u32(t.get(), NFTNL_TABLE_FLAGS) : 0,
                            std::nullopt};
      if (nftnl_table_is_set(t.get(), NFTNL_TABLE_OWNER)) up.owner = nftnl_table_get_u32(t.get(), NFTNL_TABLE_OWNER);
      return Delta{up};
    }
    case NFT_MSG_NEWCHAIN:
    case NFT_MSG_DELCHAIN: {
      ChainPtr c(nftnl_chain_alloc());
      if (nftnl_chain_nlmsg_parse(nlh, c.get()) < 0) return std::nullopt;
      auto id = ours_named(gen->nfgen_family, nftnl_chain_get_str(c.get(), NFTNL_CHAIN_TABLE), ours);
      if (!id) return std::nullopt;
      const std::string name = str_or_empty(nftnl_chain_get_str(c.get(), NFTNL_CHAIN_NAME));
      if (message == NFT_MSG_DELCHAIN) return Delta{delta::ChainRemoved{*id, name}};
      ObservedChain chain;
      chain.base = nftnl_chain_is_set(c.get(), NFTNL_CHAIN_HOOKNUM);
      if (chain.base) {
        chain.hook = nftnl_chain_get_u32(c.get(), NFTNL_CHAIN_HOOKNUM);
        chain.priority = nftnl_chain_get_s32(c.get(), NFTNL_CHAIN_PRIO);
        chain.type = str_or_empty(nftnl_chain_get_str(c.get(), NFTNL_CHAIN_TYPE));
        chain.policy = nftnl_chain_is_set(c.get(), NFTNL_CHAIN_POLICY) ? nftnl_chain_get_u32(c.get(), NFTNL_CHAIN_POLICY) : NF_ACCEPT;
      }
      return Delta{delta::ChainUpsert{*id, name, chain}};
    }
    case NFT_MSG_NEWSET:
    case NFT_MSG_DELSET: {
      SetPtr s(nftnl_set_alloc());
      if (nftnl_set_nlmsg_parse(nlh, s.get()) < 0) return std::nullopt;
      auto id = ours_named(gen->nfgen_family, nftnl_set_get_str(s.get(), NFTNL_SET_TABLE), ours);
      if (!id) return std::nullopt;
      const std::string name = str_or_empty(nftnl_set_get_str(s.get(), NFTNL_SET_NAME));
      if (message == NFT_MSG_DELSET) return Delta{delta::SetRemoved{*id, name}};
      ObservedSet set;
      set.flags = u32_or(s.get(), NFTNL_SET_FLAGS);
      set.key_type = u32_or(s.get(), NFTNL_SET_KEY_TYPE);
      set.key_len = u32_or(s.get(), NFTNL_SET_KEY_LEN);
      set.data_type = u32_or(s.get(), NFTNL_SET_DATA_TYPE);
      set.data_len = u32_or(s.get(), NFTNL_SET_DATA_LEN);
      return Delta{delta::SetUpsert{*id, name, std::move(set)}};
    }
    case NFT_MSG_NEWRULE:
    case NFT_MSG_DELRULE: {
      RulePtr r(nftnl_rule_alloc());
      if (nftnl_rule_nlmsg_parse(nlh, r.get()) < 0) return std::nullopt;
      auto id = ours_named(gen->nfgen_family, nftnl_rule_get_str(r.get(), NFTNL_RULE_TABLE), ours);
      if (!id) return std::nullopt;
      const uint64_t handle = nftnl_rule_is_set(r.get(), NFTNL_RULE_HANDLE) ? nftnl_rule_get_u64(r.get(), NFTNL_RULE_HANDLE) : 0;
      if (message == NFT_MSG_DELRULE) return Delta{delta::RuleRemoved{*id, handle}};
      ObservedRule rule;
      rule.handle = handle;
      rule.chain = str_or_empty(nftnl_rule_get_str(r.get(), NFTNL_RULE_CHAIN));
      rule.exprs = decode_exprs(r.get());
      std::tie(rule.packets, rule.bytes) = counter_of(r.get());
      return Delta{delta::RuleUpsert{*id, std::move(rule)}};
    }
    case NFT_MSG_NEWSETELEM:
    case NFT_MSG_DELSETELEM: {
      SetPtr s(nftnl_set_alloc());
      if (nftnl_set_elems_nlmsg_parse(nlh, s.get()) < 0) return std::nullopt;
      auto id = ours_named(gen->nfgen_family, nftnl_set_get_str(s.get(), NFTNL_SET_TABLE), ours);
      if (!id) return std::nullopt;
      const SetRef ref{*id, str_or_empty(nftnl_set_get_str(s.get(), NFTNL_SET_NAME))};
      std::vector<std::pair<IpAddress, bool>> points;
      std::vector<nft::Element> elements;
      read_elements(s.get(), points, elements);
      if (message == NFT_MSG_DELSETELEM) return Delta{delta::ElementsRemoved{ref, std::move(points), std::move(elements)}};
      return Delta{delta::ElementsAdded{ref, std::move(points), std::move(elements)}};
    }
    default: return std::nullopt;
  }
}

// ---- batch ----

NftBatch::NftBatch(uint32_t& seq) : seq_(seq), batch_(nftnl_batch_alloc(kPageSize, kPageOverrun)) {
  nftnl_batch_begin(static_cast<char*>(nftnl_batch_buffer(batch_)), seq_++);
  nftnl_batch_update(batch_);
}

NftBatch::~NftBatch() { nftnl_batch_free(batch_); }

nlmsghdr* NftBatch::message(uint16_t type, nft::TableFamily family, uint16_t flags, std::string what) {
  const uint32_t seq = seq_++;
  what_[seq] = std::move(what);
  return nftnl_nlmsg_build_hdr(static_cast<char*>(nftnl_batch_buffer(batch_)), type, static_cast<uint16_t>(family),
                               flags | NLM_F_ACK, seq);
}

void NftBatch::done() { nftnl_batch_update(batch_); }

uint32_t NftBatch::set_id(const SetRef& set) {
  auto [it, inserted] = set_ids_.emplace(set, static_cast<uint32_t>(set_ids_.size() + 1));
  return it->second;
}

std::string NftBatch::what(uint32_t seq) const {
  auto it = what_.find(seq);
  return it == what_.end() ? std::string("nft batch") : it->second;
}

void NftBatch::add(const NftChange& change) {
  using namespace nft_change;
  const std::string what = describe(change);
  std::visit(
      Overloaded{
          [&](const CreateTable& c) {
            TablePtr t(nftnl_table_alloc());
            nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, c.table.name.c_str());
            nftnl_table_set_u32(t.get(), NFTNL_TABLE_FAMILY, static_cast<uint32_t>(c.table.family));
            nftnl_table_set_u32(t.get(), NFTNL_TABLE_FLAGS, c.flags);
            nftnl_table_nlmsg_build_payload(message(NFT_MSG_NEWTABLE, c.table.family, NLM_F_CREATE, what), t.get());
            done();
          },
          [&](const DeleteTable& c) {
            TablePtr t(nftnl_table_alloc());
            nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, c.table.name.c_str());
            nftnl_table_set_u32(t.get(), NFTNL_TABLE_FAMILY, static_cast<uint32_t>(c.table.family));
            nftnl_table_nlmsg_build_payload(message(NFT_MSG_DELTABLE, c.table.family, 0, what), t.get());
            done();
          },
          [&](const CreateSet& c) {
            SetPtr s(nftnl_set_alloc());
            nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, c.table.name.c_str());
            nftnl_set_set_str(s.get(), NFTNL_SET_NAME, c.set.name.c_str());
            nftnl_set_set_u32(s.get(), NFTNL_SET_FAMILY, static_cast<uint32_t>(c.table.family));
            nftnl_set_set_u32(s.get(), NFTNL_SET_ID, set_id(SetRef{c.table, c.set.name}));
            nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_TYPE, c.set.key_type());
            nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_LEN, c.set.key_len());
            nftnl_set_set_u32(s.get(), NFTNL_SET_FLAGS, c.set.flags());
            if (c.set.data) {
              nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_TYPE, static_cast<uint32_t>(*c.set.data));
              nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_LEN, 2);
            }
            if (c.set.concatenated()) {
              uint8_t field_len[16] = {};
              for (size_t i = 0; i < c.set.key.size() && i < 15; ++i) {
                switch (c.set.key[i]) {
                  case nft::KeyField::kIpv4: field_len[i] = 4; break;
                  case nft::KeyField::kIpv6: field_len[i] = 16; break;
                  case nft::KeyField::kProto: field_len[i] = 1; break;
                  case nft::KeyField::kPort: field_len[i] = 2; break;
                }
              }
              nftnl_set_set_data(s.get(), NFTNL_SET_DESC_CONCAT, field_len, static_cast<uint32_t>(c.set.key.size()));
            }
            nftnl_set_nlmsg_build_payload(message(NFT_MSG_NEWSET, c.table.family, NLM_F_CREATE, what), s.get());
            done();
          },
          [&](const CreateChain& c) {
            ChainPtr ch(nftnl_chain_alloc());
            nftnl_chain_set_str(ch.get(), NFTNL_CHAIN_TABLE, c.table.name.c_str());
            nftnl_chain_set_str(ch.get(), NFTNL_CHAIN_NAME, c.chain.name.c_str());
            nftnl_chain_set_u32(ch.get(), NFTNL_CHAIN_FAMILY, static_cast<uint32_t>(c.table.family));
            nftnl_chain_set_u32(ch.get(), NFTNL_CHAIN_HOOKNUM, c.chain.hook);
            nftnl_chain_set_s32(ch.get(), NFTNL_CHAIN_PRIO, c.chain.priority);
            nftnl_chain_set_str(ch.get(), NFTNL_CHAIN_TYPE, c.chain.type.c_str());
            nftnl_chain_set_u32(ch.get(), NFTNL_CHAIN_POLICY, NF_ACCEPT);
            nftnl_chain_nlmsg_build_payload(message(NFT_MSG_NEWCHAIN, c.table.family, NLM_F_CREATE, what), ch.get());
            done();
          },
          [&](const AddElements& c) {
            for (size_t begin = 0; begin < c.elements.size(); begin += kElementsPerMessage) {
              const size_t end = std::min(c.elements.size(), begin + kElementsPerMessage);
              SetPtr s(nftnl_set_alloc());
              nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, c.set.table.name.c_str());
              nftnl_set_set_str(s.get(), NFTNL_SET_NAME, c.set.set.c_str());
              nftnl_set_set_u32(s.get(), NFTNL_SET_FAMILY, static_cast<uint32_t>(c.set.table.family));
              if (set_ids_.count(c.set)) nftnl_set_set_u32(s.get(), NFTNL_SET_ID, set_ids_.at(c.set));
              add_elements(s.get(), c.shape, {c.elements.begin() + static_cast<long>(begin), c.elements.begin() + static_cast<long>(end)});
              nftnl_set_elems_nlmsg_build_payload(message(NFT_MSG_NEWSETELEM, c.set.table.family, NLM_F_CREATE, what), s.get());
              done();
            }
          },
          [&](const DelElements& c) {
            for (size_t begin = 0; begin < c.elements.size(); begin += kElementsPerMessage) {
              const size_t end = std::min(c.elements.size(), begin + kElementsPerMessage);
              SetPtr s(nftnl_set_alloc());
              nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, c.set.table.name.c_str());
              nftnl_set_set_str(s.get(), NFTNL_SET_NAME, c.set.set.c_str());
              nftnl_set_set_u32(s.get(), NFTNL_SET_FAMILY, static_cast<uint32_t>(c.set.table.family));
              add_elements(s.get(), c.shape, {c.elements.begin() + static_cast<long>(begin), c.elements.begin() + static_cast<long>(end)});
              nftnl_set_elems_nlmsg_build_payload(message(NFT_MSG_DELSETELEM, c.set.table.family, 0, what), s.get());
              done();
            }
          },
          [&](const AddRule& c) {
            RulePtr r(nftnl_rule_alloc());
            nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, c.table.name.c_str());
            nftnl_rule_set_str(r.get(), NFTNL_RULE_CHAIN, c.rule.chain.c_str());
            nftnl_rule_set_u32(r.get(), NFTNL_RULE_FAMILY, static_cast<uint32_t>(c.table.family));
            for (const nft::Expr& expr : c.rule.exprs) {
              std::optional<uint32_t> id;
              for (const nft::ExprAttr& attr : expr.attrs) {
                if (expr.name == "lookup" && attr.type == NFTNL_EXPR_LOOKUP_SET) {
                  const SetRef ref{c.table, std::string(attr.bytes.c_str())};
                  if (set_ids_.count(ref)) id = set_ids_.at(ref);
                }
              }
              if (nftnl_expr* e = encode_expr(expr, id)) nftnl_rule_add_expr(r.get(), e);
            }
            nftnl_rule_nlmsg_build_payload(
                message(NFT_MSG_NEWRULE, c.table.family, NLM_F_CREATE | NLM_F_APPEND, what), r.get());
            done();
          },
          [&](const DelRule& c) {
            RulePtr r(nftnl_rule_alloc());
            nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, c.table.name.c_str());
            nftnl_rule_set_str(r.get(), NFTNL_RULE_CHAIN, c.chain.c_str());
            nftnl_rule_set_u32(r.get(), NFTNL_RULE_FAMILY, static_cast<uint32_t>(c.table.family));
            nftnl_rule_set_u64(r.get(), NFTNL_RULE_HANDLE, c.handle);
            nftnl_rule_nlmsg_build_payload(message(NFT_MSG_DELRULE, c.table.family, 0, what), r.get());
            done();
          },
      },
      change);
}

std::vector<iovec> NftBatch::finish() {
  nftnl_batch_end(static_cast<char*>(nftnl_batch_buffer(batch_)), seq_++);
  nftnl_batch_update(batch_);
  const int len = nftnl_batch_iovec_len(batch_);
  std::vector<iovec> iov(static_cast<size_t>(len));
  nftnl_batch_iovec(batch_, iov.data(), static_cast<uint32_t>(len));
  return iov;
}

}  // namespace arpguard::nftcodec
