#include "kernel/nflog.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/capability.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace arpguard {

namespace {

// 64 KiB holds any datagram nfnetlink_log sends (its buffer is at most 128 KiB
// when configured so, one page by default; with queue threshold 1 a datagram
// carries one message of a few hundred bytes).
constexpr size_t kReceiveChunk = 64 * 1024;

constexpr uint16_t kEthTypeIpv4 = 0x0800;
constexpr uint16_t kEthTypeArp = 0x0806;
constexpr size_t kEthernetHeader = 14;
constexpr uint8_t kArpOutputHook = 1;  // NF_ARP_OUT
constexpr uint8_t kIcmpv6 = 58;
constexpr uint8_t kNeighbourSolicitation = 135;
constexpr uint8_t kNeighbourAdvertisement = 136;
constexpr uint8_t kOptionSourceLinkLayer = 1;
constexpr uint8_t kOptionTargetLinkLayer = 2;
constexpr uint8_t kAdvertSolicitedFlag = 0x40;

uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

uint32_t be32(const void* data) {
  uint32_t value;
  std::memcpy(&value, data, sizeof(value));
  return ntohl(value);
}

MacAddress mac_at(const uint8_t* p) {
  MacAddress mac;
  std::memcpy(mac.bytes.data(), p, mac.bytes.size());
  return mac;
}

std::optional<IpAddress> unless_unspecified(const IpAddress& address) {
  if (address.is_unspecified()) return std::nullopt;
  return address;
}

std::optional<WatchRule> rule_of(std::string_view prefix) {
  if (prefix == kLogPrefixClaim) return WatchRule::kClaim;
  if (prefix == kLogPrefixAsk) return WatchRule::kAsk;
  if (prefix == kLogPrefixLeak) return WatchRule::kLeak;
  return std::nullopt;
}

// ARP over Ethernet and IPv4 (RFC 826): htype, ptype, hlen 6, plen 4, op, sha, spa, tha, tpa.
std::optional<WireFrame> decode_arp(WatchRule rule, const uint8_t* p, size_t len) {
  constexpr size_t kArpLength = 28;
  if (len < kArpLength) return std::nullopt;
  if (be16(p + 2) != kEthTypeIpv4 || p[4] != 6 || p[5] != 4) return std::nullopt;
  WireFrame frame;
  frame.rule = rule;
  switch (be16(p + 6)) {
    case 1: frame.kind = FrameKind::kArpRequest; break;
    case 2: frame.kind = FrameKind::kArpReply; break;
    default: return std::nullopt;
  }
  const IpAddress sender_ip = *IpAddress::from_bytes(p + 14, 4);
  const IpAddress target_ip = *IpAddress::from_bytes(p + 24, 4);
  frame.mac = mac_at(p + 8);
  if (rule == WatchRule::kAsk) {
    frame.vip = target_ip;
    frame.sender = unless_unspecified(sender_ip);
  } else {
    frame.vip = sender_ip;
  }
  frame.gratuitous = sender_ip == target_ip;
  return frame;
}

// IPv6, past hop-by-hop, routing and destination options headers, to an
// ICMPv6 neighbour solicitation or advertisement (RFC 4861 4.3, 4.4).
std::optional<WireFrame> decode_ndp(WatchRule rule, const uint8_t* p, size_t len,
                                    const std::optional<MacAddress>& link_source) {
  constexpr size_t kIpv6Header = 40;
  constexpr size_t kNdpMessage = 24;  // type, code, checksum, flags/reserved, target
  if (len < kIpv6Header || (p[0] >> 4) != 6) return std::nullopt;
  uint8_t next = p[6];
  size_t offset = kIpv6Header;
  for (int headers = 0; next == 0 || next == 43 || next == 60; ++headers) {
    if (headers == 8 || len - offset < 2) return std::nullopt;
    next = p[offset];
    const size_t header_length = (static_cast<size_t>(p[offset + 1]) + 1) * 8;
    if (len - offset < header_length) return std::nullopt;
    offset += header_length;
  }
  if (next != kIcmpv6 || len - offset < kNdpMessage) return std::nullopt;
  const uint8_t* icmp = p + offset;
  if (icmp[1] != 0) return std::nullopt;  // code: the kernel ignores any other
  WireFrame frame;
  frame.rule = rule;
  uint8_t wanted_option = 0;
  if (icmp[0] == kNeighbourSolicitation) {
    frame.kind = FrameKind::kNeighbourSolicitation;
    wanted_option = kOptionSourceLinkLayer;
  } else if (icmp[0] == kNeighbourAdvertisement) {
    frame.kind = FrameKind::kNeighbourAdvertisement;
    wanted_option = kOptionTargetLinkLayer;
    frame.gratuitous = (icmp[4] & kAdvertSolicitedFlag) == 0;
  } else {
    return std::nullopt;
  }
  frame.vip = *IpAddress::from_bytes(icmp + 8, 16);
  if (rule == WatchRule::kAsk) frame.sender = unless_unspecified(*IpAddress::from_bytes(p + 8, 16));

  // Options: type, length in units of 8 bytes (0 is invalid), value. A copy
  // range that cut the options short leaves the fallback.
  std::optional<MacAddress> option_mac;
  const size_t end = len - offset;
  for (size_t at = kNdpMessage; end - at >= 2;) {
    const size_t option_length = static_cast<size_t>(icmp[at + 1]) * 8;
    if (option_length == 0 || end - at < option_length) break;
    if (icmp[at] == wanted_option && option_length == 8 && !option_mac) option_mac = mac_at(icmp + at + 2);
    at += option_length;
  }
  if (option_mac) {
    frame.mac = *option_mac;
  } else if (link_source) {
    frame.mac = *link_source;
  }
  return frame;
}

// One attribute's value, within the message.
struct Value {
  const uint8_t* data = nullptr;
  size_t len = 0;
};

// The attributes of a log packet message, by type. Walked with explicit bounds
// (libmnl's iterators trust nlmsg_len's alignment and sign): a bad length ends
// the walk, never the read past it.
struct PacketAttributes {
  Value by_type[NFULA_MAX + 1] = {};

