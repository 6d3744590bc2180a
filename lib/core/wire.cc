#include "core/wire.h"

#include <fmt/format.h>

namespace arpguard {

std::string MacAddress::str() const {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", bytes[0], bytes[1], bytes[2], bytes[3], bytes[4],
                     bytes[5]);
}

std::optional<MacAddress> MacAddress::parse(std::string_view text) {
  if (text.size() != 17) return std::nullopt;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  const char separator = text[2];
  if (separator != ':' && separator != '-') return std::nullopt;
  MacAddress mac;
  for (size_t i = 0; i < 6; ++i) {
    const int high = hex(text[i * 3]);
    const int low = hex(text[i * 3 + 1]);
    if (high < 0 || low < 0) return std::nullopt;
    if (i < 5 && text[i * 3 + 2] != separator) return std::nullopt;
    mac.bytes[i] = static_cast<uint8_t>(high * 16 + low);
  }
  return mac;
}

std::string_view to_string(FrameKind kind) {
  switch (kind) {
    case FrameKind::kArpRequest: return "arp request";
    case FrameKind::kArpReply: return "arp reply";
    case FrameKind::kNeighbourSolicitation: return "neighbour solicitation";
    case FrameKind::kNeighbourAdvertisement: return "neighbour advertisement";
  }
  return "frame";
}

}  // namespace arpguard
