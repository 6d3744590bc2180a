#include "rules/expr.h"

#include <libnftnl/expr.h>
#include <linux/netfilter/nf_tables.h>

#include <algorithm>
#include <cstring>

namespace arpguard::nft {

std::string u32_bytes(uint32_t value) {
  std::string out(4, '\0');
  std::memcpy(out.data(), &value, 4);
  return out;
}

std::string be16_bytes(uint16_t value) {
  return std::string{static_cast<char>(value >> 8), static_cast<char>(value & 0xff)};
}

namespace {

Expr make(std::string name, std::vector<ExprAttr> attrs) {
  std::sort(attrs.begin(), attrs.end());
  return Expr{std::move(name), std::move(attrs)};
}

ExprAttr u32(uint16_t type, uint32_t value) { return {type, u32_bytes(value)}; }

}  // namespace

Expr payload_load(uint32_t base, uint32_t offset, uint32_t len, uint32_t dreg) {
  return make("payload", {u32(NFTNL_EXPR_PAYLOAD_DREG, dreg), u32(NFTNL_EXPR_PAYLOAD_BASE, base),
                          u32(NFTNL_EXPR_PAYLOAD_OFFSET, offset), u32(NFTNL_EXPR_PAYLOAD_LEN, len)});
}

Expr payload_write(uint32_t base, uint32_t offset, uint32_t len, uint32_t sreg) {
  return make("payload", {u32(NFTNL_EXPR_PAYLOAD_SREG, sreg), u32(NFTNL_EXPR_PAYLOAD_BASE, base),
                          u32(NFTNL_EXPR_PAYLOAD_OFFSET, offset), u32(NFTNL_EXPR_PAYLOAD_LEN, len),
                          u32(NFTNL_EXPR_PAYLOAD_CSUM_TYPE, NFT_PAYLOAD_CSUM_NONE)});
}

Expr cmp_eq(const std::string& data, uint32_t sreg) {
  return make("cmp", {u32(NFTNL_EXPR_CMP_SREG, sreg), u32(NFTNL_EXPR_CMP_OP, NFT_CMP_EQ), {NFTNL_EXPR_CMP_DATA, data}});
}

Expr meta_load(uint32_t key, uint32_t dreg) {
  return make("meta", {u32(NFTNL_EXPR_META_KEY, key), u32(NFTNL_EXPR_META_DREG, dreg)});
}

Expr lookup(const std::string& set, uint32_t sreg, std::optional<uint32_t> dreg) {
  std::vector<ExprAttr> attrs{u32(NFTNL_EXPR_LOOKUP_SREG, sreg), {NFTNL_EXPR_LOOKUP_SET, set + '\0'}};
  if (dreg) attrs.push_back(u32(NFTNL_EXPR_LOOKUP_DREG, *dreg));
  return make("lookup", std::move(attrs));
}

Expr counter() { return make("counter", {}); }

Expr verdict(int32_t verdict) {
  return make("immediate", {u32(NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT),
                            u32(NFTNL_EXPR_IMM_VERDICT, static_cast<uint32_t>(verdict))});
}

Expr immediate_data(const std::string& data, uint32_t dreg) {
  return make("immediate", {u32(NFTNL_EXPR_IMM_DREG, dreg), {NFTNL_EXPR_IMM_DATA, data}});
}

Expr byteorder(uint32_t dreg, uint32_t sreg, uint32_t op, uint32_t len, uint32_t size) {
  return make("byteorder", {u32(NFTNL_EXPR_BYTEORDER_DREG, dreg), u32(NFTNL_EXPR_BYTEORDER_SREG, sreg),
                            u32(NFTNL_EXPR_BYTEORDER_OP, op), u32(NFTNL_EXPR_BYTEORDER_LEN, len),
                            u32(NFTNL_EXPR_BYTEORDER_SIZE, size)});
}

Expr redirect(std::optional<uint32_t> proto_min_reg, uint32_t flags) {
  std::vector<ExprAttr> attrs;
  // The kernel takes proto_max to be proto_min when absent, and says so in dumps: send both.
  if (proto_min_reg) {
    attrs.push_back(u32(NFTNL_EXPR_REDIR_REG_PROTO_MIN, *proto_min_reg));
    attrs.push_back(u32(NFTNL_EXPR_REDIR_REG_PROTO_MAX, *proto_min_reg));
  }
  if (flags) attrs.push_back(u32(NFTNL_EXPR_REDIR_FLAGS, flags));
  return make("redir", std::move(attrs));
}

Expr limit_packets(uint64_t rate, uint64_t per_seconds, uint32_t burst) {
  std::string rate_bytes(8, '\0');
  std::string unit_bytes(8, '\0');
  std::memcpy(rate_bytes.data(), &rate, 8);
  std::memcpy(unit_bytes.data(), &per_seconds, 8);
  return make("limit", {{NFTNL_EXPR_LIMIT_RATE, rate_bytes}, {NFTNL_EXPR_LIMIT_UNIT, unit_bytes},
                        u32(NFTNL_EXPR_LIMIT_BURST, burst), u32(NFTNL_EXPR_LIMIT_TYPE, NFT_LIMIT_PKTS)});
}

Expr log_group(const std::string& prefix, uint16_t group) {
  std::string group_bytes(2, '\0');
  std::memcpy(group_bytes.data(), &group, 2);
  return make("log", {{NFTNL_EXPR_LOG_PREFIX, prefix + '\0'}, {NFTNL_EXPR_LOG_GROUP, group_bytes}});
}

}  // namespace arpguard::nft
