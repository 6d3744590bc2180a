// NflogSocket against the real kernel: the log rules of captured/rules.nft in
// a real server's namespace, real ARP and NDP traffic from its neighbours.
#include <doctest/doctest.h>
#include <linux/capability.h>
#include <net/if.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "kernel/nflog.h"
#include "kernel/prober.h"
#include "tests/wire/lan.h"

using namespace arpguard;
using namespace arpguard::testing;
using namespace arpguard::wire_test;

namespace {

constexpr uint16_t kGroup = 4247;

std::string show(const WireFrame& frame) {
  const char* rule = frame.rule == WatchRule::kClaim ? "claim" : frame.rule == WatchRule::kAsk ? "ask" : "leak";
  return fmt::format("{} {} if {} vip {} mac {} sender {}{}", rule, to_string(frame.kind), frame.ifindex,
                     frame.vip.str(), frame.mac.str(), frame.sender ? frame.sender->str() : "-",
                     frame.gratuitous ? " gratuitous" : "");
}

bool readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, timeout_ms) == 1;
}

// Waits up to `seconds` for `count` frames; returns what arrived, shown.
std::vector<std::string> frames_within(NflogSocket& nflog, size_t count, double seconds = 2.0) {
  std::vector<WireFrame> frames;
  bool lost = false;
  const double deadline = now_seconds() + seconds;
  while (frames.size() < count && now_seconds() < deadline) {
    if (!readable(nflog.fd(), 50)) continue;
    REQUIRE(nflog.drain(frames, lost, 1000).ok());
  }
  CHECK_FALSE(lost);
  std::vector<std::string> shown;
  for (const WireFrame& frame : frames) shown.push_back(show(frame));
  return shown;
}

NflogSocket open_in(const Netns& ns, int rcvbuf = 1 << 20) {
  InNetns inside(ns);
  auto nflog = NflogSocket::open(kGroup, rcvbuf);
  REQUIRE_MESSAGE(nflog.ok(), nflog.error().message());
  return std::move(*nflog);
}

// Sends `count` ARP requests from the client, as fast as its queue takes them.
void client_asks(const Lan& lan, const char* target, int count) {
  const int eth0 = Lan::eth0_index(lan.client);
  InNetns inside(lan.client);
  auto prober = Prober::open();
  REQUIRE(prober.ok());
  const MacAddress mac = *MacAddress::parse(kClient.mac);
  for (int sent = 0; sent < count;) {
    Status status = prober->ask_arp(eth0, mac, *IpAddress::parse(kClient.ipv4), *IpAddress::parse(target));
    if (status.ok()) {
      ++sent;
    } else {
      REQUIRE(status.error().errno_value == EAGAIN);  // a full queue: a moment, and again
      usleep(1000);
    }
  }
}

uint64_t rx_packets(const Netns& ns) {
  return std::stoull(ns.must("cat /sys/class/net/eth0/statistics/rx_packets"));
}

}  // namespace

TEST_CASE("NflogSocket hands over each ARP claim, ask and leak at once, with who and where") {
  Lan lan;
  lan.load_log_rules();
  NflogSocket nflog = open_in(lan.rs);
  const int eth0 = Lan::eth0_index(lan.rs);

  // A client asks for a VIP nobody holds: one ask, within a fraction of the
  // kernel's default one-second flush (queue threshold 1).
  const double asked = now_seconds();
  lan.client.exec("arping -c 1 -w 0.2 -i eth0 192.0.2.81");
  CHECK(frames_within(nflog, 1) ==
        std::vector<std::string>{fmt::format("ask arp request if {} vip 192.0.2.81 mac 02:00:00:00:00:02 sender 192.0.2.2", eth0)});
  CHECK(now_seconds() - asked < 0.9);

  // Another host holds a VIP, unprotected: the real server's own question is
  // not logged (a packet socket passes the arp hooks by), the answer is a claim.
  lan.other.must("ip addr add 192.0.2.80/32 dev eth0");
  lan.rs.exec("arping -c 1 -w 0.5 -i eth0 192.0.2.80");
  CHECK(frames_within(nflog, 1) ==
        std::vector<std::string>{fmt::format("claim arp reply if {} vip 192.0.2.80 mac 02:00:00:00:00:03 sender -", eth0)});

  // Its gratuitous ARP claims the VIP and asks for it: both rules log it.
  lan.other.exec("arping -U -S 192.0.2.80 -c 1 -w 0.2 -i eth0 192.0.2.80");
  CHECK(frames_within(nflog, 2) ==
        std::vector<std::string>{
            fmt::format("claim arp request if {} vip 192.0.2.80 mac 02:00:00:00:00:03 sender - gratuitous", eth0),
            fmt::format("ask arp request if {} vip 192.0.2.80 mac 02:00:00:00:00:03 sender 192.0.2.80 gratuitous", eth0)});

  // The real server holds one on eth0 with nothing protecting it: its kernel's answer leaks.
  lan.rs.must("ip addr add 192.0.2.82/32 dev eth0");
  lan.client.exec("arping -c 1 -w 0.5 -i eth0 192.0.2.82");
  CHECK(frames_within(nflog, 2) ==
        std::vector<std::string>{
            fmt::format("ask arp request if {} vip 192.0.2.82 mac 02:00:00:00:00:02 sender 192.0.2.2", eth0),
            fmt::format("leak arp reply if {} vip 192.0.2.82 mac 02:00:00:00:00:01 sender -", eth0)});
  CHECK(nflog.undecodable() == 0);
}

