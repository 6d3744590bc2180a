// `arpguard apply` against the real kernel, proven by kernel read-back and by
// ARP on the wire as the client sees it.
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <signal.h>

#include <fstream>
#include <set>
#include <sstream>

#include "arpguard_config.h"
#include "guarded.h"
#include "tests/unit/printing.h"

using namespace arpguard::testing;

namespace {

const char* const kVip = "192.0.2.10";
const std::string kOneVip = "[[vip]]\naddress = \"192.0.2.10\"\n";

std::string golden(const std::string& name) {
  std::ifstream in(std::string(ARPGUARD_SOURCE_ROOT) + "/rules/golden/" + name);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

TEST_CASE("control: a VIP on lo with default sysctls is answered on the wire") {
  // Proves the wire check below can fail: this is the leak arpguard prevents.
  Guarded g;
  g.segment.rs.must(std::string("ip addr add ") + kVip + "/32 dev lo");
  CHECK(g.segment.arp_replies(kVip) == std::vector<std::string>(3, Segment::kRsMac));
}

TEST_CASE("each method configures the VIP and hides it from ARP") {
  for (const char* method : {"sysctl", "nftables", "both"}) {
    CAPTURE(method);
    Guarded g;
    const std::string policy = g.write_policy(std::string("[arp]\nmethod = \"") + method + "\"\n" + kOneVip);

    CommandResult r = g.apply(policy);
    CHECK(r.exit_code == 0);
    CHECK(r.err == "");
    CHECK(r.out.find("add vip 192.0.2.10/32 dev lo") != std::string::npos);

    CHECK(g.has_address("lo", "192.0.2.10/32"));
    CHECK(g.has_address("lo", "127.0.0.1/8"));  // never touched (I2)
    const bool sysctls = std::string(method) != "nftables";
    CHECK(g.sysctl("all/arp_ignore") == (sysctls ? 1 : 0));
    CHECK(g.sysctl("all/arp_announce") == (sysctls ? 2 : 0));
    const bool nft = std::string(method) != "sysctl";
    REQUIRE(g.table_exists() == nft);
    if (nft) {
      CHECK(g.set_elements() == std::vector<std::string>{kVip});
      CHECK(g.rule_count() == 2);  // input drop + eth0 mangle
    }
    CHECK(g.segment.arp_replies(kVip).empty());
  }
}

TEST_CASE("the kernel lists exactly the golden ruleset") {
  Guarded g;
  const std::string policy =
      g.write_policy("[arp]\nmethod = \"nftables\"\n" + kOneVip + "[[vip]]\naddress = \"192.0.2.11\"\n");
  REQUIRE(g.apply(policy).exit_code == 0);
  CHECK(g.table_text() == golden("two-vips.nft"));
}

TEST_CASE("nftables method: ARP sent while talking from the VIP carries the real IP") {
  Guarded g;
  // Control first: with the VIP on lo and nothing else, the request leaks the VIP.
  g.segment.rs.must(std::string("ip addr add ") + kVip + "/32 dev lo");
  {
    ArpCapture capture(g.segment.client, "eth0", g.dir.path() + "/control.log");
    CommandResult ping = g.segment.rs.exec(std::string("ping -c 1 -W 0.3 -I ") + kVip + " " + Segment::kClientIp);
    CAPTURE(ping.out);
    CAPTURE(ping.err);
    const std::vector<std::string> frames = capture.stop();
    CAPTURE(frames);
    CHECK(any_line_contains(frames, "who-has 192.0.2.2 tell 192.0.2.10"));
  }
  g.segment.rs.must("ip neigh flush dev eth0");

  REQUIRE(g.apply(g.write_policy("[arp]\nmethod = \"nftables\"\n" + kOneVip)).exit_code == 0);
  CHECK(g.sysctl("all/arp_announce") == 0);  // the kernel would announce the VIP
  ArpCapture capture(g.segment.client, "eth0", g.dir.path() + "/guarded.log");
  g.segment.rs.exec(std::string("ping -c 1 -W 0.3 -I ") + kVip + " " + Segment::kClientIp);
  const std::vector<std::string> frames = capture.stop();
  CHECK(any_line_contains(frames, "who-has 192.0.2.2 tell 192.0.2.1,"));
  CHECK_FALSE(any_line_contains(frames, "tell 192.0.2.10"));
  CHECK_FALSE(any_line_contains(frames, "192.0.2.10 is-at"));
}

TEST_CASE("a second apply plans nothing and makes no kernel change") {
  Guarded g;
  const std::string policy = g.write_policy(kOneVip);
  REQUIRE(g.apply(policy).exit_code == 0);

  Process ip_monitor(g.segment.rs.prefix() + "ip monitor address route link netconf", g.dir.path() + "/ip.log");
  Process nft_monitor(g.segment.rs.prefix() + "nft monitor", g.dir.path() + "/nft.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));

  CommandResult second = g.apply(policy);
  CHECK(second.exit_code == 0);
  CHECK(second.out == "converged: 0 action(s) applied\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // Canaries prove the monitors were listening.
  g.segment.rs.must("ip addr add 198.51.100.9/32 dev lo && nft add table arp canary");
  REQUIRE(ip_monitor.wait_for_log("198.51.100.9", 3));
  REQUIRE(nft_monitor.wait_for_log("canary", 3));

  // The canary's own event must be the first thing the monitor saw.
  const std::string ip_log = ip_monitor.log();
  CAPTURE(ip_log);
  CHECK(ip_log.substr(0, ip_log.find('\n')).find("198.51.100.9") != std::string::npos);
  CHECK(nft_monitor.log().find("arpguard") == std::string::npos);
}

TEST_CASE("whether the kernel knows PERSIST is probed once a boot, kept in the state directory, and believed") {
  Guarded g;
  const std::string policy = g.write_policy(kOneVip);
  const std::string features = g.dir.path() + "/state/kernel-features";
  std::string boot = g.segment.rs.must("cat /proc/sys/kernel/random/boot_id");
  boot.erase(boot.find_last_not_of('\n') + 1);
  // nft 1.0.6 prints a flags line with no name for PERSIST, and none for a plain table.
  auto persistent = [&] { return g.segment.rs.must("nft list table arp arpguard").find("\n\tflags ") != std::string::npos; };
  auto kept = [&] { return g.segment.rs.must("cat " + features); };
  auto apply_anew = [&] {
    g.segment.rs.exec("nft delete table arp arpguard");
    const CommandResult r = g.apply(policy);
    CHECK(r.exit_code == 0);
    CHECK(r.err == "");
  };

  REQUIRE(g.apply(policy).exit_code == 0);
  const bool supported = persistent();
  CHECK(kept() == "nft_table_persist=" + std::string(supported ? "1" : "0") + " boot=" + boot + "\n");

  // Believed for this boot: told the opposite, arpguard makes the table that way.
  g.dir.write("state/kernel-features", "nft_table_persist=" + std::string(supported ? "0" : "1") + " boot=" + boot + "\n");
  if (supported) {
    apply_anew();
    CHECK_FALSE(persistent());
  }
  // Tables named as the probe's used to be, made by someone else: they answer nothing for it.
  g.segment.rs.must("nft add table arp arpguard-probe && nft add table arp arpguard-absent");
  g.dir.write("state/kernel-features", "");
  apply_anew();
  CHECK(persistent() == supported);
  CHECK(kept() == "nft_table_persist=" + std::string(supported ? "1" : "0") + " boot=" + boot + "\n");
  CHECK(g.segment.rs.must("nft list tables arp") == "table arp arpguard-probe\ntable arp arpguard-absent\ntable arp arpguard\n");
  // Another boot's answer, or anything else, is probed again and replaced.
  for (const std::string& stale : std::vector<std::string>{"nft_table_persist=0 boot=00000000-0000-0000-0000-000000000000\n",
                                   std::string("nft_table_persist=0 boot=") + boot + "\nmore\n", std::string("\xffgarbage")}) {
    CAPTURE(stale);
    g.dir.write("state/kernel-features", stale);
    apply_anew();
    CHECK(persistent() == supported);
    CHECK(kept() == "nft_table_persist=" + std::string(supported ? "1" : "0") + " boot=" + boot + "\n");
  }
}

TEST_CASE("another process committing to nftables all through an apply: what arpguard reads back is the kernel's") {
  // arpguard apply keeps the set's elements in memory while the ruleset's
  // generation proves its own commit the only one since it read them; here
  // the generation moves all the time, and every read must go to the kernel.
  Guarded g;
  std::string body;
  for (int i = 0; i < 3000; ++i) body += fmt::format("[[vip]]\naddress = \"10.90.{}.{}\"\n", i / 125, 2 * (i % 125) + 1);
  const std::string policy = g.write_policy(body);
  Process churn(g.segment.rs.prefix() +
                    "sh -c 'while :; do nft add table inet churn; nft delete table inet churn; done'",
                g.dir.path() + "/churn.log");
  const CommandResult r = g.apply(policy);
  CHECK(r.exit_code == 0);
  CHECK(r.err == "");
  CHECK(r.out.find("converged:") != std::string::npos);
  churn.signal(SIGKILL);
  CHECK(g.set_elements().size() == 3000);
  // Nothing is left to do, read from the kernel by a second apply.
  const CommandResult again = g.apply(policy);
  CHECK(again.exit_code == 0);
  CHECK(again.out == "converged: 0 action(s) applied\n");
}

TEST_CASE("the set flushed again and again while apply adds thousands of VIPs: no VIP is left uncovered unnamed") {
  // Whatever the race gives, the end is either converged with every VIP on lo
  // covered by an element, or exit 1 naming each VIP still uncovered.
  Guarded g;
  std::string body;
  for (int i = 0; i < 3000; ++i) body += fmt::format("[[vip]]\naddress = \"10.91.{}.{}\"\n", i / 125, 2 * (i % 125) + 1);
  const std::string policy = g.write_policy("[arp]\nmethod = \"nftables\"\n" + body, "own_nft_table = false\n");
  Process flusher(g.segment.rs.prefix() +
                      "sh -c 'for i in $(seq 40); do nft flush set arp arpguard vips 2>/dev/null; sleep 0.004; done'",
                  g.dir.path() + "/flush.log");
  const CommandResult r = g.apply(policy);
  flusher.wait(10);
  // (The storm may also keep apply from reading a consistent picture at all: exit 1 before any change.)
  const std::vector<std::string> elements = g.table_exists() ? g.set_elements() : std::vector<std::string>{};
  const std::set<std::string> covered(elements.begin(), elements.end());
  size_t uncovered = 0;
  for (const std::string& address : g.addresses("lo")) {
    const std::string ip = address.substr(0, address.find('/'));
    if (ip.rfind("10.91.", 0) != 0 || covered.count(ip)) continue;
    ++uncovered;
    CAPTURE(ip);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("not met: vip " + ip + "/32") != std::string::npos);
  }
  if (r.exit_code == 0) {
    CHECK(uncovered == 0);
    CHECK(elements.size() == 3000);
  }
  // A VIP held back and added by a later round is not reported as not added:
  // one line a round says how many wait.
  CHECK(r.err.find("VIP not added") == std::string::npos);
  MESSAGE("exit " << r.exit_code << ", " << uncovered << " VIP(s) left uncovered, all named");
}

TEST_CASE("a bad policy is refused with a located error and changes nothing") {
  Guarded g;
  REQUIRE(g.apply(g.write_policy(kOneVip)).exit_code == 0);
  const std::string before = g.segment.rs.must("ip -4 addr; nft list ruleset; sysctl -a -r 'arp_(ignore|announce)' 2>/dev/null");

  const std::string bad = g.write_policy("[[vip]]\naddress = \"192.0.2.12\"\n[arp]\narp_ignore = 0\n");
  CommandResult r = g.apply(bad);
  CHECK(r.exit_code == 1);
  CHECK(r.err == bad + ":7:14: arp.arp_ignore: 0 would not protect VIPs (allowed: 1, 2, 3, 8)\n");
  CHECK(r.out == "");
  CHECK(g.segment.rs.must("ip -4 addr; nft list ruleset; sysctl -a -r 'arp_(ignore|announce)' 2>/dev/null") == before);
}

TEST_CASE("a VIP that is the interface's own address is refused before any change") {
  Guarded g;
  const std::string policy = g.write_policy("[[vip]]\naddress = \"192.0.2.1\"\n");
  CommandResult r = g.apply(policy);
  CHECK(r.exit_code == 1);
  CHECK(r.err == policy + ":5:11: vip.address: 192.0.2.1 is the own address of eth0 (192.0.2.1/24), not a VIP\n");
  CHECK_FALSE(g.table_exists());
  CHECK(g.sysctl("all/arp_ignore") == 0);
}

TEST_CASE("a VIP put on the ARP-facing interface by hand is moved to lo") {
  Guarded g;
  g.segment.rs.must(std::string("ip addr add ") + kVip + "/32 dev eth0");
  CommandResult r = g.apply(g.write_policy(kOneVip));
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("del vip 192.0.2.10/32 dev eth0 (misplaced: belongs on lo)") != std::string::npos);
  CHECK_FALSE(g.has_address("eth0", "192.0.2.10/32"));
  CHECK(g.has_address("lo", "192.0.2.10/32"));
  CHECK(g.segment.arp_replies(kVip).empty());
}

TEST_CASE("dry run prints the plan and changes nothing") {
  Guarded g;
  CommandResult r = g.apply(g.write_policy(kOneVip), "--dry-run");
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("add vip 192.0.2.10/32 dev lo\ndry run: 10 action(s) planned, nothing changed\n") != std::string::npos);
  CHECK_FALSE(g.has_address("lo", "192.0.2.10/32"));
  CHECK_FALSE(g.table_exists());
}

TEST_CASE("a VIP dropped from the policy is removed before its suppression") {
  Guarded g;
  REQUIRE(g.apply(g.write_policy(kOneVip + "[[vip]]\naddress = \"192.0.2.11\"\n")).exit_code == 0);
  CommandResult r = g.apply(g.write_policy(kOneVip));
  CHECK(r.exit_code == 0);
  // The VIP goes first; then its suppression: the merged interval 192.0.2.10-11
  // is replaced by 192.0.2.10 alone, in one transaction.
  CHECK(r.out == "del vip 192.0.2.11/32 dev lo (no longer in policy)\n"
                 "nft delete 1 element(s) from arp arpguard @vips: 192.0.2.10/31\n"
                 "nft add 1 element(s) to arp arpguard @vips: 192.0.2.10\n"
                 "converged: 3 action(s) applied\n");
  CHECK_FALSE(g.has_address("lo", "192.0.2.11/32"));
  CHECK(g.set_elements() == std::vector<std::string>{kVip});
}

TEST_CASE("route VIPs the kernel refuses among hundreds: each named, every other one added") {
  // Within a window only the last request asks the kernel for an ack; a
  // refused one is answered all the same. Refused here: the first, one in the
  // middle of a window, one at a window's end and the last. After a failure
  // the kernel is read again and what is not met named (before, apply stopped
  // at the failure: VIPs held back in that round went unnamed).
  Guarded g;
  std::string body;
  std::vector<std::string> vips;
  for (int i = 0; i < 600; ++i) {
    vips.push_back(fmt::format("10.92.{}.{}", i / 200, i % 200 + 1));
    body += fmt::format("[[vip]]\naddress = \"{}\"\nas = \"route\"\n", vips.back());
  }
  const std::vector<size_t> refused{0, 100, 255, 599};
  for (size_t i : refused) g.segment.rs.must("ip route add blackhole " + vips[i] + "/32 table local");
  const CommandResult r = g.apply(g.write_policy(body));
  CHECK(r.exit_code == 1);
  std::string expected;
  for (size_t i : refused) {
    expected += fmt::format(
        "arpguard: add route local {0}/32 dev lo table local: RTM_NEWROUTE local {0}/32 dev lo table local: File "
        "exists (another route holds this destination in table local: ip route show table local)\n",
        vips[i]);
  }
  // Then the kernel is read once more, and every goal it does not meet named.
  for (size_t i : refused) expected += fmt::format("arpguard: not met: vip {}/32: local route missing\n", vips[i]);
  CHECK(r.err == expected);
  const std::string routes = g.segment.rs.must("ip -4 route show table local type local");
  for (size_t i = 0; i < vips.size(); ++i) {
    CAPTURE(vips[i]);
    const bool local = routes.find("local " + vips[i] + " ") != std::string::npos;
    CHECK(local == (std::find(refused.begin(), refused.end(), i) == refused.end()));
  }
}

TEST_CASE("a plan that cannot be written (stdout on a full disk, or closed) is not carried out") {
  Guarded g;
  const std::string policy = g.write_policy(kOneVip);
  for (const std::string flags : {"", "--dry-run"}) {
    CAPTURE(flags);
    CommandResult r = g.apply(policy, flags + " >/dev/full");
    CHECK(r.exit_code == 1);
    CHECK(r.err == "arpguard: cannot write the plan to standard output: No space left on device\n");
    // Closed: its first socket would take fd 1, and the plan went into the kernel.
    r = g.apply(policy, flags + " >&-");
    CHECK(r.exit_code == 1);
    CHECK(r.err == "arpguard: cannot write the plan to standard output: Bad file descriptor\n");
  }
  CHECK(g.addresses("lo") == std::vector<std::string>{"127.0.0.1/8"});
  CHECK_FALSE(g.table_exists());
  // Applied, but the last line cannot be said: not a success.
  REQUIRE(g.apply(policy).exit_code == 0);
  const CommandResult converged = g.apply(policy, ">&-");
  CHECK(converged.exit_code == 1);
  CHECK(converged.err == "arpguard: cannot write to standard output: Bad file descriptor\n");
}

TEST_CASE("a VIP the kernel refuses while stderr is a full disk: exit 1, not an abort") {
  Guarded g;
  g.segment.rs.must("ip route add blackhole 10.93.0.2/32 table local");
  const std::string policy = g.write_policy("[[vip]]\naddress = \"10.93.0.1\"\nas = \"route\"\n"
                                            "[[vip]]\naddress = \"10.93.0.2\"\nas = \"route\"\n");
  CHECK(g.apply(policy, "2>/dev/full").exit_code == 1);
  CHECK(g.segment.rs.must("ip -4 route show table local type local").find("local 10.93.0.1 ") != std::string::npos);
}
