// 20,000 VIPs: every kind of drift is repaired from the event-fed cache, an
// overrun event socket leads to a full read, and the periodic audit, which
// compares the cache with a fresh read of the kernel, finds no difference.
// Speed is measured in tests/bench, not here: the bounds below only keep a
// broken daemon from hanging the suite.
#include <doctest/doctest.h>
#include <signal.h>

#include <nlohmann/json.hpp>
#include <fstream>
#include <sstream>

#include "guarded.h"

using namespace arpguard::testing;

namespace {

constexpr int kVips = 20000;

// VIP i is 10.20.0.0 + 2i + 1: no two are adjacent, so the set holds 20,000
// intervals, one per VIP, not one merged range.
std::string vip(int i) {
  const unsigned a = (10u << 24) + (20u << 16) + 2u * static_cast<unsigned>(i) + 1u;
  return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 255) + "." + std::to_string((a >> 8) & 255) +
         "." + std::to_string(a & 255);
}

struct Large : Guarded {
  Large() {
    std::string body;
    body.reserve(kVips * 32);
    for (int i = 0; i < kVips; ++i) body += "[[vip]]\naddress = \"" + vip(i) + "\"\n";
    // own_nft_table = false: an owned table refuses the deletions below.
    policy = write_policy(body, "own_nft_table = false\nsysctl_poll_ms = 100\naudit_interval_ms = 1000\n"
                                "event_buffer_kb = 64\n");
    daemon = std::make_unique<Process>(segment.rs.prefix() + arpguardd_bin() + " --policy " + policy,
                                       dir.path() + "/arpguardd.log");
    REQUIRE_MESSAGE(daemon->wait_for_log("ready: guarding 20000 VIP(s)", 120), daemon->log());
  }

  size_t vips_on_lo() const {
    return std::stoul(segment.rs.must("ip -4 -o addr show dev lo | grep -c ' inet 10\\.20\\.' || true"));
  }
  bool in_set(const std::string& address) const {
    return segment.rs.exec("nft get element arp arpguard vips '{ " + address + " }'").exit_code == 0;
  }
  size_t set_size() const {
    const nlohmann::json set = nlohmann::json::parse(segment.rs.must("nft -j list set arp arpguard vips"));
    for (const auto& item : set["nftables"]) {
      if (item.contains("set")) return item["set"].value("elem", nlohmann::json::array()).size();
    }
    return 0;
  }
  /// The whole policy in the kernel: every VIP on lo and in @vips, both rules, the sysctls.
  bool guarded() const {
    return table_exists() && rule_count() == 2 && vips_on_lo() == kVips && set_size() == kVips &&
           sysctl("all/arp_ignore") == 1 && sysctl("all/arp_announce") == 2;
  }
  nlohmann::json status() const {
    return nlohmann::json::parse(
        run(arpguard_bin() + " status --json --socket " + control_socket() + " 2>/dev/null").out, nullptr, false);
  }
  uint64_t counter(const char* name) const {
    const nlohmann::json s = status();
    return s.is_object() ? s.value(name, uint64_t{0}) : 0;
  }
  /// Waits for an audit that began after now, and returns what all audits found.
  uint64_t divergences_after_next_audit() const {
    const uint64_t before = counter("audits_total");
    REQUIRE(eventually([&] { return counter("audits_total") >= before + 2; }, 30));
    return counter("cache_divergence_total");
  }
  /// The daemon's log lines about audits that found differences.
  std::string audit_log() const {
    std::string out;
    std::istringstream lines(daemon->log());
    for (std::string line; std::getline(lines, line);) {
      if (line.find("audit:") != std::string::npos) out += line + "\n";
    }
    return out;
  }
  bool ready() const {
    const nlohmann::json s = status();
    return s.is_object() && s.value("vips_ready", -1) == kVips;
  }

  std::string policy;
  std::unique_ptr<Process> daemon;
};

}  // namespace

