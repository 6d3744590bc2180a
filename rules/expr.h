// Builders of the expression IR (rules/nft_spec.h): one function per kind of
// nftables expression arpguard uses, taking what nft's own debug output shows
// (`nft --debug=netlink`). Registers use the kernel's numbering: NFT_REG_1 for
// the first 16 bytes, NFT_REG32_xx for the words after it, as nft does, so a
// dumped rule decodes to the same IR. Pure; thread-compatible.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "rules/nft_spec.h"

namespace arpguard::nft {

/// payload load LEN bytes @ BASE header + OFFSET => dreg
Expr payload_load(uint32_t base, uint32_t offset, uint32_t len, uint32_t dreg);
/// payload write sreg => LEN bytes @ BASE header + OFFSET, no checksum update
Expr payload_write(uint32_t base, uint32_t offset, uint32_t len, uint32_t sreg);
/// cmp eq sreg DATA
Expr cmp_eq(const std::string& data, uint32_t sreg);
/// meta load KEY => dreg
Expr meta_load(uint32_t key, uint32_t dreg);
/// lookup sreg set NAME [dreg]
Expr lookup(const std::string& set, uint32_t sreg, std::optional<uint32_t> dreg = std::nullopt);
Expr counter();
/// immediate reg 0 VERDICT (NF_DROP, NF_ACCEPT)
Expr verdict(int32_t verdict);
/// immediate dreg DATA
Expr immediate_data(const std::string& data, uint32_t dreg);
/// byteorder dreg = OP(sreg, LEN, SIZE)
Expr byteorder(uint32_t dreg, uint32_t sreg, uint32_t op, uint32_t len, uint32_t size);
/// redir [proto_min reg, flags]
Expr redirect(std::optional<uint32_t> proto_min_reg, uint32_t flags);

/// limit rate RATE/PER_SECONDS burst BURST type packets
Expr limit_packets(uint64_t rate, uint64_t per_seconds, uint32_t burst);
/// log prefix PREFIX group GROUP: to nfnetlink_log
Expr log_group(const std::string& prefix, uint16_t group);

/// The bytes of a value as an attribute holds it (host order for numbers).
std::string u32_bytes(uint32_t value);
/// A 16-bit value in network order (ports, ARP operation).
std::string be16_bytes(uint16_t value);

}  // namespace arpguard::nft
