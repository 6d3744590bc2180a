// Prober and AnswerListener against the real kernel: what leaves the real
// server is what a capture in the client's namespace sees, the client's
// kernel answers, and only answers wake the listener.
#include <doctest/doctest.h>
#include <linux/capability.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "kernel/prober.h"
#include "tests/wire/lan.h"

using namespace arpguard;
using namespace arpguard::testing;
using namespace arpguard::wire_test;

namespace {

// tcpdump in a namespace, one line per frame with link-level headers, verbose.
class Capture {
 public:
  Capture(const Netns& ns, const std::string& filter, const TempDir& dir)
      : frames_(dir.path() + "/frames"),
        process_(ns.prefix() + "tcpdump --immediate-mode -i eth0 -e -n -v -l -U " + filter + " > " + frames_,
                 dir.path() + "/tcpdump.log") {
    if (!process_.wait_for_log("listening on", 5)) throw std::runtime_error("tcpdump did not start: " + process_.log());
  }
  /// Stops the capture; the whole text.
  std::string stop() {
    usleep(200000);
    process_.signal(SIGINT);
    process_.wait(5);
    std::ifstream in(frames_);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
  }

 private:
  std::string frames_;
  Process process_;
};

bool readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, timeout_ms) == 1;
}

std::vector<HeardAnswer> hear(AnswerListener& listener, size_t count, double seconds = 2.0) {
  std::vector<HeardAnswer> heard;
  const double deadline = now_seconds() + seconds;
  while (heard.size() < count && now_seconds() < deadline) {
    if (readable(listener.fd(), 50)) REQUIRE(listener.drain(heard, 100).ok());
  }
  return heard;
}

struct Asking {
  Prober prober;
  AnswerListener listener;
};

Asking open_in(const Lan& lan) {
  const int eth0 = Lan::eth0_index(lan.rs);
  InNetns inside(lan.rs);
  auto prober = Prober::open();
  REQUIRE_MESSAGE(prober.ok(), prober.error().message());
  auto listener = AnswerListener::open(eth0, 1 << 20);
  REQUIRE_MESSAGE(listener.ok(), listener.error().message());
  return {std::move(*prober), std::move(*listener)};
}

const MacAddress kRsMac = *MacAddress::parse(kRs.mac);

// Runs `body` in a child process in `ns`, as root without `capability`; returns what it wrote.
template <class Body>
std::string without_capability(const Netns& ns, int capability, Body body) {
  int out[2];
  REQUIRE(pipe(out) == 0);
  const pid_t child = fork();
  if (child == 0) {
    InNetns inside(ns);
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    syscall(SYS_capget, &header, data);
    data[capability / 32].effective &= ~(1u << (capability % 32));
    syscall(SYS_capset, &header, data);
    const std::string message = body();
    (void)!write(out[1], message.data(), message.size());
    _exit(0);
  }
  close(out[1]);
  char buffer[512];
  const ssize_t n = read(out[0], buffer, sizeof(buffer));
  close(out[0]);
  waitpid(child, nullptr, 0);
  return std::string(buffer, n > 0 ? static_cast<size_t>(n) : 0);
}

}  // namespace

TEST_CASE("an ARP who-has from the Prober is broadcast as asked, answered, and heard") {
  Lan lan;
  TempDir dir;
  Asking asking = open_in(lan);
  Capture capture(lan.client, "arp", dir);

  const int eth0 = Lan::eth0_index(lan.rs);
  REQUIRE(asking.prober.ask_arp(eth0, kRsMac, *IpAddress::parse(kRs.ipv4), *IpAddress::parse(kClient.ipv4)).ok());
  const std::vector<HeardAnswer> heard = hear(asking.listener, 1);
  const std::string seen = capture.stop();

  CHECK(seen.find("02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806)") != std::string::npos);
  CHECK(seen.find("Request who-has 192.0.2.2 tell 192.0.2.1, length 28") != std::string::npos);
  CHECK(seen.find("Reply 192.0.2.2 is-at 02:00:00:00:00:02") != std::string::npos);
  REQUIRE(heard.size() == 1);
  CHECK(heard[0].frame.kind == FrameKind::kArpReply);
  CHECK(heard[0].frame.vip.str() == kClient.ipv4);
  CHECK(heard[0].frame.mac.str() == kClient.mac);
  CHECK(heard[0].link_source.str() == kClient.mac);
  CHECK(heard[0].frame.ifindex == eth0);
}

