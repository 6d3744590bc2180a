#include "kernel/prober.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/netfilter.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "kernel/nflog.h"

namespace arpguard {

namespace {

constexpr const char* kNeedsCapNetRaw = "needs CAP_NET_RAW";

std::string hint_for(int error) {
  if (error == EPERM || error == EACCES) return kNeedsCapNetRaw;
  if (error == ENODEV || error == ENXIO) return "no such interface";
  if (error == ENETDOWN) return "the interface is down";
  if (error == EADDRNOTAVAIL) return "the interface has no address to send from";
  return {};
}

void close_fd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

// Only ARP replies and neighbour advertisements wake the listener. A SOCK_DGRAM
// packet socket filters from the network header on; the ethertype is the
// ancillary protocol field. An NA is recognised right after the IPv6 header:
// neighbour discovery carries no extension headers.
constexpr uint32_t kAnswerSnapLength = 256;
const sock_filter kAnswersOnly[] = {
    /* 0 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, static_cast<uint32_t>(SKF_AD_OFF + SKF_AD_PROTOCOL)),
    /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_ARP, 0, 2),
    /* 2 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 6),  // ARP operation
    /* 3 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 2, 5, 6),
    /* 4 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IPV6, 0, 5),
    /* 5 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 6),  // next header
    /* 6 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_ICMPV6, 0, 3),
    /* 7 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 40),  // ICMPv6 type
    /* 8 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ND_NEIGHBOR_ADVERT, 0, 1),
    /* 9 */ BPF_STMT(BPF_RET | BPF_K, kAnswerSnapLength),
    /* 10 */ BPF_STMT(BPF_RET | BPF_K, 0),
};

}  // namespace

IpAddress solicited_node_group(const IpAddress& target) {
  std::array<uint8_t, 16> group = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, 0, 0, 0};
  const std::array<uint8_t, 16> bytes = target.bytes();
  std::memcpy(group.data() + 13, bytes.data() + 13, 3);
  return *IpAddress::from_bytes(group.data(), group.size());
}

Result<Prober> Prober::open() {
  const int packet_fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);  // protocol 0: sends only
  if (packet_fd < 0) return Error{"open packet socket for ARP probes", errno, hint_for(errno)};
  Prober prober(packet_fd, -1);
  prober.icmpv6_fd_ = socket(AF_INET6, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMPV6);
  if (prober.icmpv6_fd_ < 0) return Error{"open ICMPv6 socket for neighbour solicitations", errno, hint_for(errno)};

  // Neighbour discovery demands hop limit 255; our own solicitation must not
  // come back to this host's stack (it would ask itself, and be logged as an ask).
  const int hops = 255;
  const int no_loop = 0;
  icmp6_filter nothing;
  ICMP6_FILTER_SETBLOCKALL(&nothing);  // a raw socket that only sends queues nothing
  if (setsockopt(prober.icmpv6_fd_, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof(hops)) != 0 ||
      setsockopt(prober.icmpv6_fd_, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &hops, sizeof(hops)) != 0 ||
      setsockopt(prober.icmpv6_fd_, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &no_loop, sizeof(no_loop)) != 0 ||
      setsockopt(prober.icmpv6_fd_, IPPROTO_ICMPV6, ICMP6_FILTER, &nothing, sizeof(nothing)) != 0) {
    return Error{"configure ICMPv6 socket for neighbour solicitations", errno};
  }
  return prober;
}

Prober::~Prober() {
  close_fd(packet_fd_);
  close_fd(icmpv6_fd_);
}

Prober::Prober(Prober&& other) noexcept
    : packet_fd_(std::exchange(other.packet_fd_, -1)), icmpv6_fd_(std::exchange(other.icmpv6_fd_, -1)) {}

Prober& Prober::operator=(Prober&& other) noexcept {
  if (this != &other) {
    close_fd(packet_fd_);
    close_fd(icmpv6_fd_);
    packet_fd_ = std::exchange(other.packet_fd_, -1);
    icmpv6_fd_ = std::exchange(other.icmpv6_fd_, -1);
  }
  return *this;
}

Status Prober::ask_arp(int ifindex, const MacAddress& source_mac, const IpAddress& source_ip, const IpAddress& target) {
  const std::string what =
      fmt::format("ARP who-has {} tell {} on ifindex {}", target.str(), source_ip.str(), ifindex);
  if (source_ip.family != Family::kV4 || target.family != Family::kV4) return Status::failure(what, EAFNOSUPPORT);
  // RFC 826 over Ethernet: htype 1, ptype IPv4, hlen 6, plen 4, op request.
  std::array<uint8_t, 28> request = {0, 1, 0x08, 0x00, 6, 4, 0, 1};
  std::memcpy(request.data() + 8, source_mac.bytes.data(), 6);
  std::memcpy(request.data() + 14, source_ip.bytes().data(), 4);
  std::memcpy(request.data() + 24, target.bytes().data(), 4);  // target hardware address stays zero

  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_protocol = htons(ETH_P_ARP);
  to.sll_ifindex = ifindex;
  to.sll_halen = 6;
  std::memset(to.sll_addr, 0xff, 6);
  if (sendto(packet_fd_, request.data(), request.size(), MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&to),
             sizeof(to)) < 0) {
    return Status::failure(what, errno, hint_for(errno));
  }
  return Status();
}

