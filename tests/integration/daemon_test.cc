// arpguardd in a real namespace: start, reload, stop, and what the wire shows.
#include <doctest/doctest.h>
#include <signal.h>

#include "guarded.h"

using namespace arpguard::testing;

namespace {

const std::string kOneVip = "[[vip]]\naddress = \"192.0.2.10\"\n";

struct RunningDaemon {
  RunningDaemon(const Guarded& g, const std::string& policy)
      : process(g.segment.rs.prefix() + arpguardd_bin() + " --policy " + policy, g.dir.path() + "/arpguardd.log") {}
  Process process;
};

}  // namespace

TEST_CASE("on_stop = remove: VIPs go first, then the table, and sysctls return to their values before") {
  Guarded g;
  g.segment.rs.must("sysctl -qw net.ipv4.conf.all.arp_announce=1");  // the machine's own choice
  RunningDaemon d(g, g.write_policy(kOneVip, "on_stop = \"remove\"\n"));
  REQUIRE(d.process.wait_for_log("ready: guarding 1 VIP(s)", 5));
  CHECK(g.has_address("lo", "192.0.2.10/32"));
  CHECK(g.sysctl("all/arp_announce") == 2);

  d.process.signal(SIGTERM);
  CHECK(d.process.wait(5) == 0);
  const std::string log = d.process.log();
  const size_t del_vip = log.find("stop: del vip 192.0.2.10/32 dev lo");
  const size_t del_table = log.find("stop: nft delete table arp arpguard");
  CHECK(del_vip != std::string::npos);
  CHECK(del_table != std::string::npos);
  CHECK(del_vip < del_table);
  CHECK_FALSE(g.has_address("lo", "192.0.2.10/32"));
  CHECK_FALSE(g.table_exists());
  CHECK(g.sysctl("all/arp_ignore") == 0);
  CHECK(g.sysctl("all/arp_announce") == 1);
}

TEST_CASE("on_stop = keep: stopping leaves the VIP and its protection") {
  Guarded g;
  RunningDaemon d(g, g.write_policy(kOneVip));
  REQUIRE(d.process.wait_for_log("ready:", 5));
  d.process.signal(SIGTERM);
  CHECK(d.process.wait(5) == 0);
  CHECK(g.has_address("lo", "192.0.2.10/32"));
  CHECK(g.table_exists());
  CHECK(g.sysctl("all/arp_ignore") == 1);
  CHECK(g.segment.arp_replies("192.0.2.10").empty());
}

TEST_CASE("a bad reload keeps the running policy; a good one applies the delta") {
  Guarded g;
  const std::string policy = g.write_policy(kOneVip);
  RunningDaemon d(g, policy);
  REQUIRE(d.process.wait_for_log("ready:", 5));

  g.write_policy(kOneVip + "[[vip]]\naddress = \"192.0.2.11\"\nport = 80\n");
  d.process.signal(SIGHUP);
  REQUIRE(d.process.wait_for_log("rejected: the running policy stays in force", 5));
  CHECK(d.process.log().find("<3>" + policy + ":8:1: unknown key 'vip.port'") != std::string::npos);
  CHECK(d.process.running());
  CHECK_FALSE(g.has_address("lo", "192.0.2.11/32"));
  CHECK(g.has_address("lo", "192.0.2.10/32"));

  g.write_policy("[[vip]]\naddress = \"192.0.2.11\"\n");
  d.process.signal(SIGHUP);
  REQUIRE(d.process.wait_for_log("reload: add vip 192.0.2.11/32 dev lo", 5));
  CHECK(g.has_address("lo", "192.0.2.11/32"));
  CHECK_FALSE(g.has_address("lo", "192.0.2.10/32"));
  CHECK(g.set_elements() == std::vector<std::string>{"192.0.2.11"});
  const std::string log = d.process.log();
  // The new VIP is added only under its suppression (192.0.2.10 and .11 merge into one
  // interval while .10 is still configured); the old one's suppression goes only after it.
  const size_t both = log.find("reload: nft add 1 element(s) to arp arpguard @vips: 192.0.2.10/31");
  CHECK(both < log.find("reload: add vip 192.0.2.11/32"));
  CHECK(log.find("reload: del vip 192.0.2.10/32") < log.find("reload: nft delete 1 element(s) from arp arpguard @vips: 192.0.2.10/31"));
  CHECK(both < log.find("reload: nft add 1 element(s) to arp arpguard @vips: 192.0.2.11"));
}

