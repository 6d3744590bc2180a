#include "kernel/netlink_events.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "core/ipv4.h"
#include "rules/arp_table.h"

namespace arpguard {

namespace {

constexpr size_t kReceiveChunk = 64 * 1024;

struct Attributes {
  const nlattr* by_type[64] = {};
};

int collect_attribute(const nlattr* attr, void* data) {
  const uint16_t type = mnl_attr_get_type(attr);
  if (type < 64) static_cast<Attributes*>(data)->by_type[type] = attr;
  return MNL_CB_OK;
}

std::string string_attr(const nlattr* attr) {
  if (!attr) return "?";
  const char* text = static_cast<const char*>(mnl_attr_get_payload(attr));
  return std::string(text, strnlen(text, mnl_attr_get_payload_len(attr)));
}

std::string decode_address(const nlmsghdr* nlh) {
  const auto* ifa = static_cast<const ifaddrmsg*>(mnl_nlmsg_get_payload(nlh));
  if (ifa->ifa_family != AF_INET) return {};
  Attributes attrs;
  mnl_attr_parse(nlh, sizeof(*ifa), collect_attribute, &attrs);
  const nlattr* local = attrs.by_type[IFA_LOCAL] ? attrs.by_type[IFA_LOCAL] : attrs.by_type[IFA_ADDRESS];
  std::string address = "?";
  if (local && mnl_attr_get_payload_len(local) == 4) {
    address = Ipv4Prefix{Ipv4::from_network_order(mnl_attr_get_u32(local)), ifa->ifa_prefixlen}.str();
  }
  const char* verb = nlh->nlmsg_type == RTM_NEWADDR ? "RTM_NEWADDR" : "RTM_DELADDR";
  const std::string device = attrs.by_type[IFA_LABEL] ? string_attr(attrs.by_type[IFA_LABEL])
                                                       : fmt::format("ifindex {}", ifa->ifa_index);
  return fmt::format("{} {} {}", verb, address, device);
}

std::string decode_link(const nlmsghdr* nlh) {
  const auto* ifi = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(nlh));
  Attributes attrs;
  mnl_attr_parse(nlh, sizeof(*ifi), collect_attribute, &attrs);
  const char* verb = nlh->nlmsg_type == RTM_NEWLINK ? "RTM_NEWLINK" : "RTM_DELLINK";
  return fmt::format("{} {} (index {}{})", verb, string_attr(attrs.by_type[IFLA_IFNAME]), ifi->ifi_index,
                     (ifi->ifi_flags & IFF_UP) ? ", up" : ", down");
}

// The attribute that names the table, per nftables message type.
int table_attribute(uint16_t message) {
  switch (message) {
    case NFT_MSG_NEWTABLE:
    case NFT_MSG_DELTABLE: return NFTA_TABLE_NAME;
    case NFT_MSG_NEWCHAIN:
    case NFT_MSG_DELCHAIN: return NFTA_CHAIN_TABLE;
    case NFT_MSG_NEWRULE:
    case NFT_MSG_DELRULE: return NFTA_RULE_TABLE;
    case NFT_MSG_NEWSET:
    case NFT_MSG_DELSET: return NFTA_SET_TABLE;
    case NFT_MSG_NEWSETELEM:
    case NFT_MSG_DELSETELEM: return NFTA_SET_ELEM_LIST_TABLE;
    default: return -1;
  }
}

const char* nft_message_name(uint16_t message) {
  switch (message) {
    case NFT_MSG_NEWTABLE: return "NFT_MSG_NEWTABLE";
    case NFT_MSG_DELTABLE: return "NFT_MSG_DELTABLE";
    case NFT_MSG_NEWCHAIN: return "NFT_MSG_NEWCHAIN";
    case NFT_MSG_DELCHAIN: return "NFT_MSG_DELCHAIN";
    case NFT_MSG_NEWRULE: return "NFT_MSG_NEWRULE";
    case NFT_MSG_DELRULE: return "NFT_MSG_DELRULE";
    case NFT_MSG_NEWSET: return "NFT_MSG_NEWSET";
    case NFT_MSG_DELSET: return "NFT_MSG_DELSET";
    case NFT_MSG_NEWSETELEM: return "NFT_MSG_NEWSETELEM";
    case NFT_MSG_DELSETELEM: return "NFT_MSG_DELSETELEM";
    default: return "NFT_MSG_?";
  }
}

template <class Decode>
std::vector<KernelEvent> decode_each(const void* data, size_t len, Decode decode) {
  std::vector<KernelEvent> events;
  int remaining = static_cast<int>(len);
  for (auto* nlh = static_cast<const nlmsghdr*>(data); mnl_nlmsg_ok(nlh, remaining);
       nlh = mnl_nlmsg_next(nlh, &remaining)) {
    std::string what = decode(nlh);
    if (!what.empty()) events.push_back({nlh->nlmsg_pid, std::move(what)});
  }
  return events;
}

}  // namespace

