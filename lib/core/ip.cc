#include "core/ip.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace arpguard {

std::string_view to_string(Family family) { return family == Family::kV4 ? "IPv4" : "IPv6"; }

int address_family(Family family) { return family == Family::kV4 ? AF_INET : AF_INET6; }

namespace {

std::optional<uint32_t> parse_dotted_quad(std::string_view text) {
  uint32_t value = 0;
  for (int octet = 0; octet < 4; ++octet) {
    if (octet > 0) {
      if (text.empty() || text.front() != '.') return std::nullopt;
      text.remove_prefix(1);
    }
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
  return value;
}

}  // namespace

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  if (text.find(':') == std::string_view::npos) {
    auto v4 = parse_dotted_quad(text);
    if (!v4) return std::nullopt;
    return IpAddress::v4(*v4);
  }
  // inet_pton wants a NUL-terminated string; IPv6 text is at most 45 characters.
  if (text.size() > 45 || text.find('\0') != std::string_view::npos) return std::nullopt;
  char buffer[46] = {};
  std::memcpy(buffer, text.data(), text.size());
  uint8_t bytes[16];
  if (inet_pton(AF_INET6, buffer, bytes) != 1) return std::nullopt;
  return from_bytes(bytes, 16);
}

std::optional<IpAddress> IpAddress::from_bytes(const void* data, size_t len) {
  if (len != 4 && len != 16) return std::nullopt;
  const auto* p = static_cast<const uint8_t*>(data);
  Uint128 value = 0;
  for (size_t i = 0; i < len; ++i) value = (value << 8) | p[i];
  return IpAddress{len == 4 ? Family::kV4 : Family::kV6, value};
}

std::array<uint8_t, 16> IpAddress::bytes() const {
  std::array<uint8_t, 16> out{};
  const size_t n = size();
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(value >> (8 * (n - 1 - i)));
  return out;
}

uint32_t IpAddress::v4_network_order() const { return htonl(static_cast<uint32_t>(value)); }

namespace {
// Dotted quad into out (at least 15 bytes), returns the end: the state record
// and the logs format hundreds of thousands of these, and inet_ntop goes by sprintf.
char* format_v4(uint32_t value, char* out) {
  for (int shift = 24; shift >= 0; shift -= 8) {
    const unsigned octet = (value >> shift) & 0xff;
    if (octet >= 100) *out++ = static_cast<char>('0' + octet / 100);
    if (octet >= 10) *out++ = static_cast<char>('0' + octet / 10 % 10);
    *out++ = static_cast<char>('0' + octet % 10);
    if (shift) *out++ = '.';
  }
  return out;
}
}  // namespace

std::string IpAddress::str() const {
  char text[INET6_ADDRSTRLEN] = {};
  if (family == Family::kV4) return std::string(text, format_v4(static_cast<uint32_t>(value), text));
  const auto raw = bytes();
  inet_ntop(AF_INET6, raw.data(), text, sizeof(text));
  return text;
}

bool IpAddress::is_loopback() const {
  return family == Family::kV4 ? (value >> 24) == 127 : value == 1;
}

bool IpAddress::is_multicast() const {
  return family == Family::kV4 ? (value >> 28) == 0xe : (value >> 120) == 0xff;
}

bool IpAddress::is_link_local() const {
  return family == Family::kV4 ? (value >> 16) == 0xa9fe : (value >> 118) == (0xfe80 >> 6);
}

bool IpAddress::is_reserved() const { return family == Family::kV4 && (value >> 28) == 0xf; }

bool IpAddress::is_v4_mapped() const { return family == Family::kV6 && (value >> 32) == 0xffff; }

std::optional<IpPrefix> IpPrefix::parse(std::string_view text) {
  const size_t slash = text.find('/');
  auto address = IpAddress::parse(text.substr(0, slash));
  if (!address) return std::nullopt;
  if (slash == std::string_view::npos) return host(*address);
  const std::string_view len_text = text.substr(slash + 1);
  unsigned length = 0;
  auto [end, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), length);
  if (ec != std::errc() || end != len_text.data() + len_text.size() || len_text.empty() ||
      length > static_cast<unsigned>(address->bits()) || (len_text.size() > 1 && len_text[0] == '0')) {
    return std::nullopt;
  }
  return IpPrefix{*address, static_cast<uint8_t>(length)};
}

std::string IpPrefix::str() const {
  std::string text = address.str();
  text += '/';
  if (length >= 100) text += static_cast<char>('0' + length / 100);
  if (length >= 10) text += static_cast<char>('0' + length / 10 % 10);
  text += static_cast<char>('0' + length % 10);
  return text;
}

bool IpPrefix::overlaps(const IpPrefix& other) const {
  return IpRange::of(*this).overlaps(IpRange::of(other));
}

std::optional<IpPrefix> IpRange::as_prefix() const {
  const Uint128 span = last.value - first.value;
  // A prefix: span+1 is a power of two (or the whole space) and first is aligned to it.
  if (((span + 1) & span) != 0 || (first.value & span) != 0) return std::nullopt;
  int length = first.bits();
  for (Uint128 s = span; s != 0; s >>= 1) --length;
  return IpPrefix{first, static_cast<uint8_t>(length)};
}

std::string IpRange::str() const {
  if (first == last) return first.str();
  if (auto prefix = as_prefix()) return prefix->str();
  return first.str() + '-' + last.str();
}

namespace {

// Ranges usually come as runs each in order (a plan's elements, then its
// VIPs; notifications a window at a time): merged pairwise, O(n log runs),
// and sorted only when the runs are too short to be worth it.
void sort_runs(std::vector<IpRange>& ranges) {
  std::vector<size_t> bounds{0};
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i] < ranges[i - 1]) bounds.push_back(i);
  }
  bounds.push_back(ranges.size());
  const size_t runs = bounds.size() - 1;
  if (runs > 1 && runs > ranges.size() / 4) {
    std::sort(ranges.begin(), ranges.end());
    return;
  }
  auto at = [&](size_t i) { return ranges.begin() + static_cast<std::ptrdiff_t>(i); };
  while (bounds.size() > 2) {
    std::vector<size_t> merged{0};
    size_t k = 0;
    for (; k + 2 < bounds.size(); k += 2) {
      std::inplace_merge(at(bounds[k]), at(bounds[k + 1]), at(bounds[k + 2]));
      merged.push_back(bounds[k + 2]);
    }
    if (k + 1 < bounds.size()) merged.push_back(bounds.back());  // an odd run out, carried to the next pass
    bounds = std::move(merged);
  }
}

}  // namespace

std::vector<IpRange> merge_ranges(std::vector<IpRange> ranges) {
  sort_runs(ranges);
  std::vector<IpRange> out;
  out.reserve(ranges.size());
  for (const IpRange& range : ranges) {
    if (!out.empty()) {
      IpRange& back = out.back();
      const bool same_family = back.family() == range.family();
      if (same_family && (back.last.is_max() || range.first.value <= back.last.value + 1)) {
        if (range.last > back.last) back.last = range.last;
        continue;
      }
    }
    out.push_back(range);
  }
  return out;
}

}  // namespace arpguard
