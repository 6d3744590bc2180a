// Drift-to-repair latency of a running arpguardd, observed from the kernel's
// own notifications. Links only libmnl: it shares no code with arpguard.
//
//   repair_bench KIND COUNT --vips N [--first A.B.C.D] [--stride S] [--daemon-pid P]
//                [--gap-ms G] [--timeout-ms T] [--raw FILE]
//
//   KIND  addr     `ip addr del VIP/32 dev lo`
//         route    `ip route del local VIP/32 dev lo table local`
//         element  `nft delete element arp arpguard vips { VIP }`
//         table    `nft delete table arp arpguard`
//         count    no injection: prints "ELEMENTS RULES" of table arp arpguard
//
// Run inside the network namespace arpguardd guards. For each of COUNT
// injections it drains its netlink sockets, waits until the daemon is idle
// (its CPU time in /proc/P/schedstat still for 5 ms), runs the injector, and
// then timestamps (CLOCK_MONOTONIC, as each message is received):
//   t0  the kernel's notification of the deletion (RTM_DELADDR, RTM_DELROUTE,
//       NFT_MSG_DELSETELEM with the VIP, NFT_MSG_DELTABLE arpguard);
//   t1  the state restored: RTM_NEWADDR / RTM_NEWROUTE of the VIP; for nft, the
//       NFT_MSG_NEWGEN that ends the transaction re-adding the element, or, for
//       the table, the one after which the table, every element and every rule
//       the table held before (counted by a dump at start) have been re-added.
// The VIPs are N addresses from --first (default 10.64.0.1) in steps of
// --stride (default 2); injection i deletes VIP (i * 7919) mod N.
//
// Prints one line: KIND COUNT P50 P99 MAX MEAN FIRST_P50 FIRST_P99 (ms), where
// FIRST is t0 to the first message of the repair (detection and planning).
#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

extern char** environ;

namespace {

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "repair_bench: %s\n", message.c_str());
  std::exit(1);
}

double now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

std::string ip_str(uint32_t host_order) {
  in_addr a{htonl(host_order)};
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a, buf, sizeof(buf));
  return buf;
}

// ---- netlink sockets ----

mnl_socket* open_socket(int bus, unsigned groups) {
  mnl_socket* nl = mnl_socket_open(bus);
  if (!nl) die(std::string("mnl_socket_open: ") + std::strerror(errno));
  if (mnl_socket_bind(nl, groups, MNL_SOCKET_AUTOPID) < 0) die(std::string("bind: ") + std::strerror(errno));
  int size = 256 << 20;  // 100,000 elements re-added at once must not overrun it
  if (setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0) {
    setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
  }
  return nl;
}

mnl_socket* open_nft_events() {
  mnl_socket* nl = open_socket(NETLINK_NETFILTER, 0);
  int group = NFNLGRP_NFTABLES;
  if (mnl_socket_setsockopt(nl, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) < 0) {
    die(std::string("NFNLGRP_NFTABLES: ") + std::strerror(errno));
  }
  return nl;
}

// ---- decoding ----

struct Attrs {
  const nlattr* tb[64] = {};
};

int collect(const nlattr* attr, void* data) {
  auto* attrs = static_cast<Attrs*>(data);
  const uint16_t type = mnl_attr_get_type(attr);
  if (type < 64) attrs->tb[type] = attr;
  return MNL_CB_OK;
}

std::string attr_string(const nlattr* attr) {
  if (!attr) return {};
  const char* s = static_cast<const char*>(mnl_attr_get_payload(attr));
  return std::string(s, strnlen(s, mnl_attr_get_payload_len(attr)));
}

/// Start keys (not interval ends) of the elements in an NFT_MSG_*SETELEM of arp arpguard @vips.
struct ElementBatch {
  bool ours = false;
  std::vector<uint32_t> starts;
};