std::vector<KernelEvent> decode_rtnetlink(const void* data, size_t len) {
  return decode_each(data, len, [](const nlmsghdr* nlh) -> std::string {
    switch (nlh->nlmsg_type) {
      case RTM_NEWADDR:
      case RTM_DELADDR:
        return nlh->nlmsg_len >= NLMSG_LENGTH(sizeof(ifaddrmsg)) ? decode_address(nlh) : std::string();
      case RTM_NEWLINK:
      case RTM_DELLINK:
        return nlh->nlmsg_len >= NLMSG_LENGTH(sizeof(ifinfomsg)) ? decode_link(nlh) : std::string();
      default: return {};
    }
  });
}

std::vector<KernelEvent> decode_nftables(const void* data, size_t len) {
  return decode_each(data, len, [](const nlmsghdr* nlh) -> std::string {
    if ((nlh->nlmsg_type >> 8) != NFNL_SUBSYS_NFTABLES || nlh->nlmsg_len < NLMSG_LENGTH(sizeof(nfgenmsg))) return {};
    const uint16_t message = nlh->nlmsg_type & 0xff;
    const int table_attr = table_attribute(message);
    const auto* gen = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(nlh));
    if (table_attr < 0 || gen->nfgen_family != NFPROTO_ARP) return {};
    Attributes attrs;
    mnl_attr_parse(nlh, sizeof(*gen), collect_attribute, &attrs);
    const std::string table = string_attr(attrs.by_type[table_attr]);
    if (table != rules::kTable) return {};
    return fmt::format("{} arp {}", nft_message_name(message), table);
  });
}

Result<std::unique_ptr<EventSocket>> EventSocket::open(Kind kind, int receive_buffer) {
  const bool rtnl = kind == Kind::kRtnetlink;
  mnl_socket* sock = mnl_socket_open(rtnl ? NETLINK_ROUTE : NETLINK_NETFILTER);
  const char* what = rtnl ? "rtnetlink event socket" : "nftables event socket";
  if (!sock) return Error{std::string("open ") + what, errno};
  std::unique_ptr<EventSocket> events(new EventSocket(sock, kind));
  const unsigned groups = rtnl ? (RTMGRP_LINK | RTMGRP_IPV4_IFADDR) : 0;
  if (mnl_socket_bind(sock, groups, MNL_SOCKET_AUTOPID) < 0) return Error{std::string("bind ") + what, errno};
  if (!rtnl) {
    int group = NFNLGRP_NFTABLES;
    if (mnl_socket_setsockopt(sock, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) < 0) {
      return Error{std::string("join NFNLGRP_NFTABLES on ") + what, errno};
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

Status EventSocket::drain(std::vector<KernelEvent>& events, bool& overrun) {
  std::vector<char> buffer(kReceiveChunk);
  for (;;) {
    const ssize_t n = recv(fd(), buffer.data(), buffer.size(), 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Status();
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {
        overrun = true;
        continue;
      }
      return Status::failure("receive kernel events", errno);
    }
    std::vector<KernelEvent> decoded = kind_ == Kind::kRtnetlink ? decode_rtnetlink(buffer.data(), n)
                                                                  : decode_nftables(buffer.data(), n);
    for (KernelEvent& event : decoded) events.push_back(std::move(event));
  }
}

}  // namespace arpguard
