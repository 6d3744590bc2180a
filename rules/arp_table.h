// The nftables table `arp arpguard`: what arpguard installs, as a value.
//
// This header is the single source of truth for the ruleset. render_nft()
// prints a table spec exactly as `nft list table arp arpguard` shows it, so
// the golden files under rules/golden/ can be read by a reviewer and compared
// with the kernel's listing. rules/arp_table_nftnl.h encodes and decodes the
// same rules as libnftnl objects. Pure; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/ipv4.h"

namespace arpguard::rules {

inline constexpr std::string_view kTable = "arpguard";
inline constexpr std::string_view kSet = "vips";
inline constexpr std::string_view kInputChain = "input";
inline constexpr std::string_view kOutputChain = "output";

/// One rule of the table.
///  kInputDrop:    arp operation request arp daddr ip @vips counter drop
///  kOutputMangle: oifname IF arp saddr ip @vips counter arp saddr ip set REAL_IP
///  kOutputDrop:   oifname IF arp saddr ip @vips counter drop   (IF has no IPv4 to announce)
struct ArpRule {
  enum class Kind { kInputDrop, kOutputMangle, kOutputDrop };
  Kind kind = Kind::kInputDrop;
  std::string interface;  ///< output rules only
  Ipv4 real_ip;           ///< kOutputMangle only

  static ArpRule input_drop() { return {Kind::kInputDrop, {}, {}}; }
  static ArpRule output_mangle(std::string interface, Ipv4 real_ip) {
    return {Kind::kOutputMangle, std::move(interface), real_ip};
  }
  static ArpRule output_drop(std::string interface) { return {Kind::kOutputDrop, std::move(interface), {}}; }

  bool operator==(const ArpRule&) const = default;
  std::string_view chain() const { return kind == Kind::kInputDrop ? kInputChain : kOutputChain; }
  /// The rule in nft syntax, counters at zero.
  std::string nft_text(uint64_t packets = 0, uint64_t bytes = 0) const;
};

/// The desired content of the table.
struct ArpTableSpec {
  std::vector<Ipv4Range> vips;     ///< sorted, non-overlapping
  std::vector<ArpRule> rules;      ///< input rule first, then one per ARP-facing interface

  bool operator==(const ArpTableSpec&) const = default;
};

/// Table flags (linux/netfilter/nf_tables.h; PERSIST is newer than Debian 12's headers).
inline constexpr uint32_t kTableFlagOwner = 0x2;
inline constexpr uint32_t kTableFlagPersist = 0x4;

/// The table as `nft list table arp arpguard` prints it (nftables 1.0.6), with
/// all counters at zero and no flags line.
std::string render_nft(const ArpTableSpec& spec);

}  // namespace arpguard::rules
