// Asking the wire who holds an address, and hearing who answers: the
// kernel side of `arpguard probe`.
//
// Prober sends ARP who-has requests (an AF_PACKET socket: the frame leaves
// past the arp netfilter hooks) and IPv6 neighbour solicitations (a raw
// ICMPv6 socket: hop limit 255, to the target's solicited-node group, not
// looped back to this host). AnswerListener hears the answers on one
// interface: an AF_PACKET socket whose classic BPF filter lets only ARP
// replies and neighbour advertisements wake it. Every socket is
// non-blocking: a full queue is an error value (EAGAIN), never a wait.
// Not thread-safe: one owner each.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/ip.h"
#include "core/status.h"
#include "core/wire.h"

namespace arpguard {

class Prober {
 public:
  /// REQUIRES nothing; fails with "needs CAP_NET_RAW" without the privilege.
  static Result<Prober> open();
  ~Prober();
  Prober(Prober&& other) noexcept;
  Prober& operator=(Prober&& other) noexcept;
  Prober(const Prober&) = delete;
  Prober& operator=(const Prober&) = delete;

  /// Broadcasts "who-has `target` tell `source_ip`" from `source_mac` on `ifindex`.
  /// REQUIRES: source_ip and target are IPv4.
  Status ask_arp(int ifindex, const MacAddress& source_mac, const IpAddress& source_ip, const IpAddress& target);
  /// Sends a neighbour solicitation for `target` to its solicited-node group
  /// on `ifindex`, from the interface's link-local address (the kernel picks
  /// it), with `source_mac` as its source link-layer option.
  /// REQUIRES: target is IPv6.
  Status ask_ndp(int ifindex, const MacAddress& source_mac, const IpAddress& target);

 private:
  Prober(int packet_fd, int icmpv6_fd) : packet_fd_(packet_fd), icmpv6_fd_(icmpv6_fd) {}
  int packet_fd_ = -1;
  int icmpv6_fd_ = -1;
};

/// The solicited-node multicast group of `target` (ff02::1:ffXX:XXXX).
IpAddress solicited_node_group(const IpAddress& target);

/// A frame an AnswerListener heard: an ARP reply or a neighbour advertisement,
/// as a WireFrame with rule kClaim (vip: the ARP sender IP or the NA target;
/// mac: the ARP sender hardware address, the NA's target link-layer option,
/// else the frame's source).
struct HeardAnswer {
  WireFrame frame;
  MacAddress link_source;  ///< the Ethernet source of the frame
};

/// Decodes a frame from its network header on: `ethertype` 0x0806 (ARP) or
/// 0x86dd (IPv6). nullopt for anything but an ARP reply or an NA. Pure.
std::optional<HeardAnswer> decode_answer(uint16_t ethertype, const uint8_t* data, size_t len,
                                         const MacAddress& link_source, int ifindex);

class AnswerListener {
 public:
  /// Listens on `ifindex`; the filter is in place before the first frame is queued.
  static Result<AnswerListener> open(int ifindex, int rcvbuf_bytes);
  ~AnswerListener();
  AnswerListener(AnswerListener&& other) noexcept;
  AnswerListener& operator=(AnswerListener&& other) noexcept;
  AnswerListener(const AnswerListener&) = delete;
  AnswerListener& operator=(const AnswerListener&) = delete;

  int fd() const { return fd_; }
  int ifindex() const { return ifindex_; }
  /// Reads queued frames until none is left or `max_frames` were read. Never blocks.
  Status drain(std::vector<HeardAnswer>& out, size_t max_frames);

 private:
  AnswerListener(int fd, int ifindex) : fd_(fd), ifindex_(ifindex) {}
  int fd_ = -1;
  int ifindex_ = 0;
};

}  // namespace arpguard
