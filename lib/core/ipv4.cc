#include "core/ipv4.h"

#include <arpa/inet.h>

#include <charconv>

namespace arpguard {

std::optional<Ipv4> Ipv4::parse(std::string_view text) {
  uint32_t value = 0;
  for (int octet = 0; octet < 4; ++octet) {
    if (octet > 0) {
      if (text.empty() || text.front() != '.') return std::nullopt;
      text.remove_prefix(1);
    }
    // Digits only, at most three, no leading zeros (inet_aton would read 010 as octal).
    size_t digits = 0;
    while (digits < text.size() && digits < 4 && text[digits] >= '0' && text[digits] <= '9') ++digits;
    if (digits == 0 || digits > 3 || (digits > 1 && text[0] == '0')) return std::nullopt;
    unsigned part = 0;
    std::from_chars(text.data(), text.data() + digits, part);
    if (part > 255) return std::nullopt;
    value = (value << 8) | part;
    text.remove_prefix(digits);
  }
  if (!text.empty()) return std::nullopt;
  return Ipv4{value};
}

std::string Ipv4::str() const {
  return std::to_string(value >> 24) + '.' + std::to_string((value >> 16) & 0xff) + '.' +
         std::to_string((value >> 8) & 0xff) + '.' + std::to_string(value & 0xff);
}

uint32_t Ipv4::network_order() const { return htonl(value); }
Ipv4 Ipv4::from_network_order(uint32_t be) { return Ipv4{ntohl(be)}; }

std::optional<Ipv4Prefix> Ipv4Prefix::parse(std::string_view text) {
  const size_t slash = text.find('/');
  auto address = Ipv4::parse(text.substr(0, slash));
  if (!address) return std::nullopt;
  if (slash == std::string_view::npos) return Ipv4Prefix{*address, 32};
  std::string_view len_text = text.substr(slash + 1);
  unsigned length = 0;
  auto [end, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), length);
  if (ec != std::errc() || end != len_text.data() + len_text.size() || len_text.empty() ||
      length > 32 || (len_text.size() > 1 && len_text[0] == '0')) {
    return std::nullopt;
  }
  return Ipv4Prefix{*address, static_cast<uint8_t>(length)};
}

std::string Ipv4Prefix::str() const { return address.str() + '/' + std::to_string(length); }

uint32_t Ipv4Prefix::mask() const { return length == 0 ? 0 : ~uint32_t{0} << (32 - length); }

std::string Ipv4Range::str() const {
  if (first == last) return first.str();
  const uint32_t span = last.value - first.value;
  // A prefix: span+1 is a power of two and first is aligned to it.
  if (((span + 1) & span) == 0 && (first.value & span) == 0) {
    int length = 32;
    for (uint32_t s = span; s != 0; s >>= 1) --length;
    return Ipv4Prefix{first, static_cast<uint8_t>(length)}.str();
  }
  return first.str() + '-' + last.str();
}

}  // namespace arpguard
