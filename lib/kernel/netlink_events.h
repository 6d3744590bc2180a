// Kernel change notifications arpguardd listens to: rtnetlink (links and IPv4
// addresses) and nftables (NFNLGRP_NFTABLES).
//
// decode_*() are pure functions over received bytes, tested with captured
// messages; EventSocket owns one subscribed socket. No event carries state:
// an event only says "look again", so duplicate or late ones are harmless.
// Not thread-safe: one owner.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

struct mnl_socket;

namespace arpguard {

struct KernelEvent {
  uint32_t sender_portid = 0;  ///< netlink port whose request caused it; 0 when the kernel itself did
  std::string what;            ///< "RTM_DELADDR 192.0.2.10/32 lo", "NFT_MSG_DELTABLE arp arpguard"
};

/// Link and IPv4 address notifications in one rtnetlink datagram.
std::vector<KernelEvent> decode_rtnetlink(const void* data, size_t len);
/// nftables notifications in one datagram, only those about table `arp arpguard`.
std::vector<KernelEvent> decode_nftables(const void* data, size_t len);

class EventSocket {
 public:
  enum class Kind { kRtnetlink, kNftables };

  /// Opens and subscribes a non-blocking socket; `receive_buffer` bytes (forced where allowed).
  static Result<std::unique_ptr<EventSocket>> open(Kind kind, int receive_buffer);
  ~EventSocket();

  int fd() const;
  /// Reads every pending datagram. `overrun` is set when the kernel dropped
  /// notifications for lack of room (ENOBUFS): the caller must resync fully.
  Status drain(std::vector<KernelEvent>& events, bool& overrun);

 private:
  EventSocket(mnl_socket* sock, Kind kind) : sock_(sock), kind_(kind) {}
  mnl_socket* sock_;
  Kind kind_;
};

}  // namespace arpguard
