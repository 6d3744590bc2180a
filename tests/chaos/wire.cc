#include "tests/chaos/wire.h"

#include <regex>

namespace arpguard::chaos {

namespace {

bool in_any(const std::vector<Range>& ranges, const std::string& text) {
  const auto a = Addr::parse(text);
  if (!a) return false;
  for (const Range& r : ranges) {
    if (r.contains(*a)) return true;
  }
  return false;
}

}  // namespace

std::optional<Frame> parse_frame(const std::string& line) {
  static const std::regex head(R"(^(\d+\.\d+) ([0-9a-f:]{17}) > [0-9a-f:]{17}, ethertype (ARP|IPv6) \(0x[0-9a-f]+\), length \d+: (.*)$)");
  static const std::regex arp_request(R"(^Request who-has (\S+?)(?: \([0-9a-f:]+\))? tell (\S+?),)");
  static const std::regex arp_reply(R"(^Reply (\S+) is-at ([0-9a-f:]{17}),)");
  static const std::regex arp_announce(R"(^Announcement (\S+?),)");
  static const std::regex nd(R"(^(\S+) > (\S+): ICMP6, neighbor (solicitation|advertisement), (?:who has|tgt is) (\S+?),)");
  std::smatch m;
  if (!std::regex_match(line, m, head)) return std::nullopt;
  Frame f;
  f.time = std::stod(m[1]);
  f.source_mac = m[2];
  f.line = line;
  const std::string rest = m[4];
  std::smatch p;
  if (m[3] == "ARP") {
    if (std::regex_search(rest, p, arp_request)) {
      f.kind = Frame::Kind::kArpRequest;
      f.target = p[1];
      f.sender = p[2];
    } else if (std::regex_search(rest, p, arp_reply)) {
      f.kind = Frame::Kind::kArpReply;
      f.target = p[1];
      f.sender = p[1];
      f.hardware = p[2];
    } else if (std::regex_search(rest, p, arp_announce)) {
      f.kind = Frame::Kind::kArpAnnouncement;
      f.target = p[1];
      f.sender = p[1];
    } else {
      return std::nullopt;
    }
    return f;
  }
  if (!std::regex_search(rest, p, nd)) return std::nullopt;
  f.kind = p[3] == "solicitation" ? Frame::Kind::kNeighborSolicit : Frame::Kind::kNeighborAdvert;
  f.sender = p[1];
  f.target = p[4];
  return f;
}

WireReport judge_wire(const std::vector<std::string>& lines, const WireExpectations& expect) {
  WireReport report;
  for (const std::string& line : lines) {
    std::optional<Frame> parsed = parse_frame(line);
    if (!parsed) continue;
    const Frame& f = *parsed;
    ++report.frames;
    const bool from_server = f.source_mac == expect.server_mac || f.hardware == expect.server_mac;
    using K = Frame::Kind;
    if (!from_server) {
      if (f.kind == K::kArpRequest || f.kind == K::kNeighborSolicit) ++report.asked[f.target];
      continue;
    }
    switch (f.kind) {
      case K::kArpReply:
        if (in_any(expect.vips4, f.target)) report.leaks.emplace_back(f, "ARP reply for VIP " + f.target);
        if (f.target == expect.server_ip4) ++report.normal_arp_replies;
        break;
      case K::kArpRequest:
        if (in_any(expect.vips4, f.sender)) {
          report.leaks.emplace_back(f, (f.sender == f.target ? "gratuitous ARP for VIP " : "ARP request with VIP sender ") +
                                           f.sender);
        } else if (in_any(expect.vips4, f.target)) {
          report.revealing.emplace_back(f, "the real server asking for VIP " + f.target);
        } else {
          ++report.server_requests;
        }
        break;
      case K::kArpAnnouncement:
        if (in_any(expect.vips4, f.target)) report.leaks.emplace_back(f, "ARP announcement of VIP " + f.target);
        break;
      case K::kNeighborAdvert:
        if (in_any(expect.vips6, f.target)) report.leaks.emplace_back(f, "neighbour advertisement for VIP " + f.target);
        if (f.target == expect.server_ip6) ++report.normal_neighbor_adverts;
        break;
      case K::kNeighborSolicit:
        if (in_any(expect.vips6, f.sender)) {
          // Its source link-layer option teaches the receiver VIP -> the server's MAC.
          report.leaks.emplace_back(f, "neighbour solicitation from VIP " + f.sender);
        } else if (in_any(expect.vips6, f.target)) {
          report.revealing.emplace_back(f, f.sender == "::" ? "duplicate address detection probe for VIP " + f.target
                                                            : "the real server soliciting VIP " + f.target);
        } else if (f.sender != "::") {
          ++report.server_solicits;
        }
        break;
    }
  }
  return report;
}

}  // namespace arpguard::chaos
