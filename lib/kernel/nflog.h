// The wire watch's kernel side: frames that arpguard's nft log rules
// ("arpguard claim", "arpguard ask", "arpguard leak"; core/wire.h) hand to an
// nflog group, received over nfnetlink_log and decoded into WireFrames.
//
// decode_nflog_*() are pure functions over received bytes, tested with
// captured messages (tests/wire/captured/); they validate every length and
// never read past the bytes they are given. NflogSocket owns one bound,
// non-blocking socket. Not thread-safe: one owner.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/status.h"
#include "core/wire.h"
#include "kernel/recv_buffer.h"

struct mnl_socket;
struct nlmsghdr;

namespace arpguard {

/// The nflog group arpguard's log rules use unless the policy says otherwise (watch.log_group).
inline constexpr uint16_t kDefaultLogGroup = 4247;
/// Bytes of each logged frame the kernel copies: an ARP packet is 28, a
/// neighbour solicitation or advertisement with its link-layer option 72
/// (IPv6 header included); the rest leaves room for options before it.
inline constexpr uint32_t kNflogCopyRange = 128;

/// One NFULNL_MSG_PACKET message. nullopt when it is another message, has
/// another prefix, or its payload is not an ARP or NDP frame arpguard reads.
/// REQUIRES: nlh->nlmsg_len bytes at `nlh` are readable (mnl_nlmsg_ok said so).
std::optional<WireFrame> decode_nflog_packet(const nlmsghdr* nlh);

/// Every message of one datagram: decoded frames are appended to `out`; the
/// return value counts the log packets that were skipped (other prefixes,
/// undecodable payloads). Control messages (NLMSG_DONE, acks) are not counted.
size_t decode_nflog_datagram(const void* data, size_t len, std::vector<WireFrame>& out);

/// The frame of an nflog payload alone: `payload` starts at the ARP header
/// (family NFPROTO_ARP) or at the IPv6 header (NFPROTO_IPV6). `link_source`
/// is the frame's source MAC (NFULA_HWADDR) when known: NDP's fallback.
std::optional<WireFrame> decode_wire_payload(uint8_t nfproto, WatchRule rule, const uint8_t* payload, size_t len,
                                             const std::optional<MacAddress>& link_source);

class NflogSocket {
 public:
  /// Opens a non-blocking socket bound to nflog `group`, copying
  /// kNflogCopyRange bytes of each frame and handing each over at once
  /// (queue threshold 1), with a receive buffer of `rcvbuf_bytes` (forced
  /// where the capability allows). Errors name the group and say what to do.
  static Result<NflogSocket> open(uint16_t group, int rcvbuf_bytes);
  ~NflogSocket();
  NflogSocket(NflogSocket&& other) noexcept;
  NflogSocket& operator=(NflogSocket&& other) noexcept;
  NflogSocket(const NflogSocket&) = delete;
  NflogSocket& operator=(const NflogSocket&) = delete;

  int fd() const;
  uint16_t group() const { return group_; }
  /// Reads pending datagrams until none is left or `max_frames` frames were
  /// appended to `out` (then the fd stays readable). `lost` is set when the
  /// kernel dropped log messages for lack of room (ENOBUFS). Never blocks.
  Status drain(std::vector<WireFrame>& out, bool& lost, size_t max_frames);
  /// Log packets received but skipped since open (other prefixes, undecodable payloads).
  uint64_t undecodable() const { return undecodable_; }

 private:
  NflogSocket(mnl_socket* sock, uint16_t group);
  mnl_socket* sock_ = nullptr;
  uint16_t group_ = 0;
  uint64_t undecodable_ = 0;
  RecvBuffer buffer_;
};

}  // namespace arpguard
