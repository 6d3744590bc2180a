// Drift: arpguardd notices what others change and restores the policy, and the
// client never sees the VIP answered or announced by the real server meanwhile.
#include <doctest/doctest.h>
#include <signal.h>

#include "guarded.h"
#include "tests/unit/printing.h"

using namespace arpguard::testing;

namespace {

const char* const kVip = "192.0.2.10";

// A guarded real server whose daemon is running, watched from the client: the
// client keeps asking for the VIP and a capture records every ARP frame.
struct Watched : Guarded {
  explicit Watched(const std::string& arp = "", const std::string& agent = "own_nft_table = false\n")
      : policy(write_policy(arp + "[[vip]]\naddress = \"192.0.2.10\"\n", "sysctl_poll_ms = 100\n" + agent)),
        daemon(segment.rs.prefix() + arpguardd_bin() + " --policy " + policy, dir.path() + "/arpguardd.log") {
    REQUIRE(daemon.wait_for_log("ready:", 5));
    capture = std::make_unique<ArpCapture>(segment.client, "eth0", dir.path() + "/capture.log");
    asking = std::make_unique<Process>(
        segment.client.prefix() + "sh -c 'while :; do arping -q -c 1 -W 0.02 -w 0.05 -i eth0 192.0.2.10; done'",
        dir.path() + "/asking.log");
  }

  /// The default policy's full state: VIP on lo, sysctls on all, table with element and both rules.
  bool guarded() const {
    return has_address("lo", "192.0.2.10/32") && sysctl("all/arp_ignore") == 1 && sysctl("all/arp_announce") == 2 &&
           table_exists() && set_elements() == std::vector<std::string>{kVip} && rule_count() == 2;
  }

  /// Stops watching; the client must have asked, and never been answered for the VIP.
  void expect_no_leak() {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    asking->signal(SIGKILL);
    const std::vector<std::string> frames = capture->stop();
    CHECK(any_line_contains(frames, "who-has 192.0.2.10 tell 192.0.2.2"));
    for (const std::string& frame : frames) {
      CAPTURE(frame);
      CHECK(frame.find("192.0.2.10 is-at") == std::string::npos);
      CHECK(frame.find("tell 192.0.2.10") == std::string::npos);
    }
  }

  std::string policy;
  Process daemon;
  std::unique_ptr<ArpCapture> capture;
  std::unique_ptr<Process> asking;
};

}  // namespace

TEST_CASE("a VIP deleted by hand is restored") {
  Watched w;
  w.segment.rs.must("ip addr del 192.0.2.10/32 dev lo");
  CHECK(eventually([&] { return w.guarded(); }));
  CHECK(w.daemon.wait_for_log("repair after RTM_DELADDR 192.0.2.10/32 dev lo: add vip 192.0.2.10/32 dev lo", 2));
  w.expect_no_leak();
}

TEST_CASE("ip addr flush dev lo: the VIP is restored, 127.0.0.1 is not arpguard's") {
  Watched w;
  w.segment.rs.must("ip addr flush dev lo");
  CHECK(eventually([&] { return w.guarded(); }));
  CHECK_FALSE(w.has_address("lo", "127.0.0.1/8"));
  w.expect_no_leak();
}

TEST_CASE("lo down then up: the VIP and its protection are intact") {
  Watched w;
  w.segment.rs.must("ip link set lo down && sleep 0.1 && ip link set lo up");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(eventually([&] { return w.guarded(); }));
  w.expect_no_leak();
}

TEST_CASE("nft flush ruleset: the unowned table is rebuilt") {
  Watched w;
  w.segment.rs.must("nft flush ruleset");
  CHECK(eventually([&] { return w.guarded(); }));
  CHECK(w.daemon.wait_for_log("repair after NFT_MSG_", 2));
  w.expect_no_leak();
}

TEST_CASE("deleting the unowned arpguard table: it is rebuilt") {
  Watched w;
  w.segment.rs.must("nft delete table arp arpguard");
  CHECK(eventually([&] { return w.guarded(); }));
  w.expect_no_leak();
}

TEST_CASE("deleting one set element and one rule: both come back") {
  Watched w;
  w.segment.rs.must("nft delete element arp arpguard vips '{ 192.0.2.10 }'");
  CHECK(eventually([&] { return w.guarded(); }));
  CHECK(w.daemon.wait_for_log("nft add 1 element(s) to arp arpguard @vips: 192.0.2.10", 2));
  const std::string handle = w.segment.rs.must(
      "nft -a list chain arp arpguard input | sed -n 's/.*drop # handle \\([0-9]*\\)/\\1/p'");
  REQUIRE_FALSE(handle.empty());
  w.segment.rs.must("nft delete rule arp arpguard input handle " + handle);
  CHECK(eventually([&] { return w.guarded(); }));
  CHECK(w.daemon.wait_for_log("nft add rule arp arpguard input", 2));
  w.expect_no_leak();
}

TEST_CASE("the owned table refuses others' changes") {
  Watched w("", "");
  const std::string flags = w.table_json()["nftables"][1]["table"].value("flags", nlohmann::json::array()).dump();
  if (flags.find("owner") == std::string::npos) {
    MESSAGE("kernel without NFT_TABLE_F_PERSIST: no ownership to check");
    return;
  }
  CHECK(w.segment.rs.exec("nft delete element arp arpguard vips '{ 192.0.2.10 }'").exit_code != 0);
  CHECK(w.segment.rs.exec("nft flush chain arp arpguard input").exit_code != 0);
  CHECK(w.guarded());
  w.expect_no_leak();
}