ElementBatch decode_elements(const nlmsghdr* nlh) {
  ElementBatch out;
  Attrs attrs;
  mnl_attr_parse(nlh, sizeof(nfgenmsg), collect, &attrs);
  const auto* nfg = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(nlh));
  if (nfg->nfgen_family != NFPROTO_ARP || attr_string(attrs.tb[NFTA_SET_ELEM_LIST_TABLE]) != "arpguard" ||
      attr_string(attrs.tb[NFTA_SET_ELEM_LIST_SET]) != "vips" || !attrs.tb[NFTA_SET_ELEM_LIST_ELEMENTS]) {
    return out;
  }
  out.ours = true;
  std::vector<const nlattr*> elements;
  mnl_attr_parse_nested(
      attrs.tb[NFTA_SET_ELEM_LIST_ELEMENTS],
      [](const nlattr* attr, void* data) {
        static_cast<std::vector<const nlattr*>*>(data)->push_back(attr);
        return MNL_CB_OK;
      },
      &elements);
  for (const nlattr* element : elements) {
    Attrs e;
    mnl_attr_parse_nested(element, collect, &e);
    uint32_t flags = e.tb[NFTA_SET_ELEM_FLAGS] ? ntohl(mnl_attr_get_u32(e.tb[NFTA_SET_ELEM_FLAGS])) : 0;
    if (flags & NFT_SET_ELEM_INTERVAL_END) continue;
    if (!e.tb[NFTA_SET_ELEM_KEY]) continue;
    Attrs key;
    mnl_attr_parse_nested(e.tb[NFTA_SET_ELEM_KEY], collect, &key);
    if (!key.tb[NFTA_DATA_VALUE] || mnl_attr_get_payload_len(key.tb[NFTA_DATA_VALUE]) != 4) continue;
    uint32_t value;
    std::memcpy(&value, mnl_attr_get_payload(key.tb[NFTA_DATA_VALUE]), 4);
    out.starts.push_back(ntohl(value));
  }
  return out;
}

bool is_arpguard_table(const nlmsghdr* nlh, int name_attr) {
  const auto* nfg = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(nlh));
  if (nfg->nfgen_family != NFPROTO_ARP) return false;
  Attrs attrs;
  mnl_attr_parse(nlh, sizeof(nfgenmsg), collect, &attrs);
  return attr_string(attrs.tb[name_attr]) == "arpguard";
}

int nft_type(const nlmsghdr* nlh) {
  if ((nlh->nlmsg_type >> 8) != NFNL_SUBSYS_NFTABLES) return -1;
  return nlh->nlmsg_type & 0xff;
}

/// IPv4 address of an RTM_*ADDR, or 0.
uint32_t addr_of(const nlmsghdr* nlh) {
  const auto* ifa = static_cast<const ifaddrmsg*>(mnl_nlmsg_get_payload(nlh));
  if (ifa->ifa_family != AF_INET) return 0;
  Attrs attrs;
  mnl_attr_parse(nlh, sizeof(ifaddrmsg), collect, &attrs);
  const nlattr* a = attrs.tb[IFA_LOCAL] ? attrs.tb[IFA_LOCAL] : attrs.tb[IFA_ADDRESS];
  return a ? ntohl(mnl_attr_get_u32(a)) : 0;
}

/// Destination of an RTM_*ROUTE of a /32 local route in table local, or 0.
uint32_t local_route_of(const nlmsghdr* nlh) {
  const auto* rtm = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(nlh));
  if (rtm->rtm_family != AF_INET || rtm->rtm_type != RTN_LOCAL || rtm->rtm_dst_len != 32) return 0;
  Attrs attrs;
  mnl_attr_parse(nlh, sizeof(rtmsg), collect, &attrs);
  const uint32_t table = attrs.tb[RTA_TABLE] ? mnl_attr_get_u32(attrs.tb[RTA_TABLE]) : rtm->rtm_table;
  if (table != RT_TABLE_LOCAL || !attrs.tb[RTA_DST]) return 0;
  return ntohl(mnl_attr_get_u32(attrs.tb[RTA_DST]));
}

// ---- dumps (the table's size before any injection) ----