  explicit PacketAttributes(const nlmsghdr* nlh) {
    const auto* base = reinterpret_cast<const uint8_t*>(nlh);
    const size_t end = nlh->nlmsg_len;
    for (size_t at = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(nfgenmsg)); at < end && end - at >= sizeof(nlattr);) {
      nlattr attr;
      std::memcpy(&attr, base + at, sizeof(attr));
      if (attr.nla_len < sizeof(nlattr) || attr.nla_len > end - at) break;
      const uint16_t type = attr.nla_type & NLA_TYPE_MASK;
      if (type <= NFULA_MAX) by_type[type] = {base + at + NLA_HDRLEN, attr.nla_len - size_t{NLA_HDRLEN}};
      at += NLA_ALIGN(attr.nla_len);
    }
  }
};

std::optional<int> ifindex_of(const Value& value) {
  if (value.len < sizeof(uint32_t)) return std::nullopt;
  return static_cast<int>(be32(value.data));
}

std::optional<uint8_t> hook_of(const Value& value) {
  if (value.len < sizeof(nfulnl_msg_packet_hdr)) return std::nullopt;
  nfulnl_msg_packet_hdr header;
  std::memcpy(&header, value.data, sizeof(header));
  return header.hook;
}

bool is_log_packet(const nlmsghdr* nlh) {
  return nlh->nlmsg_type == ((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET);
}

bool has_capability(int capability) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  return (data[capability / 32].effective & (1u << (capability % 32))) != 0;
}

std::string hint_for(int error, uint16_t group) {
  switch (error) {
    case EPERM:
      // nfnetlink refuses a sender without CAP_NET_ADMIN, and nfnetlink_log
      // refuses a group another socket is bound to, both with EPERM.
      if (!has_capability(CAP_NET_ADMIN)) return "needs CAP_NET_ADMIN";
      return fmt::format("another program listens on nflog group {}; choose another with watch.log_group", group);
    case EBUSY:
    case EEXIST:
      return fmt::format("another program listens on nflog group {}; choose another with watch.log_group", group);
    case ENOENT:
    case EOPNOTSUPP:
    case EPROTONOSUPPORT:
      return "the kernel lacks nfnetlink_log: modprobe nfnetlink_log";
    default: return {};
  }
}