TEST_CASE("a neighbour solicitation from the Prober goes to the solicited-node group with hop limit 255, and is answered") {
  Lan lan;
  TempDir dir;
  Asking asking = open_in(lan);
  Capture capture(lan.client, "icmp6", dir);

  const int eth0 = Lan::eth0_index(lan.rs);
  REQUIRE(asking.prober.ask_ndp(eth0, kRsMac, *IpAddress::parse(kClient.ipv6)).ok());
  const std::vector<HeardAnswer> heard = hear(asking.listener, 1);
  const std::string seen = capture.stop();

  CHECK(seen.find("02:00:00:00:00:01 > 33:33:ff:00:00:02") != std::string::npos);
  CHECK(seen.find("hlim 255") != std::string::npos);
  CHECK(seen.find("fe80::ff:fe00:1 > ff02::1:ff00:2: [icmp6 sum ok] ICMP6, neighbor solicitation, length 32, who has 2001:db8::2") !=
        std::string::npos);
  CHECK(seen.find("source link-address option (1), length 8 (1): 02:00:00:00:00:01") != std::string::npos);
  CHECK(seen.find("neighbor advertisement, length 32, tgt is 2001:db8::2") != std::string::npos);
  REQUIRE(heard.size() == 1);
  CHECK(heard[0].frame.kind == FrameKind::kNeighbourAdvertisement);
  CHECK(heard[0].frame.vip.str() == kClient.ipv6);
  CHECK(heard[0].frame.mac.str() == kClient.mac);
  CHECK_FALSE(heard[0].frame.gratuitous);
}

TEST_CASE("the listener wakes for answers only, never for questions or other traffic") {
  Lan lan;
  Asking asking = open_in(lan);
  // The client's questions, and the real server's own answers to them (outgoing), pass it by.
  lan.client.exec("arping -c 20 -W 0.01 -i eth0 192.0.2.1; ndisc6 -r 3 -w 50 2001:db8::1 eth0; ping -c 3 -i 0.05 192.0.2.1");
  CHECK_FALSE(readable(asking.listener.fd(), 300));

  // A gratuitous ARP reply is an answer, whoever asked.
  lan.other.exec("arping -U -P -S 192.0.2.3 -c 1 -w 0.2 -i eth0 192.0.2.3");
  const std::vector<HeardAnswer> heard = hear(asking.listener, 1);
  REQUIRE(heard.size() == 1);
  CHECK(heard[0].frame.vip.str() == kOther.ipv4);
  CHECK(heard[0].frame.gratuitous);
}

TEST_CASE("sending fails as a value: the wrong family, an interface that does not exist") {
  Lan lan;
  Asking asking = open_in(lan);
  Status v6 = asking.prober.ask_arp(Lan::eth0_index(lan.rs), kRsMac, *IpAddress::parse(kRs.ipv4),
                                    *IpAddress::parse("2001:db8::80"));
  REQUIRE_FALSE(v6.ok());
  CHECK(v6.error().errno_value == EAFNOSUPPORT);

  Status nowhere = asking.prober.ask_arp(999, kRsMac, *IpAddress::parse(kRs.ipv4), *IpAddress::parse("192.0.2.80"));
  REQUIRE_FALSE(nowhere.ok());
  CHECK(nowhere.message() == "ARP who-has 192.0.2.80 tell 192.0.2.1 on ifindex 999: No such device or address (no such interface)");
  Status nowhere6 = asking.prober.ask_ndp(999, kRsMac, *IpAddress::parse("2001:db8::80"));
  REQUIRE_FALSE(nowhere6.ok());
  MESSAGE(nowhere6.message());
}

TEST_CASE("without CAP_NET_RAW the Prober and the listener say what they need") {
  Netns ns("prober");
  CHECK(without_capability(ns, CAP_NET_RAW, [] {
          auto prober = Prober::open();
          return prober.ok() ? std::string("opened") : prober.error().message();
        }) == "open packet socket for ARP probes: Operation not permitted (needs CAP_NET_RAW)");
  CHECK(without_capability(ns, CAP_NET_RAW, [] {
          auto listener = AnswerListener::open(1, 1 << 16);
          return listener.ok() ? std::string("opened") : listener.error().message();
        }) == "listen for answers on ifindex 1: Operation not permitted (needs CAP_NET_RAW)");
}