TEST_CASE("sysctls reset to 0 on all are restored within the poll interval") {
  Watched w;
  w.segment.rs.must("sysctl -qw net.ipv4.conf.all.arp_ignore=0 net.ipv4.conf.all.arp_announce=0");
  CHECK(eventually([&] { return w.guarded(); }, 2));
  CHECK(w.daemon.wait_for_log("repair after sysctl net.ipv4.conf.all.arp_ignore is 0, want 1", 2));
  w.expect_no_leak();
}

TEST_CASE("sysctls reset to 0 on a named interface are restored") {
  Watched w("[arp]\ninterfaces = [\"eth0\"]\n");
  REQUIRE(w.sysctl("eth0/arp_ignore") == 1);
  w.segment.rs.must("sysctl -qw net.ipv4.conf.eth0.arp_ignore=0 net.ipv4.conf.eth0.arp_announce=0");
  CHECK(eventually([&] { return w.sysctl("eth0/arp_ignore") == 1 && w.sysctl("eth0/arp_announce") == 2; }, 2));
  w.expect_no_leak();
}

TEST_CASE("an interface's reserved arp_ignore, which would win over conf/all, is corrected") {
  Watched w;
  w.segment.rs.must("sysctl -qw net.ipv4.conf.eth0.arp_ignore=4");
  CHECK(eventually([&] { return w.sysctl("eth0/arp_ignore") == 1; }, 2));
  CHECK(w.daemon.wait_for_log("arp_ignore on eth0 is effectively 4", 2));
  w.expect_no_leak();
}

TEST_CASE("a new interface matching a glob gets its keys and its own output rule; gone, it loses them") {
  Watched w("[arp]\ninterfaces = [\"eth*\"]\n");
  w.segment.rs.must("ip link add eth7 type veth peer name peer7");
  CHECK(eventually([&] {
    return w.sysctl("eth7/arp_ignore") == 1 && w.sysctl("eth7/arp_announce") == 2 &&
           w.segment.rs.exec("nft list chain arp arpguard output").out.find("oifname \"eth7\"") != std::string::npos;
  }));
  CHECK(w.sysctl("peer7/arp_ignore") == 0);  // does not match eth*
  w.segment.rs.must("ip link set eth7 name eth8");
  CHECK(eventually([&] {
    const std::string chain = w.segment.rs.exec("nft list chain arp arpguard output").out;
    return chain.find("\"eth8\"") != std::string::npos && chain.find("\"eth7\"") == std::string::npos;
  }));
  w.segment.rs.must("ip link del eth8");
  CHECK(eventually([&] {
    return w.segment.rs.exec("nft list chain arp arpguard output").out.find("eth8") == std::string::npos;
  }));
  w.expect_no_leak();
}

TEST_CASE("a changed primary address: the mangle rule follows") {
  Watched w;
  // Deleting a primary takes its secondaries with it (promote_secondaries=0): delete first.
  w.segment.rs.must("ip addr del 192.0.2.1/24 dev eth0 && ip addr add 192.0.2.3/24 dev eth0");
  CHECK(eventually([&] {
    return w.segment.rs.exec("nft list chain arp arpguard output").out.find("arp saddr ip set 192.0.2.3") !=
           std::string::npos;
  }));
  CHECK(w.guarded());
  w.expect_no_leak();
}

TEST_CASE("a VIP added by hand to the ARP-facing interface is removed there, loudly") {
  Watched w;
  w.segment.rs.exec("ip addr add 192.0.2.10/32 dev eth0");
  CHECK(eventually([&] { return !w.has_address("eth0", "192.0.2.10/32"); }));
  CHECK(w.daemon.wait_for_log("<4>VIP 192.0.2.10 was on eth0, which may answer ARP for it", 2));
  CHECK(w.guarded());
  w.expect_no_leak();
}

TEST_CASE("a process fighting the agent is still repaired, with backoff, and reported as contested") {
  Watched w;
  {
    Process fighter(w.segment.rs.prefix() +
                        "sh -c 'while :; do ip addr del 192.0.2.10/32 dev lo 2>/dev/null; sleep 0.02; done'",
                    w.dir.path() + "/fighter.log");
    CHECK(w.daemon.wait_for_log("<4>contested: vip 192.0.2.10/32 undone again and again", 5));
    CHECK(w.daemon.wait_for_log("backing off", 5));
  }
  CHECK(eventually([&] { return w.guarded(); }, 8));
  w.expect_no_leak();
}

TEST_CASE("an overrun event socket leads to a full resync") {
  Watched w("", "own_nft_table = false\nevent_buffer_kb = 64\n");
  w.daemon.signal(SIGSTOP);
  // Far more notifications than the daemon's 64 KiB receive buffer holds, and a real
  // drift among them.
  w.segment.rs.must("for i in $(seq 0 9); do for j in $(seq 1 250); do echo addr add 10.9.$i.$j/32 dev eth0; done; "
                    "done > /tmp/" + w.segment.rs.name() + ".batch && ip -batch /tmp/" + w.segment.rs.name() +
                    ".batch && ip addr flush dev eth0 label eth0 to 10.9.0.0/16 && ip addr del 192.0.2.10/32 dev lo; "
                    "rm -f /tmp/" + w.segment.rs.name() + ".batch");
  w.daemon.signal(SIGCONT);
  CHECK(w.daemon.wait_for_log("kernel events were lost (socket overrun): full resync", 5));
  CHECK(eventually([&] { return w.guarded(); }));
  w.expect_no_leak();
}
