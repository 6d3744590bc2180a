// IPv4 addresses, prefixes and ranges: parsing, formatting, arithmetic.
// Pure values; no syscalls. Addresses are held in host byte order.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace arpguard {

struct Ipv4 {
  uint32_t value = 0;  ///< host byte order

  auto operator<=>(const Ipv4&) const = default;
  /// Dotted quad; nullopt unless exactly four decimal octets.
  static std::optional<Ipv4> parse(std::string_view text);
  std::string str() const;
  uint32_t network_order() const;
  static Ipv4 from_network_order(uint32_t be);

  bool is_unspecified() const { return value == 0; }
  bool is_loopback() const { return (value >> 24) == 127; }
  bool is_multicast() const { return (value >> 28) == 0xe; }
  bool is_reserved_class_e() const { return (value >> 28) == 0xf; }
};

/// An address with a prefix length, as the kernel identifies an address:
/// family, address and prefix length, nothing else.
struct Ipv4Prefix {
  Ipv4 address;
  uint8_t length = 32;

  auto operator<=>(const Ipv4Prefix&) const = default;
  /// "a.b.c.d" (implies /32) or "a.b.c.d/len"; nullopt when malformed.
  static std::optional<Ipv4Prefix> parse(std::string_view text);
  /// "10.0.0.5/32"
  std::string str() const;
  uint32_t mask() const;
  /// True when no host bits are set below the prefix length.
  bool is_canonical() const { return (address.value & ~mask()) == 0; }
  Ipv4 first() const { return Ipv4{address.value & mask()}; }
  Ipv4 last() const { return Ipv4{(address.value & mask()) | ~mask()}; }
  bool contains(Ipv4 ip) const { return (ip.value & mask()) == (address.value & mask()); }
};

/// An inclusive range [first, last] of addresses: the unit of an nft interval set.
struct Ipv4Range {
  Ipv4 first;
  Ipv4 last;

  auto operator<=>(const Ipv4Range&) const = default;
  static Ipv4Range of(const Ipv4Prefix& prefix) { return {prefix.first(), prefix.last()}; }
  /// "10.0.0.5" for one address, "10.0.0.0/24" for a prefix, "a-b" otherwise.
  std::string str() const;
};

}  // namespace arpguard
