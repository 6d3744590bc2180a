// IP addresses, prefixes and ranges of either family: parsing, formatting,
// ordering and the arithmetic interval sets need.
//
// Pure values; no syscalls. An address is held as a 128-bit integer in host
// order (IPv4 in the low 32 bits), so both families share one ordering and
// one range arithmetic. Thread-compatible.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace arpguard {

__extension__ using Uint128 = unsigned __int128;

/// A 128-bit value stored as two 64-bit halves: aligned to 8, so an address
/// takes 24 bytes rather than 32 (and a prefix 32 rather than 48) in caches
/// of 100,000 VIPs. It converts to and from Uint128 by value, never by
/// reference: an 8-aligned Uint128 would be undefined behaviour.
class PackedUint128 {
 public:
  constexpr PackedUint128() = default;
  constexpr PackedUint128(Uint128 v) : high_(static_cast<uint64_t>(v >> 64)), low_(static_cast<uint64_t>(v)) {}  // NOLINT: implicit by design
  // Compared, shifted and added as the Uint128 it converts to.
  constexpr operator Uint128() const { return (static_cast<Uint128>(high_) << 64) | low_; }  // NOLINT: implicit by design

 private:
  uint64_t high_ = 0;
  uint64_t low_ = 0;
};

enum class Family : uint8_t { kV4 = 4, kV6 = 6 };

/// "IPv4" or "IPv6".
std::string_view to_string(Family family);
/// The AF_INET / AF_INET6 value of a family.
int address_family(Family family);

struct IpAddress {
  Family family = Family::kV4;
  PackedUint128 value;  ///< host order; IPv4 in the low 32 bits

  auto operator<=>(const IpAddress&) const = default;

  static IpAddress v4(uint32_t host_order) { return {Family::kV4, host_order}; }
  /// Dotted quad or RFC 4291 text; nullopt unless the whole text is one address.
  /// IPv4 octets have no leading zeros (inet_aton would read 010 as octal).
  static std::optional<IpAddress> parse(std::string_view text);
  /// `len` bytes in network order (4 or 16); nullopt for any other length.
  static std::optional<IpAddress> from_bytes(const void* data, size_t len);

  /// "192.0.2.1", "2001:db8::1" (inet_ntop's form, as nft and ip print it).
  std::string str() const;
  int bits() const { return family == Family::kV4 ? 32 : 128; }
  /// The address in network order; the first size() bytes are used.
  std::array<uint8_t, 16> bytes() const;
  size_t size() const { return family == Family::kV4 ? 4 : 16; }
  uint32_t v4_network_order() const;

  Uint128 max_value() const { return family == Family::kV4 ? Uint128{0xffffffffu} : ~Uint128{0}; }
  bool is_max() const { return value == max_value(); }
  /// REQUIRES: !is_max() / value != 0.
  IpAddress next() const { return {family, value + 1}; }
  IpAddress prev() const { return {family, value - 1}; }

  bool is_unspecified() const { return value == 0; }
  bool is_loopback() const;
  bool is_multicast() const;
  bool is_link_local() const;
  /// IPv4: 240.0.0.0/4 and the broadcast address. IPv6: never.
  bool is_reserved() const;
  /// IPv6 ::ffff:a.b.c.d.
  bool is_v4_mapped() const;
};

/// An address with a prefix length, as the kernel identifies an address or a
/// route: family, address and length, nothing else.
struct IpPrefix {
  IpAddress address;
  uint8_t length = 32;

  auto operator<=>(const IpPrefix&) const = default;

  /// The whole address (/32 or /128).
  static IpPrefix host(IpAddress address) { return {address, static_cast<uint8_t>(address.bits())}; }
  /// "a.b.c.d", "a.b.c.d/len", "2001:db8::1", "2001:db8::/64"; nullopt when malformed.
  static std::optional<IpPrefix> parse(std::string_view text);
  /// Always with the length: "10.0.0.5/32".
  std::string str() const;
  Family family() const { return address.family; }
  bool is_host() const { return length == address.bits(); }
  Uint128 mask() const {
    if (length == 0) return 0;
    const Uint128 all = address.max_value();
    return (all << (address.bits() - length)) & all;
  }
  /// True when no host bits are set below the prefix length.
  bool is_canonical() const { return (address.value & ~mask()) == 0; }
  IpAddress first() const { return {address.family, address.value & mask()}; }
  IpAddress last() const { return {address.family, (address.value & mask()) | (~mask() & address.max_value())}; }
  bool contains(const IpAddress& ip) const { return ip.family == family() && ((ip.value ^ address.value) & mask()) == 0; }
  bool overlaps(const IpPrefix& other) const;
};

/// An inclusive range [first, last] of one family: the unit of an nft interval set.
struct IpRange {
  IpAddress first;
  IpAddress last;

  auto operator<=>(const IpRange&) const = default;
  static IpRange of(const IpPrefix& prefix) { return {prefix.first(), prefix.last()}; }
  static IpRange single(const IpAddress& ip) { return {ip, ip}; }
  Family family() const { return first.family; }
  bool contains(const IpAddress& ip) const { return ip.family == first.family && ip >= first && ip <= last; }
  bool overlaps(const IpRange& other) const {
    return first.family == other.first.family && first <= other.last && other.first <= last;
  }
  /// The prefix this range is exactly, if it is one.
  std::optional<IpPrefix> as_prefix() const;
  /// "10.0.0.5" for one address, "10.0.0.0/24" for a prefix, "a-b" otherwise (nft's forms).
  std::string str() const;
};

/// Sorts `ranges` and merges overlapping and adjacent ones of the same family.
std::vector<IpRange> merge_ranges(std::vector<IpRange> ranges);

}  // namespace arpguard