template <class F>
bool dump(mnl_socket* nl, uint16_t type, const std::vector<std::pair<uint16_t, std::string>>& strings, F on_message) {
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE * 64);
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
  nlh->nlmsg_type = static_cast<uint16_t>((NFNL_SUBSYS_NFTABLES << 8) | type);
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  nlh->nlmsg_seq = static_cast<uint32_t>(time(nullptr));
  auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
  nfg->nfgen_family = NFPROTO_ARP;
  nfg->version = NFNETLINK_V0;
  for (const auto& [attr, value] : strings) mnl_attr_put_strz(nlh, attr, value.c_str());
  if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) die(std::string("dump: ") + std::strerror(errno));
  struct Ctx {
    F* f;
  } ctx{&on_message};
  auto cb = [](const nlmsghdr* m, void* data) -> int {
    (*static_cast<Ctx*>(data)->f)(m);
    return MNL_CB_OK;
  };
  for (;;) {
    const ssize_t n = mnl_socket_recvfrom(nl, buf.data(), buf.size());
    if (n < 0) die(std::string("dump recv: ") + std::strerror(errno));
    const int ret = mnl_cb_run(buf.data(), static_cast<size_t>(n), 0, 0, cb, &ctx);
    if (ret < 0 && errno == ENOENT) return false;  // no such table or set
    if (ret < 0) die(std::string("dump: ") + std::strerror(errno));
    if (ret == MNL_CB_STOP) return true;
  }
}

struct TableSize {
  size_t elements = 0;
  size_t rules = 0;
};

TableSize table_size() {
  mnl_socket* nl = open_socket(NETLINK_NETFILTER, 0);
  TableSize size;
  const bool exists =
      dump(nl, NFT_MSG_GETSETELEM, {{NFTA_SET_ELEM_LIST_TABLE, "arpguard"}, {NFTA_SET_ELEM_LIST_SET, "vips"}},
           [&](const nlmsghdr* m) { size.elements += decode_elements(m).starts.size(); });
  if (exists) dump(nl, NFT_MSG_GETRULE, {{NFTA_RULE_TABLE, "arpguard"}}, [&](const nlmsghdr* m) {
    if (nft_type(m) == NFT_MSG_NEWRULE) ++size.rules;
  });
  mnl_socket_close(nl);
  return size;
}

// ---- the daemon's idleness ----

long long cpu_ns(int pid) {
  if (pid <= 0) return 0;
  std::ifstream in("/proc/" + std::to_string(pid) + "/schedstat");
  long long ns = 0;
  if (!(in >> ns)) die("daemon pid " + std::to_string(pid) + " is gone");
  return ns;
}

// ---- one injection ----

enum class Kind { kAddr, kRoute, kElement, kTable };

struct Sample {
  double total = 0;  // t0 -> restored
  double first = 0;  // t0 -> first message of the repair
};

class Bench {
 public:
  Bench(Kind kind, int timeout_ms) : kind_(kind), timeout_ms_(timeout_ms) {
    if (kind == Kind::kAddr) {
      sock_ = open_socket(NETLINK_ROUTE, RTMGRP_IPV4_IFADDR);
    } else if (kind == Kind::kRoute) {
      sock_ = open_socket(NETLINK_ROUTE, RTMGRP_IPV4_ROUTE);
    } else {
      sock_ = open_nft_events();
    }
    buf_.resize(1 << 20);
  }

  void drain() {
    for (;;) {
      const ssize_t n = recv(mnl_socket_get_fd(sock_), buf_.data(), buf_.size(), MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n < 0 && errno == ENOBUFS) continue;  // between injections: nothing to measure was lost
      if (n <= 0) die(std::string("recv: ") + std::strerror(errno));
    }
  }

