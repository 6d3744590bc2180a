#include "kernel/rtnl_addresses.h"

#include <fmt/format.h>
#include <linux/if_addr.h>
#include <net/if.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <map>

namespace arpguard {

namespace {

constexpr size_t kWindow = 256;  // requests in flight before their acks are read

struct CacheFree {
  void operator()(nl_cache* cache) const { nl_cache_free(cache); }
};
using CachePtr = std::unique_ptr<nl_cache, CacheFree>;

}  // namespace

struct RtnlAddresses::Request {
  bool add = true;
  int link_index = 0;
  Ipv4Prefix prefix;
  uint8_t scope = kScopeGlobal;
  std::string what;  ///< "RTM_NEWADDR 10.0.0.5/32 dev lo"
};

Result<std::unique_ptr<RtnlAddresses>> RtnlAddresses::open() {
  nl_sock* sock = nl_socket_alloc();
  if (!sock) return Error{"nl_socket_alloc", ENOMEM};
  if (int err = nl_connect(sock, NETLINK_ROUTE); err < 0) {
    nl_socket_free(sock);
    return Error{fmt::format("connect rtnetlink: {}", nl_geterror(err))};
  }
  nl_socket_set_buffer_size(sock, 1 << 20, 1 << 20);
  // Pipelined requests are matched to their acks by sequence number here, not by libnl.
  nl_socket_disable_seq_check(sock);
  return std::unique_ptr<RtnlAddresses>(new RtnlAddresses(sock));
}

RtnlAddresses::~RtnlAddresses() { nl_socket_free(sock_); }

uint32_t RtnlAddresses::portid() const { return nl_socket_get_local_port(sock_); }

Result<std::vector<Link>> RtnlAddresses::links() {
  nl_cache* raw = nullptr;
  if (int err = rtnl_link_alloc_cache(sock_, AF_UNSPEC, &raw); err < 0) {
    return Error{fmt::format("RTM_GETLINK dump: {}", nl_geterror(err))};
  }
  CachePtr cache(raw);
  std::vector<Link> out;
  for (nl_object* obj = nl_cache_get_first(raw); obj; obj = nl_cache_get_next(obj)) {
    auto* link = reinterpret_cast<rtnl_link*>(obj);
    const unsigned flags = rtnl_link_get_flags(link);
    const char* name = rtnl_link_get_name(link);
    out.push_back({rtnl_link_get_ifindex(link), name ? name : "", (flags & IFF_LOOPBACK) != 0,
                   (flags & IFF_NOARP) != 0, (flags & IFF_UP) != 0});
  }
  return out;
}

Result<std::vector<Address>> RtnlAddresses::addresses() {
  nl_cache* raw = nullptr;
  if (int err = rtnl_addr_alloc_cache(sock_, &raw); err < 0) {
    return Error{fmt::format("RTM_GETADDR dump: {}", nl_geterror(err))};
  }
  CachePtr cache(raw);
  std::vector<Address> out;
  for (nl_object* obj = nl_cache_get_first(raw); obj; obj = nl_cache_get_next(obj)) {
    auto* addr = reinterpret_cast<rtnl_addr*>(obj);
    if (rtnl_addr_get_family(addr) != AF_INET) continue;
    nl_addr* local = rtnl_addr_get_local(addr);
    if (!local || nl_addr_get_len(local) != 4) continue;
    uint32_t be = 0;
    std::memcpy(&be, nl_addr_get_binary_addr(local), 4);
    out.push_back({rtnl_addr_get_ifindex(addr),
                   Ipv4Prefix{Ipv4::from_network_order(be), static_cast<uint8_t>(rtnl_addr_get_prefixlen(addr))},
                   (rtnl_addr_get_flags(addr) & IFA_F_SECONDARY) != 0,
                   static_cast<uint8_t>(rtnl_addr_get_scope(addr))});
  }
  return out;
}

namespace {

// Collects acks of one window: sequence number -> errno (0 for success).
struct AckCollector {
  std::map<uint32_t, int> results;
};

int on_error(sockaddr_nl*, nlmsgerr* err, void* arg) {
  static_cast<AckCollector*>(arg)->results[err->msg.nlmsg_seq] = -err->error;
  return NL_SKIP;
}

int on_ack(nl_msg* msg, void* arg) {
  static_cast<AckCollector*>(arg)->results[nlmsg_hdr(msg)->nlmsg_seq] = 0;
  return NL_OK;
}

}  // namespace

Status RtnlAddresses::send_pipelined(const std::vector<Request>& requests) {
  std::unique_ptr<nl_cb, void (*)(nl_cb*)> cb(nl_cb_alloc(NL_CB_CUSTOM), nl_cb_put);
  AckCollector acks;
  nl_cb_err(cb.get(), NL_CB_CUSTOM, on_error, &acks);
  nl_cb_set(cb.get(), NL_CB_ACK, NL_CB_CUSTOM, on_ack, &acks);

  for (size_t begin = 0; begin < requests.size(); begin += kWindow) {
    const size_t end = std::min(requests.size(), begin + kWindow);
    std::map<uint32_t, const Request*> in_flight;
    for (size_t i = begin; i < end; ++i) {
      const Request& request = requests[i];
      std::unique_ptr<rtnl_addr, void (*)(rtnl_addr*)> addr(rtnl_addr_alloc(), rtnl_addr_put);
      const uint32_t be = request.prefix.address.network_order();
      std::unique_ptr<nl_addr, void (*)(nl_addr*)> local(nl_addr_build(AF_INET, &be, 4), nl_addr_put);
      nl_addr_set_prefixlen(local.get(), request.prefix.length);
      rtnl_addr_set_ifindex(addr.get(), request.link_index);
      rtnl_addr_set_family(addr.get(), AF_INET);
      rtnl_addr_set_local(addr.get(), local.get());
      rtnl_addr_set_prefixlen(addr.get(), request.prefix.length);
      if (request.add) rtnl_addr_set_scope(addr.get(), request.scope);
      nl_msg* raw = nullptr;
      const int err = request.add ? rtnl_addr_build_add_request(addr.get(), NLM_F_CREATE | NLM_F_EXCL, &raw)
                                  : rtnl_addr_build_delete_request(addr.get(), 0, &raw);
      if (err < 0) return Status::failure(fmt::format("{}: {}", request.what, nl_geterror(err)));
      std::unique_ptr<nl_msg, void (*)(nl_msg*)> msg(raw, nlmsg_free);
      nl_complete_msg(sock_, msg.get());  // sequence number and NLM_F_ACK
      in_flight[nlmsg_hdr(msg.get())->nlmsg_seq] = &request;
      if (int sent = nl_send(sock_, msg.get()); sent < 0) {
        return Status::failure(fmt::format("{}: send: {}", request.what, nl_geterror(sent)));
      }
    }
    while (acks.results.size() < in_flight.size()) {
      if (int err = nl_recvmsgs(sock_, cb.get()); err < 0) {
        return Status::failure(fmt::format("rtnetlink acks: {}", nl_geterror(err)));
      }
    }
    for (const auto& [seq, error] : acks.results) {
      auto it = in_flight.find(seq);
      if (it == in_flight.end() || error == 0) continue;
      const Request& request = *it->second;
      // Idempotent by identity: added already, or gone already, is done.
      if (request.add && error == EEXIST) continue;
      if (!request.add && (error == EADDRNOTAVAIL || error == ENOENT || error == ENODEV)) continue;
      return Status::failure(request.what, error);
    }
    acks.results.clear();
  }
  return Status();
}

Status RtnlAddresses::add(const std::vector<AddVip>& vips) {
  std::vector<Request> requests;
  requests.reserve(vips.size());
  for (const AddVip& vip : vips) {
    requests.push_back({true, vip.link_index, vip.vip.prefix, vip.scope, "RTM_NEWADDR " + vip.vip.str()});
  }
  return send_pipelined(requests);
}

Status RtnlAddresses::remove(const std::vector<DelVip>& vips) {
  std::vector<Request> requests;
  requests.reserve(vips.size());
  for (const DelVip& vip : vips) {
    requests.push_back({false, vip.link_index, vip.vip.prefix, kScopeGlobal, "RTM_DELADDR " + vip.vip.str()});
  }
  return send_pipelined(requests);
}

}  // namespace arpguard