Status Prober::ask_ndp(int ifindex, const MacAddress& source_mac, const IpAddress& target) {
  const std::string what = fmt::format("neighbour solicitation for {} on ifindex {}", target.str(), ifindex);
  if (target.family != Family::kV6) return Status::failure(what, EAFNOSUPPORT);
  // RFC 4861 4.3: type 135, code 0, checksum (the kernel's), reserved, target;
  // then the source link-layer address option (type 1, 8 bytes).
  std::array<uint8_t, 32> solicitation = {ND_NEIGHBOR_SOLICIT, 0};
  std::memcpy(solicitation.data() + 8, target.bytes().data(), 16);
  solicitation[24] = ND_OPT_SOURCE_LINKADDR;
  solicitation[25] = 1;
  std::memcpy(solicitation.data() + 26, source_mac.bytes.data(), 6);

  sockaddr_in6 to{};
  to.sin6_family = AF_INET6;
  const std::array<uint8_t, 16> group = solicited_node_group(target).bytes();
  std::memcpy(&to.sin6_addr, group.data(), group.size());
  to.sin6_scope_id = static_cast<uint32_t>(ifindex);
  if (sendto(icmpv6_fd_, solicitation.data(), solicitation.size(), MSG_DONTWAIT,
             reinterpret_cast<const sockaddr*>(&to), sizeof(to)) < 0) {
    return Status::failure(what, errno, hint_for(errno));
  }
  return Status();
}

std::optional<HeardAnswer> decode_answer(uint16_t ethertype, const uint8_t* data, size_t len,
                                         const MacAddress& link_source, int ifindex) {
  std::optional<WireFrame> frame;
  if (ethertype == ETH_P_ARP) {
    frame = decode_wire_payload(NFPROTO_ARP, WatchRule::kClaim, data, len, link_source);
  } else if (ethertype == ETH_P_IPV6) {
    frame = decode_wire_payload(NFPROTO_IPV6, WatchRule::kClaim, data, len, link_source);
  }
  if (!frame || (frame->kind != FrameKind::kArpReply && frame->kind != FrameKind::kNeighbourAdvertisement)) {
    return std::nullopt;
  }
  frame->ifindex = ifindex;
  return HeardAnswer{*frame, link_source};
}

Result<AnswerListener> AnswerListener::open(int ifindex, int rcvbuf_bytes) {
  const std::string what = fmt::format("listen for answers on ifindex {}", ifindex);
  // Protocol 0 queues nothing until bind(): the filter is attached first.
  const int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error{what, errno, hint_for(errno)};
  AnswerListener listener(fd, ifindex);
  sock_fprog program{static_cast<unsigned short>(std::size(kAnswersOnly)), const_cast<sock_filter*>(kAnswersOnly)};
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof(program)) != 0) return Error{what, errno};
  const int yes = 1;
  setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &yes, sizeof(yes));  // Linux 4.20+; drain checks anyway
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf_bytes, sizeof(rcvbuf_bytes)) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf_bytes, sizeof(rcvbuf_bytes));
  }
  sockaddr_ll at{};
  at.sll_family = AF_PACKET;
  at.sll_protocol = htons(ETH_P_ALL);
  at.sll_ifindex = ifindex;
  if (bind(fd, reinterpret_cast<const sockaddr*>(&at), sizeof(at)) != 0) return Error{what, errno, hint_for(errno)};
  return listener;
}

AnswerListener::~AnswerListener() { close_fd(fd_); }

AnswerListener::AnswerListener(AnswerListener&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), ifindex_(other.ifindex_) {}

AnswerListener& AnswerListener::operator=(AnswerListener&& other) noexcept {
  if (this != &other) {
    close_fd(fd_);
    fd_ = std::exchange(other.fd_, -1);
    ifindex_ = other.ifindex_;
  }
  return *this;
}

Status AnswerListener::drain(std::vector<HeardAnswer>& out, size_t max_frames) {
  std::array<uint8_t, kAnswerSnapLength> buffer;
  for (size_t frames = 0; frames < max_frames;) {
    sockaddr_ll from{};
    socklen_t from_len = sizeof(from);
    const ssize_t n =
        recvfrom(fd_, buffer.data(), buffer.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &from_len);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Status();
      if (errno == EINTR) continue;
      return Status::failure(fmt::format("receive answers on ifindex {}", ifindex_), errno);
    }
    ++frames;
    if (from.sll_pkttype == PACKET_OUTGOING || from.sll_halen != 6) continue;
    MacAddress source;
    std::memcpy(source.bytes.data(), from.sll_addr, 6);
    if (auto answer = decode_answer(ntohs(from.sll_protocol), buffer.data(), static_cast<size_t>(n), source, ifindex_)) {
      out.push_back(*answer);
    }
  }
  return Status();
}

}  // namespace arpguard