  Sample run(uint32_t vip, const std::vector<std::string>& injector, const TableSize& expect) {
    vip_ = vip;
    expect_ = expect;
    t0_ = t_first_ = t1_ = -1;
    pending_gen_ = false;
    deletion_done_ = false;
    elements_ = rules_ = 0;
    table_seen_ = false;

    pid_t child = 0;
    std::vector<char*> argv;
    for (const std::string& a : injector) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    if (posix_spawnp(&child, argv[0], nullptr, nullptr, argv.data(), environ) != 0) die("cannot run " + injector[0]);
    const double deadline = now_ms() + timeout_ms_;
    while (t1_ < 0) {
      const double left = deadline - now_ms();
      if (left <= 0) {
        die("not restored within " + std::to_string(timeout_ms_) + " ms (" + (t0_ < 0 ? "deletion not seen" : "deletion seen") +
            ") after: " + join(injector));
      }
      pollfd p{mnl_socket_get_fd(sock_), POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left) + 1) <= 0) continue;
      const ssize_t n = recv(p.fd, buf_.data(), buf_.size(), MSG_DONTWAIT);
      const double at = now_ms();
      if (n < 0 && errno == ENOBUFS) die("notifications lost (ENOBUFS): the measurement is void");
      if (n < 0) continue;
      on_batch(n, at);
    }
    int status = 0;
    waitpid(child, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("injector failed: " + join(injector));
    return {t1_ - t0_, t_first_ - t0_};
  }

 private:
  static std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& a : v) s += (s.empty() ? "" : " ") + a;
    return s;
  }

  void on_batch(ssize_t received, double at) {
    int n = static_cast<int>(received);
    for (const nlmsghdr* nlh = reinterpret_cast<const nlmsghdr*>(buf_.data()); mnl_nlmsg_ok(nlh, n);
         nlh = mnl_nlmsg_next(nlh, &n)) {
      on_message(nlh, at);
      if (t1_ >= 0) return;
    }
  }

  void first(double at) {
    if (t_first_ < 0) t_first_ = at;
  }

  void on_message(const nlmsghdr* nlh, double at) {
    switch (kind_) {
      case Kind::kAddr:
        if (addr_of(nlh) != vip_) return;
        if (nlh->nlmsg_type == RTM_DELADDR && t0_ < 0) t0_ = at;
        if (nlh->nlmsg_type == RTM_NEWADDR && t0_ >= 0) first(at), t1_ = at;
        return;
      case Kind::kRoute:
        if (local_route_of(nlh) != vip_) return;
        if (nlh->nlmsg_type == RTM_DELROUTE && t0_ < 0) t0_ = at;
        if (nlh->nlmsg_type == RTM_NEWROUTE && t0_ >= 0) first(at), t1_ = at;
        return;
      case Kind::kElement: {
        const int type = nft_type(nlh);
        if (type == NFT_MSG_NEWGEN) {
          if (pending_gen_) t1_ = at;
          if (t0_ >= 0) deletion_done_ = true;  // the end of the injector's own transaction
          return;
        }
        if (type != NFT_MSG_DELSETELEM && type != NFT_MSG_NEWSETELEM) return;
        const ElementBatch batch = decode_elements(nlh);
        if (!batch.ours) return;
        if (deletion_done_) first(at);  // anything the daemon does to the set after the deletion
        if (std::find(batch.starts.begin(), batch.starts.end(), vip_) == batch.starts.end()) return;
        if (type == NFT_MSG_DELSETELEM && t0_ < 0) t0_ = at;
        if (type == NFT_MSG_NEWSETELEM && t0_ >= 0) pending_gen_ = true;
        return;
      }
      case Kind::kTable: {
        const int type = nft_type(nlh);
        if (type == NFT_MSG_DELTABLE && t0_ < 0 && is_arpguard_table(nlh, NFTA_TABLE_NAME)) t0_ = at;
        if (t0_ < 0) return;
        if (type == NFT_MSG_NEWTABLE && is_arpguard_table(nlh, NFTA_TABLE_NAME)) {
          table_seen_ = true;
          first(at);
        } else if (type == NFT_MSG_NEWSETELEM) {
          elements_ += decode_elements(nlh).starts.size();
        } else if (type == NFT_MSG_NEWRULE && is_arpguard_table(nlh, NFTA_RULE_TABLE)) {
          ++rules_;
        } else if (type == NFT_MSG_NEWGEN && table_seen_ && elements_ >= expect_.elements && rules_ >= expect_.rules) {
          t1_ = at;
        }
        return;
      }
    }
  }

  Kind kind_;
  int timeout_ms_;
  mnl_socket* sock_ = nullptr;
  std::vector<char> buf_;
  uint32_t vip_ = 0;
  TableSize expect_;
  double t0_ = -1, t_first_ = -1, t1_ = -1;
  bool pending_gen_ = false;
  bool deletion_done_ = false;
  bool table_seen_ = false;
  size_t elements_ = 0, rules_ = 0;
};

