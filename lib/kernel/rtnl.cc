#include "kernel/rtnl.h"

#include <fmt/format.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <netlink/errno.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/route.h>
#include <netlink/route/rule.h>
#include <linux/fib_rules.h>
#include <poll.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>

#include "core/overloaded.h"
#include "kernel/netlink_send.h"
#include "kernel/rtnl_decode.h"

namespace arpguard {

namespace {

constexpr size_t kWindow = 256;       // requests in flight before their acks are read
constexpr int kDumpAttempts = 3;      // a dump interrupted by concurrent changes is tried again
constexpr int kSocketBuffer = 4 << 20;

template <class T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using AddrPtr = std::unique_ptr<rtnl_addr, Deleter<rtnl_addr, rtnl_addr_put>>;
using RoutePtr = std::unique_ptr<rtnl_route, Deleter<rtnl_route, rtnl_route_put>>;
using RulePtr = std::unique_ptr<rtnl_rule, Deleter<rtnl_rule, rtnl_rule_put>>;
using NlAddrPtr = std::unique_ptr<nl_addr, Deleter<nl_addr, nl_addr_put>>;
using MsgPtr = std::unique_ptr<nl_msg, Deleter<nl_msg, nlmsg_free>>;

NlAddrPtr nl_address(const IpPrefix& prefix) {
  const auto bytes = prefix.address.bytes();
  NlAddrPtr addr(nl_addr_build(address_family(prefix.family()), bytes.data(), prefix.address.size()));
  nl_addr_set_prefixlen(addr.get(), prefix.length);
  return addr;
}

AddrPtr address_object(const AddressKey& key) {
  AddrPtr addr(rtnl_addr_alloc());
  NlAddrPtr local = nl_address(key.prefix());
  rtnl_addr_set_ifindex(addr.get(), key.link_index);
  rtnl_addr_set_family(addr.get(), address_family(key.address.family));
  rtnl_addr_set_local(addr.get(), local.get());
  rtnl_addr_set_prefixlen(addr.get(), key.length);
  return addr;
}

RoutePtr route_object(const RouteKey& key, int link_index) {
  RoutePtr route(rtnl_route_alloc());
  NlAddrPtr dst = nl_address(key.destination);
  rtnl_route_set_family(route.get(), static_cast<uint8_t>(address_family(key.destination.family())));
  rtnl_route_set_table(route.get(), kTableLocal);
  rtnl_route_set_type(route.get(), kRouteTypeLocal);
  rtnl_route_set_protocol(route.get(), kRouteProtoArpguard);
  rtnl_route_set_scope(route.get(), RT_SCOPE_HOST);
  rtnl_route_set_priority(route.get(), key.priority);
  rtnl_route_set_dst(route.get(), dst.get());
  rtnl_nexthop* hop = rtnl_route_nh_alloc();
  rtnl_route_nh_set_ifindex(hop, link_index);
  rtnl_route_add_nexthop(route.get(), hop);
  return route;
}

RoutePtr policy_route_object(const PolicyRoute& r, bool add) {
  RoutePtr route(rtnl_route_alloc());
  NlAddrPtr dst = nl_address(r.key.destination);
  rtnl_route_set_family(route.get(), AF_INET);
  rtnl_route_set_table(route.get(), r.key.table);
  rtnl_route_set_type(route.get(), RTN_UNICAST);
  rtnl_route_set_dst(route.get(), dst.get());
  // On a delete too: the kernel matches the protocol, and libnl's default
  // (static) would match no route of arpguard's, which the kernel then calls
  // gone (ESRCH) while it stays.
  rtnl_route_set_protocol(route.get(), kRouteProtoArpguard);
  if (add) {
    rtnl_route_set_scope(route.get(), RT_SCOPE_LINK);
    if (r.info.source) {
      NlAddrPtr source = nl_address(IpPrefix::host(*r.info.source));
      rtnl_route_set_pref_src(route.get(), source.get());
    }
  }
  rtnl_nexthop* hop = rtnl_route_nh_alloc();
  rtnl_route_nh_set_ifindex(hop, r.info.link_index);
  rtnl_route_add_nexthop(route.get(), hop);
  return route;
}

RulePtr rule_object(const RoutingRule& r) {
  RulePtr rule(rtnl_rule_alloc());
  NlAddrPtr source = nl_address(r.key.source);
  rtnl_rule_set_family(rule.get(), AF_INET);
  rtnl_rule_set_prio(rule.get(), r.key.priority);
  rtnl_rule_set_src(rule.get(), source.get());
  rtnl_rule_set_table(rule.get(), r.key.table);
  rtnl_rule_set_action(rule.get(), FR_ACT_TO_TBL);
  rtnl_rule_set_protocol(rule.get(), kRouteProtoArpguard);
  return rule;
}

struct Request {
  MsgPtr msg;
  bool add = false;
  bool replace = false;
};

// The request as a failure names it: formatted only when one fails, not for
// each of 100,000 that go in.
std::string request_name(const RtnlChange& change) {
  return std::visit(
      Overloaded{
          [](const DelAddress& a) { return fmt::format("RTM_DELADDR {} dev {}", a.key.prefix().str(), a.device); },
          [](const AddAddress& a) { return fmt::format("RTM_NEWADDR {} dev {}", a.key.prefix().str(), a.device); },
          [](const DelRoute& a) { return fmt::format("RTM_DELROUTE local {} table local", a.key.destination.str()); },
          [](const AddRoute& a) {
            return fmt::format("RTM_NEWROUTE local {} dev {} table local", a.key.destination.str(), a.device);
          },
          [](const RoutingChange& a) {
            return std::visit(Overloaded{
                                  [&](const PolicyRoute& r) {
                                    return fmt::format("{} {} dev {} table {}", a.add ? "RTM_NEWROUTE" : "RTM_DELROUTE",
                                                       r.key.destination.str(), a.device, r.key.table);
                                  },
                                  [&](const RoutingRule& r) {
                                    return fmt::format("{} {}", a.add ? "RTM_NEWRULE" : "RTM_DELRULE", r.key.str());
                                  },
                              },
                              a.object);
          },
      },
      change);
}

Result<Request> build(const RtnlChange& change) {
  Request request;
  nl_msg* raw = nullptr;
  const int err = std::visit(
      Overloaded{
          [&](const DelAddress& a) { return rtnl_addr_build_delete_request(address_object(a.key).get(), 0, &raw); },
          [&](const AddAddress& a) {
            request.add = true;
            request.replace = a.replace;
            AddrPtr addr = address_object(a.key);
            if (a.key.address.family == Family::kV4) rtnl_addr_set_scope(addr.get(), a.scope);
            if (a.deprecated) {
              // Accepted and answered from, never the source of this host's own new connections.
              rtnl_addr_set_flags(addr.get(), IFA_F_NODAD);
              rtnl_addr_set_preferred_lifetime(addr.get(), 0);
              rtnl_addr_set_valid_lifetime(addr.get(), 0xffffffffu);
            }
            return rtnl_addr_build_add_request(addr.get(), NLM_F_CREATE | (a.replace ? NLM_F_REPLACE : NLM_F_EXCL), &raw);
          },
          [&](const DelRoute& a) {
            return rtnl_route_build_del_request(route_object(a.key, a.link_index).get(), 0, &raw);
          },
          [&](const AddRoute& a) {
            request.add = true;
            return rtnl_route_build_add_request(route_object(a.key, a.link_index).get(), NLM_F_CREATE | NLM_F_EXCL, &raw);
          },
          [&](const RoutingChange& a) {
            request.add = a.add;
            return std::visit(
                Overloaded{
                    [&](const PolicyRoute& r) {
                      RoutePtr route = policy_route_object(r, a.add);
                      return a.add ? rtnl_route_build_add_request(route.get(), NLM_F_CREATE | NLM_F_EXCL, &raw)
                                   : rtnl_route_build_del_request(route.get(), 0, &raw);
                    },
                    [&](const RoutingRule& r) {
                      RulePtr rule = rule_object(r);
                      return a.add ? rtnl_rule_build_add_request(rule.get(), NLM_F_CREATE | NLM_F_EXCL, &raw)
                                   : rtnl_rule_build_delete_request(rule.get(), 0, &raw);
                    },
                },
                a.object);
          },
      },
      change);
  if (err < 0) return Error{fmt::format("{}: {}", request_name(change), nl_geterror(err))};
  request.msg.reset(raw);
  return request;
}

// What to do about an error the kernel gave a request, when arpguard can tell.
std::string hint_for(int error, const RtnlChange& change) {
  const bool v6 = std::visit([](const auto& c) {
    if constexpr (requires { c.key.address; }) return c.key.address.family == Family::kV6;
    else if constexpr (requires { c.key.destination; }) return c.key.destination.family() == Family::kV6;
    else return false;
  }, change);
  if (v6 && (error == EAFNOSUPPORT || error == EACCES || error == EOPNOTSUPP)) {
    return "IPv6 is disabled on this host or this device (ipv6.disable, net.ipv6.conf.*.disable_ipv6): enable it "
           "or remove the IPv6 VIPs from the policy";
  }
  if (error == EPERM) return "changing addresses and routes needs CAP_NET_ADMIN";
  if (error == EEXIST && std::holds_alternative<AddRoute>(change)) {
    return "another route holds this destination in table local: ip route show table local";
  }
  if (error == ENODEV) return "the device is gone";
  return {};
}

struct AckCollector {
  std::map<uint32_t, int> results;  ///< sequence number -> errno (0: success)
};

int on_error(sockaddr_nl*, nlmsgerr* err, void* arg) {
  static_cast<AckCollector*>(arg)->results[err->msg.nlmsg_seq] = -err->error;
  return NL_SKIP;
}

using Callback = std::function<void(const nlmsghdr*)>;

int on_valid(nl_msg* msg, void* arg) {
  (*static_cast<Callback*>(arg))(nlmsg_hdr(msg));
  return NL_OK;
}

// A dump fails only on an error for its own request: a late acknowledgement
// of an earlier one on the same socket is not the dump's.
struct DumpErrors {
  uint32_t seq = 0;
};

int on_dump_error(sockaddr_nl*, nlmsgerr* err, void* arg) {
  return err->msg.nlmsg_seq == static_cast<DumpErrors*>(arg)->seq ? NL_STOP : NL_SKIP;
}

// Replies to the request with sequence `*arg` are read; anything else (an ack
// left over from an earlier request) is skipped. libnl's own check instead
// expects sequences in the order it sent them, and acks read here without it.
int only_sequence(nl_msg* msg, void* arg) {
  return nlmsg_hdr(msg)->nlmsg_seq == *static_cast<const uint32_t*>(arg) ? NL_OK : NL_SKIP;
}

}  // namespace

Result<std::unique_ptr<Rtnl>> Rtnl::open() {
  nl_sock* sock = nl_socket_alloc();
  if (!sock) return Error{"nl_socket_alloc", ENOMEM};
  if (int err = nl_connect(sock, NETLINK_ROUTE); err < 0) {
    nl_socket_free(sock);
    return Error{fmt::format("connect rtnetlink: {}", nl_geterror(err))};
  }
  nl_socket_set_buffer_size(sock, kSocketBuffer, kSocketBuffer);
  nlmsg_set_default_size(1024);
  // Pipelined requests are matched to their acks by sequence number here, not by libnl.
  nl_socket_disable_seq_check(sock);
  return std::unique_ptr<Rtnl>(new Rtnl(sock));
}

Rtnl::~Rtnl() { nl_socket_free(sock_); }

uint32_t Rtnl::portid() const { return nl_socket_get_local_port(sock_); }

Status Rtnl::dump(int type, int family, const Callback& on_message, const std::function<void()>& restart) {
  const char* name = type == RTM_GETLINK   ? "RTM_GETLINK"
                     : type == RTM_GETADDR ? "RTM_GETADDR"
                     : type == RTM_GETRULE ? "RTM_GETRULE"
                                           : "RTM_GETROUTE";
  for (int attempt = 1;; ++attempt) {
    std::unique_ptr<nl_cb, void (*)(nl_cb*)> cb(nl_cb_alloc(NL_CB_DEFAULT), nl_cb_put);
    nl_cb_set(cb.get(), NL_CB_VALID, NL_CB_CUSTOM, on_valid, const_cast<Callback*>(&on_message));
    DumpErrors errors;
    nl_cb_err(cb.get(), NL_CB_CUSTOM, on_dump_error, &errors);
    // The request header: the family byte first, padded as each type expects.
    unsigned char header[sizeof(rtmsg)] = {};
    header[0] = static_cast<unsigned char>(family);
    const size_t header_len = type == RTM_GETLINK   ? sizeof(ifinfomsg)
                              : type == RTM_GETADDR ? sizeof(ifaddrmsg)
                              : type == RTM_GETRULE ? sizeof(fib_rule_hdr)
                                                    : sizeof(rtmsg);
    MsgPtr request(nlmsg_alloc_simple(type, NLM_F_DUMP));
    if (!request || nlmsg_append(request.get(), header, header_len, NLMSG_ALIGNTO) < 0) {
      return Status::failure(fmt::format("{} dump: out of memory", name), ENOMEM);
    }
    nl_complete_msg(sock_, request.get());
    errors.seq = nlmsg_hdr(request.get())->nlmsg_seq;
    nl_cb_set(cb.get(), NL_CB_SEQ_CHECK, NL_CB_CUSTOM, only_sequence, &errors.seq);
    if (int err = nl_send(sock_, request.get()); err < 0) {
      return Status::failure(fmt::format("{} dump: {}", name, nl_geterror(err)));
    }
    const int err = nl_recvmsgs(sock_, cb.get());
    if (err == -NLE_DUMP_INTR && attempt < kDumpAttempts) {
      restart();  // changed while dumped: what was read is not a consistent picture
      continue;
    }
    if (err < 0) return Status::failure(fmt::format("{} dump: {}", name, nl_geterror(err)));
    return Status();
  }
}

Result<std::map<int, Link>> Rtnl::links() {
  std::map<int, Link> out;
  Status s = dump(
      RTM_GETLINK, AF_UNSPEC,
      [&](const nlmsghdr* nlh) {
        if (auto link = rtnl::decode_link(nlh)) out[link->index] = std::move(*link);
      },
      [&] { out.clear(); });
  if (!s) return s.error();
  return out;
}

Result<std::map<AddressKey, AddressInfo>> Rtnl::addresses() {
  std::map<AddressKey, AddressInfo> out;
  Status s = dump(
      RTM_GETADDR, AF_UNSPEC,
      [&](const nlmsghdr* nlh) {
        if (auto address = rtnl::decode_address(nlh)) out.insert_or_assign(address->first, address->second);
      },
      [&] { out.clear(); });
  if (!s) return s.error();
  return out;
}

Result<RouteTables> Rtnl::routes() {
  RouteTables out;
  for (int family : {AF_INET, AF_INET6}) {
    RouteTables mine;
    Status s = dump(
        RTM_GETROUTE, family,
        [&](const nlmsghdr* nlh) {
          // The kernel dumps a table in order: each route goes at the end.
          if (auto route = rtnl::decode_local_route(nlh)) {
            mine.local.insert_or_assign(mine.local.end(), route->first, route->second);
          } else if (auto policy = rtnl::decode_policy_route(nlh)) {
            mine.policy.insert_or_assign(mine.policy.end(), policy->first, policy->second);
          }
        },
        [&] { mine = RouteTables{}; });
    if (out.local.empty()) out.local.swap(mine.local); else out.local.merge(mine.local);
    if (out.policy.empty()) out.policy.swap(mine.policy); else out.policy.merge(mine.policy);
    if (!s) return s.error();
  }
  return out;
}

Result<std::map<RoutingRuleKey, RoutingRuleInfo>> Rtnl::rules() {
  std::map<RoutingRuleKey, RoutingRuleInfo> out;
  Status s = dump(
      RTM_GETRULE, AF_INET,
      [&](const nlmsghdr* nlh) {
        if (auto rule = rtnl::decode_rule(nlh)) out.insert_or_assign(rule->first, rule->second);
      },
      [&] { out.clear(); });
  if (!s) return s.error();
  return out;
}

RouteAnswers Rtnl::route_lookups(const std::vector<RouteQuery>& queries) {
  RouteAnswers out;
  for (const RouteQuery& query : queries) {
    if (query.address.family != Family::kV4 || query.asker.family != Family::kV4) continue;
    // RTM_GETROUTE without an input interface: the output lookup arp_filter makes.
    MsgPtr msg(nlmsg_alloc_simple(RTM_GETROUTE, NLM_F_REQUEST));
    rtmsg header{};
    header.rtm_family = AF_INET;
    header.rtm_dst_len = 32;
    header.rtm_src_len = 32;
    if (!msg || nlmsg_append(msg.get(), &header, sizeof(header), NLMSG_ALIGNTO) < 0) continue;
    const uint32_t dst = query.asker.v4_network_order();
    const uint32_t src = query.address.v4_network_order();
    nla_put(msg.get(), RTA_DST, 4, &dst);
    nla_put(msg.get(), RTA_SRC, 4, &src);
    if (nl_send_auto(sock_, msg.get()) < 0) continue;
    std::optional<int> oif;
    Callback on_message = [&](const nlmsghdr* nlh) {
      if (nlh->nlmsg_type != RTM_NEWROUTE || nlh->nlmsg_len < NLMSG_LENGTH(sizeof(rtmsg))) return;
      const auto* rtm = static_cast<const rtmsg*>(NLMSG_DATA(nlh));
      int remaining = static_cast<int>(nlh->nlmsg_len - NLMSG_LENGTH(sizeof(rtmsg)));
      for (const rtattr* attr = RTM_RTA(rtm); RTA_OK(attr, remaining); attr = RTA_NEXT(attr, remaining)) {
        if (attr->rta_type == RTA_OIF && RTA_PAYLOAD(attr) >= 4) oif = *static_cast<const int*>(RTA_DATA(attr));
      }
    };
    std::unique_ptr<nl_cb, void (*)(nl_cb*)> cb(nl_cb_alloc(NL_CB_DEFAULT), nl_cb_put);
    nl_cb_set(cb.get(), NL_CB_VALID, NL_CB_CUSTOM, on_valid, &on_message);
    const uint32_t seq = nlmsg_hdr(msg.get())->nlmsg_seq;
    nl_cb_set(cb.get(), NL_CB_SEQ_CHECK, NL_CB_CUSTOM, only_sequence, const_cast<uint32_t*>(&seq));
    AckCollector acks;
    nl_cb_err(cb.get(), NL_CB_CUSTOM, on_error, &acks);
    // One reply (or an error): read until either came.
    for (int reads = 0; reads < 4 && !oif && acks.results.empty(); ++reads) {
      if (nl_recvmsgs(sock_, cb.get()) < 0) break;
    }
    if (oif) out[query] = *oif;
  }
  return out;
}

namespace {

// Sends a window of requests in one datagram: rtnetlink handles each message
// in turn, inside sendmsg(), and queues one ack per message.
Status send_window(int fd, const std::vector<iovec>& iov) {
  if (send_to_kernel(fd, iov) < 0) return Status::failure("rtnetlink: send requests", errno);
  return Status();
}

// Reads the kernel's answers to a window, many datagrams a call, until the
// last request's ack: requests are taken in order, so by then every failed one
// has had its error. False when the socket overran (answers lost) or when they
// stop coming.
bool read_acks(int fd, const std::map<uint32_t, size_t>& in_flight, uint32_t last, std::map<uint32_t, int>& results) {
  constexpr size_t kBatch = 64;
  constexpr size_t kAckBytes = 1024;  // an error ack echoes its request; truncation keeps the header
  constexpr int kLateAckMs = 1000;    // acks are queued before sendmsg returns; this is a safety net
  static thread_local std::vector<char> buffers(kBatch * kAckBytes);
  std::array<iovec, kBatch> iov;
  std::array<mmsghdr, kBatch> msgs;
  std::array<sockaddr_nl, kBatch> from;
  bool waited = false;
  while (!results.count(last)) {
    for (size_t k = 0; k < kBatch; ++k) {
      iov[k] = {buffers.data() + k * kAckBytes, kAckBytes};
      msgs[k] = {};
      msgs[k].msg_hdr.msg_iov = &iov[k];
      msgs[k].msg_hdr.msg_iovlen = 1;
      msgs[k].msg_hdr.msg_name = &from[k];
      msgs[k].msg_hdr.msg_namelen = sizeof(from[k]);
    }
    const int got = ::recvmmsg(fd, msgs.data(), kBatch, MSG_DONTWAIT, nullptr);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN && !waited) {
        waited = true;
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, kLateAckMs) > 0) continue;
      }
      return false;  // ENOBUFS: acks were dropped; EAGAIN after the wait: they are not coming
    }
    for (int k = 0; k < got; ++k) {
      if (from[k].nl_pid != 0) continue;  // only the kernel answers requests
      size_t left = std::min<size_t>(msgs[k].msg_len, kAckBytes);
      const char* at = buffers.data() + static_cast<size_t>(k) * kAckBytes;
      while (left >= sizeof(nlmsghdr)) {
        nlmsghdr header;
        std::memcpy(&header, at, sizeof(header));
        if (header.nlmsg_len < sizeof(header)) break;
        if (header.nlmsg_type == NLMSG_ERROR && left >= sizeof(header) + sizeof(nlmsgerr)) {
          nlmsgerr err;
          std::memcpy(&err, at + sizeof(header), sizeof(err));
          if (in_flight.count(err.msg.nlmsg_seq)) results.emplace(err.msg.nlmsg_seq, -err.error);
        }
        const size_t step = NLMSG_ALIGN(header.nlmsg_len);
        if (step >= left) break;
        at += step;
        left -= step;
      }
    }
  }
  return true;
}

}  // namespace

