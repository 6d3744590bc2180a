#include "kernel/events.h"

#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <poll.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <utility>

#include "core/engine.h"
#include "kernel/nft_codec.h"
#include "kernel/rtnl_decode.h"

namespace arpguard {

namespace {

// Splits a datagram into messages by their headers, checked as unsigned
// lengths (mnl_nlmsg_ok compares them as int, so a length of 2^31 or more
// would pass). A header that does not fit the bytes left ends the walk with an
// Undecodable event: what it said is unknown, and the cache is read again.
// `last_type`, when given, receives the type of the last whole message.
template <class Decode>
std::vector<KernelEvent> decode_each(const void* data, size_t len, Decode decode, uint16_t* last_type = nullptr) {
  std::vector<KernelEvent> events;
  const auto* bytes = static_cast<const uint8_t*>(data);
  for (size_t at = 0; at < len;) {
    const size_t left = len - at;
    nlmsghdr header;
    if (left < sizeof(header)) {
      events.push_back({0, delta::Undecodable{std::to_string(left) + " trailing bytes"}});
      break;
    }
    std::memcpy(&header, bytes + at, sizeof(header));
    if (header.nlmsg_len < sizeof(header) || header.nlmsg_len > left) {
      events.push_back({0, delta::Undecodable{"a message of " + std::to_string(header.nlmsg_len) + " bytes in " +
                                              std::to_string(left)}});
      break;
    }
    // Aligned copy: the decoders read the message in place through libmnl.
    static thread_local std::vector<uint8_t> scratch;
    const auto* nlh = reinterpret_cast<const nlmsghdr*>(bytes + at);
    if (reinterpret_cast<uintptr_t>(nlh) % alignof(nlmsghdr) != 0) {
      scratch.assign(bytes + at, bytes + at + header.nlmsg_len);
      nlh = reinterpret_cast<const nlmsghdr*>(scratch.data());
    }
    if (std::optional<Delta> delta = decode(nlh)) events.push_back({header.nlmsg_pid, std::move(*delta)});
    if (last_type) *last_type = header.nlmsg_type;
    at += std::min<size_t>(NLMSG_ALIGN(header.nlmsg_len), left);
  }
  return events;
}

}  // namespace

std::vector<KernelEvent> decode_rtnetlink(const void* data, size_t len) {
  return decode_each(data, len, [](const nlmsghdr* nlh) { return rtnl::decode(nlh); });
}

std::vector<KernelEvent> decode_nftables(const void* data, size_t len, bool* ends_transaction,
                                         std::optional<uint32_t>* generation) {
  static const std::vector<nft::TableId> ours = arpguard_tables();
  uint16_t last_type = 0;
  auto decode = [&](const nlmsghdr* nlh) {
    if (generation) {
      if (auto id = nftcodec::generation_of(nlh)) *generation = id;
    }
    return nftcodec::decode(nlh, ours);
  };
  auto events = decode_each(data, len, decode, &last_type);
  if (ends_transaction) *ends_transaction = NFNL_MSG_TYPE(last_type) == NFT_MSG_NEWGEN;
  return events;
}

Result<std::unique_ptr<EventSocket>> EventSocket::open(Kind kind, int receive_buffer) {
  const bool rtnl = kind == Kind::kRtnetlink;
  mnl_socket* sock = mnl_socket_open(rtnl ? NETLINK_ROUTE : NETLINK_NETFILTER);
  const char* what = rtnl ? "rtnetlink event socket" : "nftables event socket";
  if (!sock) return Error{std::string("open ") + what, errno};
  std::unique_ptr<EventSocket> events(new EventSocket(sock, kind));
  if (mnl_socket_bind(sock, 0, MNL_SOCKET_AUTOPID) < 0) return Error{std::string("bind ") + what, errno};
  const std::vector<int> groups = rtnl ? std::vector<int>{RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR,
                                                          RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE,
                                                          RTNLGRP_IPV4_RULE}
                                       : std::vector<int>{NFNLGRP_NFTABLES};
  for (int group : groups) {
    if (mnl_socket_setsockopt(sock, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) < 0) {
      return Error{std::string("join notification group on ") + what, errno};
    }
  }
  const int fd = mnl_socket_get_fd(sock);
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &receive_buffer, sizeof(receive_buffer)) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer));
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return events;
}