double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  // Nearest rank: the smallest value with at least q of the samples at or below it.
  size_t rank = static_cast<size_t>(std::max(1.0, std::ceil(q * static_cast<double>(v.size()))));
  return v[std::min(v.size(), rank) - 1];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) die("usage: repair_bench addr|route|element|table COUNT --vips N [--first A.B.C.D] [--stride S] "
                    "[--daemon-pid P] [--gap-ms G] [--timeout-ms T] [--raw FILE]");
  const std::string kind_name = argv[1];
  if (kind_name == "count") {
    const TableSize size = table_size();
    std::printf("%zu %zu\n", size.elements, size.rules);
    return 0;
  }
  const int count = std::atoi(argv[2]);
  int vips = 0, stride = 2, daemon = 0, gap_ms = 10, timeout_ms = 30000;
  std::string first = "10.64.0.1", raw;
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string opt = argv[i];
    const char* val = argv[i + 1];
    if (opt == "--vips") vips = std::atoi(val);
    else if (opt == "--first") first = val;
    else if (opt == "--stride") stride = std::atoi(val);
    else if (opt == "--daemon-pid") daemon = std::atoi(val);
    else if (opt == "--gap-ms") gap_ms = std::atoi(val);
    else if (opt == "--timeout-ms") timeout_ms = std::atoi(val);
    else if (opt == "--raw") raw = val;
    else die("unknown option " + opt);
  }
  Kind kind;
  if (kind_name == "addr") kind = Kind::kAddr;
  else if (kind_name == "route") kind = Kind::kRoute;
  else if (kind_name == "element") kind = Kind::kElement;
  else if (kind_name == "table") kind = Kind::kTable;
  else die("unknown kind " + kind_name);
  if (count <= 0 || vips <= 0) die("COUNT and --vips must be positive");
  in_addr base{};
  if (inet_pton(AF_INET, first.c_str(), &base) != 1) die("bad --first " + first);

  TableSize expect;
  if (kind == Kind::kTable) {
    expect = table_size();
    if (expect.elements == 0 || expect.rules == 0) die("table arp arpguard has no elements or no rules");
  }
  Bench bench(kind, timeout_ms);
  std::srand(12345);
  std::vector<Sample> samples;
  for (int i = 0; i < count; ++i) {
    const uint32_t vip = ntohl(base.s_addr) + static_cast<uint32_t>(stride) * static_cast<uint32_t>((static_cast<long long>(i) * 7919) % vips);
    const std::string v = ip_str(vip);
    std::vector<std::string> injector;
    switch (kind) {
      case Kind::kAddr: injector = {"ip", "addr", "del", v + "/32", "dev", "lo"}; break;
      case Kind::kRoute: injector = {"ip", "route", "del", "local", v + "/32", "dev", "lo", "table", "local"}; break;
      case Kind::kElement: injector = {"nft", "delete", "element", "arp", "arpguard", "vips", "{", v, "}"}; break;
      case Kind::kTable: injector = {"nft", "delete", "table", "arp", "arpguard"}; break;
    }
    // The daemon idle, and no notification of the previous round left unread.
    for (long long before = cpu_ns(daemon);;) {
      usleep(5000);
      const long long after = cpu_ns(daemon);
      if (after == before) break;
      before = after;
    }
    usleep(static_cast<useconds_t>(gap_ms * 1000 + std::rand() % 5000));
    bench.drain();
    samples.push_back(bench.run(vip, injector, expect));
  }
  std::vector<double> total, firsts;
  for (const Sample& s : samples) total.push_back(s.total), firsts.push_back(s.first);
  if (!raw.empty()) {
    std::ofstream out(raw);
    for (const Sample& s : samples) out << s.total << ' ' << s.first << '\n';
  }
  double mean = 0;
  for (double t : total) mean += t / static_cast<double>(total.size());
  std::printf("%s %zu %.2f %.2f %.2f %.2f %.2f %.2f\n", kind_name.c_str(), total.size(), quantile(total, 0.5),
              quantile(total, 0.99), *std::max_element(total.begin(), total.end()), mean, quantile(firsts, 0.5),
              quantile(firsts, 0.99));
  return 0;
}