// Sends one NFULNL_MSG_CONFIG request for `group` and waits (bounded) for its
// acknowledgement. Returns 0 or the errno the kernel answered with.
int configure(mnl_socket* sock, uint16_t group, uint32_t seq, const std::function<void(nlmsghdr*)>& add_attributes) {
  alignas(nlmsghdr) char request[512];
  nlmsghdr* nlh = mnl_nlmsg_put_header(request);
  nlh->nlmsg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  nlh->nlmsg_seq = seq;
  auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
  nfg->nfgen_family = AF_UNSPEC;
  nfg->version = NFNETLINK_V0;
  nfg->res_id = htons(group);
  add_attributes(nlh);
  if (mnl_socket_sendto(sock, nlh, nlh->nlmsg_len) < 0) return errno;

  const int fd = mnl_socket_get_fd(sock);
  const uint32_t portid = mnl_socket_get_portid(sock);
  RecvBuffer buffer(kReceiveChunk);
  for (int waits = 0; waits < 50; ++waits) {
    pollfd readable{fd, POLLIN, 0};
    if (poll(&readable, 1, 100) < 0 && errno != EINTR) return errno;
    const ssize_t n = recv(fd, buffer.data(), buffer.size(), 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR || errno == ENOBUFS) continue;
      return errno;
    }
    int remaining = static_cast<int>(n);
    for (auto* reply = reinterpret_cast<const nlmsghdr*>(buffer.data()); mnl_nlmsg_ok(reply, remaining);
         reply = mnl_nlmsg_next(reply, &remaining)) {
      if (reply->nlmsg_type != NLMSG_ERROR || reply->nlmsg_seq != seq || reply->nlmsg_pid != portid) continue;
      if (reply->nlmsg_len < NLMSG_HDRLEN + sizeof(nlmsgerr)) return EBADMSG;
      const auto* error = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(reply));
      return -error->error;
    }
  }
  return ETIMEDOUT;
}

}  // namespace

std::optional<WireFrame> decode_wire_payload(uint8_t nfproto, WatchRule rule, const uint8_t* payload, size_t len,
                                             const std::optional<MacAddress>& link_source) {
  if (!payload) return std::nullopt;
  if (nfproto == NFPROTO_ARP) return decode_arp(rule, payload, len);
  if (nfproto == NFPROTO_IPV6) return decode_ndp(rule, payload, len, link_source);
  return std::nullopt;
}

std::optional<WireFrame> decode_nflog_packet(const nlmsghdr* nlh) {
  if (nlh->nlmsg_len < NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(nfgenmsg)) || !is_log_packet(nlh)) return std::nullopt;
  nfgenmsg nfg;
  std::memcpy(&nfg, reinterpret_cast<const uint8_t*>(nlh) + NLMSG_HDRLEN, sizeof(nfg));
  const PacketAttributes attrs(nlh);

  const Value& prefix = attrs.by_type[NFULA_PREFIX];
  const Value& payload = attrs.by_type[NFULA_PAYLOAD];
  if (!prefix.data || !payload.data) return std::nullopt;
  const char* text = reinterpret_cast<const char*>(prefix.data);
  const std::optional<WatchRule> rule = rule_of(std::string_view(text, strnlen(text, prefix.len)));
  if (!rule) return std::nullopt;

  std::optional<MacAddress> link_source;
  if (const Value& hw = attrs.by_type[NFULA_HWADDR]; hw.len >= sizeof(nfulnl_msg_packet_hw)) {
    nfulnl_msg_packet_hw address;
    std::memcpy(&address, hw.data, sizeof(address));
    if (ntohs(address.hw_addrlen) == 6) link_source = mac_at(address.hw_addr);
  }
  const uint8_t* bytes = payload.data;
  size_t length = payload.len;
  // On the arp output hook the frame already carries its link-layer header
  // (arp_create() built it before NF_ARP_OUT), and the payload starts there;
  // on input it starts at the ARP header. Only Ethernet is read.
  if (nfg.nfgen_family == NFPROTO_ARP && hook_of(attrs.by_type[NFULA_PACKET_HDR]) == kArpOutputHook) {
    if (length < kEthernetHeader || be16(bytes + 12) != kEthTypeArp) return std::nullopt;
    bytes += kEthernetHeader;
    length -= kEthernetHeader;
  }
  std::optional<WireFrame> frame = decode_wire_payload(nfg.nfgen_family, *rule, bytes, length, link_source);
  if (!frame) return std::nullopt;

  // The interface the rule saw it on: in for claims and asks, out for leaks.
  const std::optional<int> in = ifindex_of(attrs.by_type[NFULA_IFINDEX_INDEV]);
  const std::optional<int> out = ifindex_of(attrs.by_type[NFULA_IFINDEX_OUTDEV]);
  const std::optional<int> seen = *rule == WatchRule::kLeak ? (out ? out : in) : (in ? in : out);
  frame->ifindex = seen.value_or(0);
  return frame;
}