EventSocket::~EventSocket() { mnl_socket_close(sock_); }

int EventSocket::fd() const { return mnl_socket_get_fd(sock_); }

bool EventSocket::join(bool on) {
  int group = NFNLGRP_NFTABLES;
  return mnl_socket_setsockopt(sock_, on ? NETLINK_ADD_MEMBERSHIP : NETLINK_DROP_MEMBERSHIP, &group, sizeof(group)) == 0;
}

bool EventSocket::mute(uint32_t generation) {
  if (kind_ != Kind::kNftables || deaf_) return false;
  // The kernel moves the generation before it sends a commit's notifications:
  // whatever led up to `generation` is heard whole (its NEWGEN read) before
  // the socket leaves the group, or it is not left. Read in order, kept for
  // the next drain.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(50);
  for (;;) {
    bool lost = false;
    if (Status s = read_socket(told_, lost); !s) {
      told_error_ = s;
      return false;
    }
    if (lost) {
      told_lost_ = true;
      return false;
    }
    if (heard_generation_ && static_cast<int32_t>(*heard_generation_ - generation) >= 0) break;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd wait{fd(), POLLIN, 0};
    (void)::poll(&wait, 1, static_cast<int>(left.count()) + 1);
  }
  return join(false);
}

void EventSocket::unmute(std::vector<KernelEvent> told) {
  // What came before the mute is read first: it happened before the commit.
  bool lost = false;
  if (Status s = read_socket(told_, lost); !s) told_error_ = s;
  told_lost_ |= lost;
  for (KernelEvent& event : told) told_.push_back(std::move(event));
  if (!join(true)) {
    deaf_ = true;  // nothing is heard until it is joined again: everything is read again then
    told_lost_ = true;
  }
}

Status EventSocket::drain(std::vector<KernelEvent>& events, bool& lost) {
  if (deaf_ && join(true)) deaf_ = false;
  for (KernelEvent& event : told_) events.push_back(std::move(event));
  told_.clear();
  lost |= std::exchange(told_lost_, false);
  if (!told_error_.ok()) {
    between_transactions_ = false;
    return std::exchange(told_error_, Status());
  }
  if (deaf_) {
    lost = true;
    return Status();
  }
  return read_socket(events, lost);
}

Status EventSocket::read_socket(std::vector<KernelEvent>& events, bool& lost) {
  for (;;) {
    sockaddr_nl from{};
    socklen_t from_len = sizeof(from);
    const ssize_t n = recvfrom(fd(), buffer_.data(), buffer_.size(), 0, reinterpret_cast<sockaddr*>(&from), &from_len);
    if (n < 0) {
      // A loss or a failed read leaves whatever transaction was under way unknown.
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (lost) between_transactions_ = false;
        return Status();
      }
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {
        lost = true;
        continue;
      }
      between_transactions_ = false;
      return Status::failure("receive kernel events", errno);
    }
    // Only the kernel speaks on these sockets; a datagram another process sent
    // (anyone with CAP_NET_ADMIN in this namespace can) is not believed.
    if (from.nl_pid != 0) continue;
    std::vector<KernelEvent> decoded =
        kind_ == Kind::kRtnetlink ? decode_rtnetlink(buffer_.data(), static_cast<size_t>(n))
                                  : decode_nftables(buffer_.data(), static_cast<size_t>(n), &between_transactions_,
                                                    &heard_generation_);
    for (KernelEvent& event : decoded) events.push_back(std::move(event));
  }
}

}  // namespace arpguard