TEST_CASE("the daemon owns its table: others can neither delete nor flush it") {
  Guarded g;
  RunningDaemon d(g, g.write_policy(kOneVip));
  REQUIRE(d.process.wait_for_log("ready:", 5));
  const std::string flags = g.table_json()["nftables"][1]["table"].value("flags", nlohmann::json::array()).dump();
  if (flags.find("owner") == std::string::npos) {
    MESSAGE("kernel without NFT_TABLE_F_PERSIST: arpguard keeps a plain table; ownership not checked");
    return;
  }
  CHECK(g.segment.rs.exec("nft delete table arp arpguard").exit_code != 0);
  g.segment.rs.must("nft flush ruleset");
  CHECK(g.table_exists());
  CHECK(g.set_elements() == std::vector<std::string>{"192.0.2.10"});
}

TEST_CASE("no frame on the wire reveals a VIP during apply, reload and removal") {
  Guarded g;
  ArpCapture capture(g.segment.client, "eth0", g.dir.path() + "/capture.log");
  // The client keeps asking for both VIPs; the real server keeps sending from them.
  Process asking(g.segment.client.prefix() + "sh -c 'while :; do arping -q -c 1 -W 0.02 -w 0.05 -i eth0 192.0.2.10; "
                 "arping -q -c 1 -W 0.02 -w 0.05 -i eth0 192.0.2.11; done'",
                 g.dir.path() + "/asking.log");
  Process sending(g.segment.rs.prefix() + "sh -c 'while :; do ip neigh flush dev eth0; "
                  "ping -q -c 1 -W 0.05 -I 192.0.2.10 192.0.2.2; done'",
                  g.dir.path() + "/sending.log");

  const std::string policy = g.write_policy(kOneVip, "on_stop = \"remove\"\n");
  RunningDaemon d(g, policy);
  REQUIRE(d.process.wait_for_log("ready:", 5));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  g.write_policy(kOneVip + "[[vip]]\naddress = \"192.0.2.11\"\n", "on_stop = \"remove\"\n");
  d.process.signal(SIGHUP);
  REQUIRE(d.process.wait_for_log("reload: add vip 192.0.2.11/32", 5));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  d.process.signal(SIGTERM);
  CHECK(d.process.wait(5) == 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  sending.signal(SIGKILL);
  asking.signal(SIGKILL);

  const std::vector<std::string> frames = capture.stop();
  CHECK(frames.size() > 20);  // the wire was busy
  CHECK(any_line_contains(frames, "who-has 192.0.2.10 tell 192.0.2.2"));
  for (const std::string& frame : frames) {
    CAPTURE(frame);
    CHECK(frame.find("192.0.2.10 is-at") == std::string::npos);
    CHECK(frame.find("192.0.2.11 is-at") == std::string::npos);
    CHECK(frame.find("tell 192.0.2.10") == std::string::npos);
    CHECK(frame.find("tell 192.0.2.11") == std::string::npos);
  }
}

TEST_CASE("a daemon given a bad policy exits 1 with the located error") {
  Guarded g;
  const std::string policy = g.write_policy("[arp]\nmethod = \"magic\"\n");
  RunningDaemon d(g, policy);
  CHECK(d.process.wait(5) == 1);
  CHECK(d.process.log() ==
        "<3>" + policy + ":5:10: arp.method: 'magic' is not one of \"sysctl\", \"nftables\", \"both\", \"redirect\"\n");
  CHECK_FALSE(g.table_exists());
}

TEST_CASE("a policy without VIPs idles and says so") {
  Guarded g;
  RunningDaemon d(g, g.write_policy(""));
  REQUIRE(d.process.wait_for_log("started, not ready: no VIPs in the policy", 5));
  CHECK(d.process.log().find("<5>no VIPs in the policy: nothing to guard, idling") != std::string::npos);
  CHECK(d.process.log().find("apply:") == std::string::npos);  // it changed nothing
  CHECK_FALSE(g.table_exists());
  CHECK(g.sysctl("all/arp_ignore") == 0);
}
