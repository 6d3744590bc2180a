// What the client's side of the wire saw: tcpdump lines (`-tt -e -n`, ARP and
// ICMPv6) classified into claims a real server must never make for a VIP,
// frames that reveal a VIP without claiming it, and the ordinary traffic that
// proves the capture worked.
//
// Pure: no I/O. Thread-safety: values only.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tests/chaos/model.h"

namespace arpguard::chaos {

struct Frame {
  enum class Kind { kArpRequest, kArpReply, kArpAnnouncement, kNeighborSolicit, kNeighborAdvert };
  double time = 0;         ///< tcpdump -tt: wall-clock seconds
  std::string source_mac;  ///< Ethernet source
  Kind kind = Kind::kArpRequest;
  std::string target;      ///< ARP who-has / is-at / announced address; ND target
  std::string sender;      ///< ARP "tell" address; IPv6 source address
  std::string hardware;    ///< ARP is-at MAC
  std::string line;
};

/// One tcpdump line; nullopt for anything but ARP and NS/NA.
std::optional<Frame> parse_frame(const std::string& line);

struct WireReport {
  std::vector<std::pair<Frame, std::string>> leaks;      ///< (frame, why): fail the test
  std::vector<std::pair<Frame, std::string>> revealing;  ///< (frame, why): reported only
  int normal_arp_replies = 0;                            ///< the real server answering for its own address
  int normal_neighbor_adverts = 0;
  int server_requests = 0;  ///< ARP requests from the server with a sender that is no VIP
  int server_solicits = 0;  ///< NSs from the server with a source that is no VIP (nor ::)
  std::map<std::string, int> asked;                      ///< requests / solicitations from the client, per target
  int frames = 0;
};

struct WireExpectations {
  std::string server_mac, server_ip4, server_ip6;
  std::vector<Range> vips4, vips6;  ///< every policy's VIPs (addresses, prefixes, redirected ones)
};

WireReport judge_wire(const std::vector<std::string>& lines, const WireExpectations& expect);

}  // namespace arpguard::chaos