TEST_CASE("20,000 VIPs: each kind of drift is repaired, an overrun resynced, and the audit finds the cache right") {
  Large g;
  REQUIRE(g.guarded());
  CHECK(g.ready());
  CAPTURE(g.audit_log());
  // After each step, the next audit finds nothing new.
  uint64_t found = 0;
  auto audit_clean = [&] {
    const uint64_t total = g.divergences_after_next_audit();
    const bool clean = total == found;
    found = total;
    return clean;
  };
  CHECK(audit_clean());

  const std::string one = vip(12345);
  INFO("a VIP deleted by hand");
  g.segment.rs.must("ip addr del " + one + "/32 dev lo");
  CHECK(eventually([&] { return g.guarded(); }, 20));
  CHECK(g.daemon->wait_for_log("add vip " + one + "/32 dev lo", 5));
  CHECK(audit_clean());

  INFO("a set element deleted");
  g.segment.rs.must("nft delete element arp arpguard vips '{ " + one + " }'");
  CHECK(eventually([&] { return g.in_set(one); }, 20));
  CHECK(g.daemon->wait_for_log("to arp arpguard @vips: " + one, 5));
  CHECK(audit_clean());

  INFO("a rule deleted");
  const std::string handle =
      g.segment.rs.must("nft -a list chain arp arpguard input | sed -n 's/.*drop # handle \\([0-9]*\\)/\\1/p'");
  REQUIRE_FALSE(handle.empty());
  g.segment.rs.must("nft delete rule arp arpguard input handle " + handle);
  CHECK(eventually([&] { return g.guarded(); }, 20));
  CHECK(audit_clean());

  INFO("the whole table deleted: rebuilt with its 20,000 elements");
  g.segment.rs.must("nft delete table arp arpguard");
  CHECK(eventually([&] { return g.guarded(); }, 30));
  CHECK(audit_clean());

  INFO("sysctls reset");
  g.segment.rs.must("sysctl -qw net.ipv4.conf.all.arp_ignore=0 net.ipv4.conf.all.arp_announce=0");
  CHECK(eventually([&] { return g.guarded(); }, 20));
  CHECK(audit_clean());

  INFO("ip addr flush dev lo: all 20,000 VIPs back, 127.0.0.1 is not arpguard's");
  g.segment.rs.must("ip addr flush dev lo");
  CHECK(eventually([&] { return g.guarded(); }, 60));
  // ip's flush deletes in rounds, fighting the repair, and the notifications
  // of both overrun the 64 KiB event buffer again and again: every full read
  // in the fight must still be one picture, so the audit finds nothing.
  CHECK(audit_clean());

  INFO("an overrun event socket: a full read, then the policy again");
  g.daemon->signal(SIGSTOP);
  // Far more notifications than the daemon's 64 KiB receive buffer holds, and two
  // real drifts among them.
  const std::string batch = "/tmp/" + g.segment.rs.name() + ".batch";
  g.segment.rs.must("for i in $(seq 0 9); do for j in $(seq 1 250); do echo addr add 10.9.$i.$j/32 dev eth0; done; "
                    "done > " + batch + " && ip -batch " + batch + " && ip addr flush dev eth0 to 10.9.0.0/16 && "
                    "ip addr del " + one + "/32 dev lo && ip addr del " + vip(0) + "/32 dev lo; rm -f " + batch);
  g.daemon->signal(SIGCONT);
  CHECK(g.daemon->wait_for_log("kernel events were lost (socket overrun): full resync", 10));
  CHECK(eventually([&] { return g.guarded(); }, 30));
  CHECK(audit_clean());

  INFO("after all of it: ready, and the audit agrees with the kernel");
  CHECK(eventually([&] { return g.ready(); }, 10));
  CHECK(audit_clean());
  CHECK(g.daemon->running());

  INFO("a status of every VIP, megabytes at this scale, is handed back once sent");
  auto resident_kb = [&] {
    std::ifstream file("/proc/" + std::to_string(g.daemon->pid()) + "/status");
    for (std::string line; std::getline(file, line);) {
      if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    }
    return 0L;
  };
  const long before = resident_kb();
  REQUIRE(before > 0);
  for (int i = 0; i < 3; ++i) {
    const CommandResult vips = run(arpguard_bin() + " status --vips --json --socket " + g.control_socket());
    REQUIRE(vips.exit_code <= 1);  // OK, or WARNING (the table is not owned here)
    REQUIRE(vips.out.size() > 20u * kVips);
  }
  CAPTURE(before);
  // Handed back when arpguardd has seen the connection close, which may come
  // after the CLI has its answer and has exited.
  CHECK(eventually([&] { return resident_kb() < before + 8 * 1024; }, 5));
}