std::vector<Status> Rtnl::apply(const std::vector<RtnlChange>& changes) {
  std::vector<Status> statuses(changes.size());
  const int fd = nl_socket_get_fd(sock_);
  for (size_t begin = 0; begin < changes.size(); begin += kWindow) {
    const size_t end = std::min(changes.size(), begin + kWindow);
    std::map<uint32_t, size_t> in_flight;  // sequence -> index
    std::vector<Request> requests(end - begin);
    std::vector<iovec> iov;
    iov.reserve(end - begin);
    for (size_t i = begin; i < end; ++i) {
      auto request = build(changes[i]);
      if (!request) {
        statuses[i] = request.status();
        continue;
      }
      requests[i - begin] = std::move(*request);
      nl_msg* msg = requests[i - begin].msg.get();
      nl_complete_msg(sock_, msg);  // sequence number and NLM_F_ACK
      nlmsghdr* header = nlmsg_hdr(msg);
      in_flight[header->nlmsg_seq] = i;
      iov.push_back({header, NLMSG_ALIGN(header->nlmsg_len)});
    }
    if (in_flight.empty()) continue;
    // Only the window's last request asks for an ack: the kernel answers a
    // failed one all the same, and in order, so the last ack ends the window.
    // 100,000 acks the kernel builds and arpguard reads, saved.
    for (size_t k = 0; k + 1 < iov.size(); ++k) static_cast<nlmsghdr*>(iov[k].iov_base)->nlmsg_flags &= ~NLM_F_ACK;
    const uint32_t last = static_cast<nlmsghdr*>(iov.back().iov_base)->nlmsg_seq;
    if (Status sent = send_window(fd, iov); !sent) {
      for (const auto& [seq, i] : in_flight) statuses[i] = Status::failure(request_name(changes[i]), sent.error().errno_value);
      continue;
    }
    std::map<uint32_t, int> results;
    if (!read_acks(fd, in_flight, last, results)) {
      // Lost (ENOBUFS) or never sent: what the kernel did is unknown.
      for (const auto& [seq, i] : in_flight) {
        if (!results.count(seq)) {
          statuses[i] = Status::failure(fmt::format("{}: no answer from the kernel (its acknowledgements were lost)",
                                                    request_name(changes[i])));
        }
      }
    }
    for (const auto& [seq, i] : in_flight) {
      auto it = results.find(seq);
      if (it == results.end()) continue;  // done without a word, or unknown (above)
      const int error = it->second;
      if (error == 0) continue;
      const Request& request = requests[i - begin];
      // Idempotent by identity: added already, or gone already, is done. Not for
      // a local route: another route with its key (a blackhole, say) holds it.
      if (request.add && !request.replace && error == EEXIST && !std::holds_alternative<AddRoute>(changes[i])) continue;
      if (!request.add && (error == EADDRNOTAVAIL || error == ENOENT || error == ENODEV || error == ESRCH)) continue;
      statuses[i] = Status::failure(request_name(changes[i]), error, hint_for(error, changes[i]));
    }
  }
  return statuses;
}

}  // namespace arpguard