size_t decode_nflog_datagram(const void* data, size_t len, std::vector<WireFrame>& out) {
  size_t skipped = 0;
  const auto* base = static_cast<const uint8_t*>(data);
  for (size_t at = 0; len - at >= sizeof(nlmsghdr);) {
    const auto* nlh = reinterpret_cast<const nlmsghdr*>(base + at);
    const uint32_t message_len = nlh->nlmsg_len;
    if (message_len < sizeof(nlmsghdr) || message_len > len - at) break;
    if (is_log_packet(nlh)) {
      if (std::optional<WireFrame> frame = decode_nflog_packet(nlh)) {
        out.push_back(*frame);
      } else {
        ++skipped;
      }
    }
    const size_t next = NLMSG_ALIGN(static_cast<size_t>(message_len));
    if (next >= len - at) break;
    at += next;
  }
  return skipped;
}

NflogSocket::NflogSocket(mnl_socket* sock, uint16_t group) : sock_(sock), group_(group), buffer_(kReceiveChunk) {}

NflogSocket::~NflogSocket() {
  // Closing the socket unbinds the group: the kernel drops the instances of a released port.
  if (sock_) mnl_socket_close(sock_);
}

NflogSocket::NflogSocket(NflogSocket&& other) noexcept
    : sock_(std::exchange(other.sock_, nullptr)),
      group_(other.group_),
      undecodable_(other.undecodable_),
      buffer_(std::move(other.buffer_)) {}

NflogSocket& NflogSocket::operator=(NflogSocket&& other) noexcept {
  if (this != &other) {
    if (sock_) mnl_socket_close(sock_);
    sock_ = std::exchange(other.sock_, nullptr);
    group_ = other.group_;
    undecodable_ = other.undecodable_;
    buffer_ = std::move(other.buffer_);
  }
  return *this;
}

Result<NflogSocket> NflogSocket::open(uint16_t group, int rcvbuf_bytes) {
  const std::string what = fmt::format("nflog group {}", group);
  mnl_socket* sock = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (!sock) return Error{"open netfilter netlink socket for " + what, errno, hint_for(errno, group)};
  NflogSocket nflog(sock, group);
  if (mnl_socket_bind(sock, 0, MNL_SOCKET_AUTOPID) < 0) return Error{"bind netlink socket for " + what, errno};
  const int fd = mnl_socket_get_fd(sock);
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf_bytes, sizeof(rcvbuf_bytes)) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf_bytes, sizeof(rcvbuf_bytes));
  }

  // No NFULNL_CFG_CMD_PF_BIND: nft's `log group` names the nflog logger
  // itself, so nothing depends on the per-family default logger, and
  // unbinding it would change where other rules' plain `log` goes.
  int error = configure(sock, group, 1, [](nlmsghdr* nlh) {
    nfulnl_msg_config_cmd bind{NFULNL_CFG_CMD_BIND};
    mnl_attr_put(nlh, NFULA_CFG_CMD, sizeof(bind), &bind);
  });
  if (error != 0) return Error{"bind " + what, error, hint_for(error, group)};
  error = configure(sock, group, 2, [](nlmsghdr* nlh) {
    nfulnl_msg_config_mode mode{};
    mode.copy_range = htonl(kNflogCopyRange);
    mode.copy_mode = NFULNL_COPY_PACKET;
    mnl_attr_put(nlh, NFULA_CFG_MODE, sizeof(mode), &mode);
    mnl_attr_put_u32(nlh, NFULA_CFG_QTHRESH, htonl(1));  // every frame at once
    mnl_attr_put_u32(nlh, NFULA_CFG_TIMEOUT, htonl(0));
  });
  if (error != 0) return Error{"configure " + what, error, hint_for(error, group)};
  return nflog;
}

int NflogSocket::fd() const { return mnl_socket_get_fd(sock_); }

Status NflogSocket::drain(std::vector<WireFrame>& out, bool& lost, size_t max_frames) {
  const size_t before = out.size();
  while (out.size() - before < max_frames) {
    const ssize_t n = recv(fd(), buffer_.data(), buffer_.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Status();
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {
        lost = true;
        continue;
      }
      return Status::failure(fmt::format("receive from nflog group {}", group_), errno);
    }
    undecodable_ += decode_nflog_datagram(buffer_.data(), static_cast<size_t>(n), out);
  }
  return Status();
}

}  // namespace arpguard