TEST_CASE("NflogSocket hands over each NDP claim, ask and leak at once, with who and where") {
  Lan lan;
  lan.load_log_rules();
  NflogSocket nflog = open_in(lan.rs);
  const int eth0 = Lan::eth0_index(lan.rs);

  lan.client.exec("ndisc6 -r 1 -w 200 2001:db8::81 eth0");
  CHECK(frames_within(nflog, 1) ==
        std::vector<std::string>{fmt::format(
            "ask neighbour solicitation if {} vip 2001:db8::81 mac 02:00:00:00:00:02 sender fe80::ff:fe00:2", eth0)});

  lan.other.must("ip -6 addr add 2001:db8::80/128 dev eth0 nodad");
  lan.rs.must("ndisc6 -r 1 -w 500 2001:db8::80 eth0");
  CHECK(frames_within(nflog, 1) ==
        std::vector<std::string>{fmt::format(
            "claim neighbour advertisement if {} vip 2001:db8::80 mac 02:00:00:00:00:03 sender -", eth0)});

  lan.rs.must("ip -6 addr add 2001:db8::82/128 dev eth0 nodad");
  lan.client.must("ndisc6 -r 1 -w 500 2001:db8::82 eth0");
  CHECK(frames_within(nflog, 2) ==
        std::vector<std::string>{
            fmt::format("ask neighbour solicitation if {} vip 2001:db8::82 mac 02:00:00:00:00:02 sender fe80::ff:fe00:2",
                        eth0),
            fmt::format("leak neighbour advertisement if {} vip 2001:db8::82 mac 02:00:00:00:00:01 sender -", eth0)});
}

TEST_CASE("unrelated ARP never wakes the socket") {
  Lan lan;
  lan.load_log_rules();
  NflogSocket nflog = open_in(lan.rs);
  const uint64_t before = rx_packets(lan.rs);

  // 1,000 requests for the real server's own address and a neighbour's pass the log rules by.
  client_asks(lan, kRs.ipv4, 500);
  client_asks(lan, kOther.ipv4, 500);
  CHECK_FALSE(readable(nflog.fd(), 500));
  CHECK(rx_packets(lan.rs) - before >= 1000);

  // One for a VIP wakes it.
  client_asks(lan, "192.0.2.81", 1);
  CHECK(frames_within(nflog, 1).size() == 1);
}

TEST_CASE("an overrun receive buffer is reported as lost, and frames flow again after") {
  Lan lan;
  lan.load_log_rules();
  NflogSocket nflog = open_in(lan.rs, 4096);  // the kernel's minimum: a few messages

  client_asks(lan, "192.0.2.81", 1000);
  std::vector<WireFrame> frames;
  bool lost = false;
  eventually([&] {
    REQUIRE(nflog.drain(frames, lost, 100000).ok());
    return lost;
  }, 2.0);
  CHECK(lost);
  CHECK(frames.size() < 1000);

  REQUIRE(nflog.drain(frames, lost, 100000).ok());
  client_asks(lan, "192.0.2.84", 1);
  const std::vector<std::string> after = frames_within(nflog, 1);
  REQUIRE(after.size() == 1);
  CHECK(after[0].find("vip 192.0.2.84") != std::string::npos);
}

TEST_CASE("drain stops after max_frames and leaves the rest readable") {
  Lan lan;
  lan.load_log_rules();
  NflogSocket nflog = open_in(lan.rs);
  client_asks(lan, "192.0.2.81", 10);
  CHECK(eventually([&] { return readable(nflog.fd(), 0); }));
  usleep(200000);
  std::vector<WireFrame> frames;
  bool lost = false;
  REQUIRE(nflog.drain(frames, lost, 4).ok());
  CHECK(frames.size() == 4);
  CHECK(readable(nflog.fd(), 0));
  REQUIRE(nflog.drain(frames, lost, 100).ok());
  CHECK(frames.size() == 10);
}

TEST_CASE("a group another socket listens on is refused, naming watch.log_group; closing frees it") {
  Netns ns("nflog");
  std::optional<NflogSocket> first = open_in(ns);
  {
    InNetns inside(ns);
    auto second = NflogSocket::open(kGroup, 1 << 16);
    REQUIRE_FALSE(second.ok());
    MESSAGE("a second listener: " << second.error().message());
    CHECK(second.error().message().find("another program listens on nflog group 4247") != std::string::npos);
    CHECK(second.error().message().find("watch.log_group") != std::string::npos);
    // Another group is free.
    CHECK(NflogSocket::open(kGroup + 1, 1 << 16).ok());
  }
  first.reset();
  InNetns inside(ns);
  CHECK(NflogSocket::open(kGroup, 1 << 16).ok());
}

TEST_CASE("without CAP_NET_ADMIN the socket says what it needs") {
  Netns ns("nflog");
  int out[2];
  REQUIRE(pipe(out) == 0);
  const pid_t child = fork();
  if (child == 0) {
    // Root without CAP_NET_ADMIN: everything else kept.
    InNetns inside(ns);
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    syscall(SYS_capget, &header, data);
    data[CAP_NET_ADMIN / 32].effective &= ~(1u << (CAP_NET_ADMIN % 32));
    syscall(SYS_capset, &header, data);
    auto nflog = NflogSocket::open(kGroup, 1 << 16);
    const std::string message = nflog.ok() ? "opened" : nflog.error().message();
    (void)!write(out[1], message.data(), message.size());
    _exit(0);
  }
  close(out[1]);
  char buffer[512];
  const ssize_t n = read(out[0], buffer, sizeof(buffer));
  close(out[0]);
  waitpid(child, nullptr, 0);
  const std::string message(buffer, n > 0 ? static_cast<size_t>(n) : 0);
  CHECK(message == "bind nflog group 4247: Operation not permitted (needs CAP_NET_ADMIN)");
}
