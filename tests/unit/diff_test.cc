// Diff as tables: (policy, what the kernel holds) -> the exact plan.
#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

#include "core/desired.h"
#include "core/diff.h"
#include "core/engine.h"
#include "fake_kernel.h"
#include "printing.h"

using namespace arpguard;
using arpguard::testing::FakeKernel;
using Lines = std::vector<std::string>;

namespace {

const char* const kBoth = "[[vip]]\naddress = \"192.0.2.10\"\n";

Policy policy_of(const std::string& text) {
  PolicyResult result = parse_policy(text, "p.toml");
  REQUIRE(result.errors.empty());
  return *result.policy;
}

// The kernel after arpguard converged `policy_text` on a fresh machine.
FakeKernel converged(const std::string& policy_text) {
  FakeKernel kernel = FakeKernel::machine();
  Engine engine(kernel.apis(), false);
  auto report = engine.converge(policy_of(policy_text), false);
  REQUIRE(report);
  REQUIRE(report->converged());
  return kernel;
}

Lines plan_for(const std::string& policy_text, const Observed& observed, bool daemon = false) {
  return Diff(make_desired(policy_of(policy_text), observed, daemon), observed).lines();
}

const std::string kCreate = "nft create table arp arpguard (owner, persist), set vips, chain input, chain output";
const std::string kInputRule =
    "nft add rule input: arp operation request arp daddr ip @vips counter packets 0 bytes 0 drop";
const std::string kEth0Rule =
    "nft add rule output: oifname \"eth0\" arp saddr ip @vips counter packets 0 bytes 0 arp saddr ip set 192.0.2.1";

struct Case {
  const char* name;
  std::string policy;
  std::function<void(Observed&)> drift;  ///< applied to a converged kernel; nullptr: a fresh machine
  Lines plan;
};

const std::vector<Case> kCases = {
    {"fresh machine, method both: suppression first, VIP last", kBoth, nullptr,
     {"set net.ipv4.conf.all.arp_ignore 0 -> 1", "set net.ipv4.conf.all.arp_announce 0 -> 2",
      kCreate,
      "nft add 1 element(s) to @vips: 192.0.2.10", kInputRule, kEth0Rule, "add vip 192.0.2.10/32 dev lo"}},
    {"fresh machine, method sysctl", std::string("[arp]\nmethod = \"sysctl\"\narp_filter = true\n") + kBoth, nullptr,
     {"set net.ipv4.conf.all.arp_ignore 0 -> 1", "set net.ipv4.conf.all.arp_announce 0 -> 2",
      "set net.ipv4.conf.all.arp_filter 0 -> 1", "add vip 192.0.2.10/32 dev lo"}},
    {"fresh machine, method nftables leaves sysctls alone", std::string("[arp]\nmethod = \"nftables\"\n") + kBoth,
     nullptr,
     {kCreate,
      "nft add 1 element(s) to @vips: 192.0.2.10", kInputRule, kEth0Rule, "add vip 192.0.2.10/32 dev lo"}},
    {"named interfaces get per-interface keys", std::string("[arp]\ninterfaces = [\"eth*\"]\n") + kBoth, nullptr,
     {"set net.ipv4.conf.eth0.arp_ignore 0 -> 1", "set net.ipv4.conf.eth0.arp_announce 0 -> 2",
      kCreate,
      "nft add 1 element(s) to @vips: 192.0.2.10", kInputRule, kEth0Rule, "add vip 192.0.2.10/32 dev lo"}},
    {"arp_ignore 3 puts VIPs at scope host", std::string("[arp]\nmethod = \"sysctl\"\narp_ignore = 3\n") + kBoth,
     nullptr,
     {"set net.ipv4.conf.all.arp_ignore 0 -> 3", "set net.ipv4.conf.all.arp_announce 0 -> 2",
      "add vip 192.0.2.10/32 dev lo scope host"}},
    {"converged: nothing to do (I4)", kBoth, [](Observed&) {}, {}},
    {"VIP deleted by hand", kBoth,
     [](Observed& o) { std::erase_if(o.addresses, [](const Address& a) { return a.prefix.length == 32; }); },
     {"add vip 192.0.2.10/32 dev lo"}},
    {"sysctl reset on all", kBoth, [](Observed& o) { o.sysctls[{"all", kArpIgnore}] = 0; },
     {"set net.ipv4.conf.all.arp_ignore 0 -> 1"}},
    {"an interface's own reserved arp_ignore would win the max", kBoth,
     [](Observed& o) { o.sysctls[{"eth0", kArpIgnore}] = 4; }, {"set net.ipv4.conf.eth0.arp_ignore 4 -> 1"}},
    {"an interface's stricter arp_ignore is left alone", kBoth, [](Observed& o) { o.sysctls[{"eth0", kArpIgnore}] = 2; },
     {}},
    {"table flushed", kBoth, [](Observed& o) { o.nft = ObservedArpTable{};
       o.nft.persist_supported = true; },
     {kCreate,
      "nft add 1 element(s) to @vips: 192.0.2.10", kInputRule, kEth0Rule}},
    {"set element deleted", kBoth, [](Observed& o) { o.nft.vips.clear(); },
     {"nft add 1 element(s) to @vips: 192.0.2.10"}},
    {"output rule deleted", kBoth, [](Observed& o) { o.nft.rules.pop_back(); }, {kEth0Rule}},
    {"foreign rule in our table is removed", kBoth,
     [](Observed& o) { o.nft.rules.push_back({99, "output", std::nullopt}); },
     {"nft delete rule output handle 99: rule not written by arpguard"}},
    {"duplicate of our rule is removed", kBoth, [](Observed& o) { o.nft.rules.push_back({98, "input", rules::ArpRule::input_drop()}); },
     {"nft delete rule input handle 98: arp operation request arp daddr ip @vips counter packets 0 bytes 0 drop"}},
    {"primary address changed: the mangle rule follows", kBoth,
     [](Observed& o) { o.addresses[1].prefix = *Ipv4Prefix::parse("192.0.2.2/24"); },
     {"nft delete rule output handle 11: oifname \"eth0\" arp saddr ip @vips counter packets 0 bytes 0 arp saddr ip "
      "set 192.0.2.1",
      "nft add rule output: oifname \"eth0\" arp saddr ip @vips counter packets 0 bytes 0 arp saddr ip set 192.0.2.2"}},
    {"new interface without IPv4 drops ARP sent from a VIP", kBoth,
     [](Observed& o) {
       o.links.push_back({3, "eth1", false, false, true});
       for (const char* name : {kArpIgnore, kArpAnnounce, kArpFilter}) o.sysctls[{"eth1", name}] = 0;
     },
     {"nft add rule output: oifname \"eth1\" arp saddr ip @vips counter packets 0 bytes 0 drop"}},
    {"a NOARP interface is not ARP-facing", kBoth, [](Observed& o) { o.links.push_back({3, "tun0", false, true, true}); },
     {}},
    {"misplaced VIP on the ARP-facing interface is removed", kBoth,
     [](Observed& o) { o.addresses.push_back({2, *Ipv4Prefix::parse("192.0.2.10/32")}); },
     {"del vip 192.0.2.10/32 dev eth0 (misplaced: belongs on lo)"}},
    {"method changed to sysctl: the table goes", std::string("[arp]\nmethod = \"sysctl\"\n") + kBoth, [](Observed&) {},
     {"nft delete table arp arpguard"}},
    {"malformed table is replaced in one batch", kBoth, [](Observed& o) { o.nft.malformed = true; },
     {"nft delete table arp arpguard", kCreate,
      "nft add 1 element(s) to @vips: 192.0.2.10", kInputRule, kEth0Rule}},
};

}  // namespace

TEST_CASE("Diff plans exactly what drifted, in I1 order") {
  for (const Case& c : kCases) {
    CAPTURE(c.name);
    FakeKernel kernel = c.drift ? converged(kBoth) : FakeKernel::machine();
    if (c.drift) c.drift(kernel.world);
    CHECK(plan_for(c.policy, kernel.world) == c.plan);
  }
}

TEST_CASE("after converging any of the table's cases, a second plan is empty (I4)") {
  for (const Case& c : kCases) {
    CAPTURE(c.name);
    FakeKernel kernel = c.drift ? converged(kBoth) : FakeKernel::machine();
    if (c.drift) c.drift(kernel.world);
    // A foreign rule or a malformed table never "converges" by itself in the fake; skip none:
    Engine engine(kernel.apis(), false);
    auto report = engine.converge(policy_of(c.policy), false);
    REQUIRE(report);
    CHECK(report->problems == Lines{});
    CHECK(plan_for(c.policy, kernel.world) == Lines{});
  }
}

TEST_CASE("a policy without VIPs changes nothing on a fresh machine; after VIPs, their table goes") {
  FakeKernel fresh = FakeKernel::machine();
  CHECK(plan_for("", fresh.world) == Lines{});
  FakeKernel kernel = converged(kBoth);
  CHECK(plan_for("", kernel.world) ==
        Lines{"del vip 192.0.2.10/32 dev lo (no longer in policy)", "nft delete table arp arpguard"});
}

TEST_CASE("a VIP dropped from the policy goes before its suppression, a new one comes after") {
  FakeKernel kernel = converged(kBoth);
  CHECK(plan_for("[[vip]]\naddress = \"192.0.2.12\"\n", kernel.world) ==
        Lines{"del vip 192.0.2.10/32 dev lo (no longer in policy)", "nft delete 1 element(s) from @vips: 192.0.2.10",
              "nft add 1 element(s) to @vips: 192.0.2.12", "add vip 192.0.2.12/32 dev lo"});
}

TEST_CASE("a VIP not added by arpguard and not in the policy is foreign: left alone") {
  FakeKernel kernel = converged(kBoth);
  kernel.world.addresses.push_back({1, *Ipv4Prefix::parse("198.51.100.1/32")});
  CHECK(plan_for(kBoth, kernel.world) == Lines{});
}

TEST_CASE("the daemon adopts an orphaned table only where the kernel has PERSIST") {
  FakeKernel kernel = converged(kBoth);
  kernel.world.nft.owned_by_us = false;
  CHECK(plan_for(kBoth, kernel.world, /*daemon=*/true) == Lines{"nft adopt orphaned table arp arpguard"});
  CHECK(plan_for(kBoth, kernel.world, /*daemon=*/false) == Lines{});
  kernel.world.nft.persist_supported = false;
  CHECK(plan_for(kBoth, kernel.world, /*daemon=*/true) == Lines{});
}

TEST_CASE("the daemon replaces a plain table it cannot adopt, in one batch") {
  FakeKernel kernel = converged(kBoth);
  kernel.world.nft.owned_by_us = false;
  kernel.world.nft.flags = 0;  // made without PERSIST, by hand or with own_nft_table = false
  CHECK(plan_for(kBoth, kernel.world, /*daemon=*/true) ==
        Lines{"nft delete table arp arpguard", kCreate, "nft add 1 element(s) to @vips: 192.0.2.10", kInputRule, kEth0Rule});
}

TEST_CASE("own_nft_table = false makes and keeps a plain table") {
  const std::string policy = std::string("[agent]\nown_nft_table = false\n") + kBoth;
  FakeKernel kernel = FakeKernel::machine();
  CHECK(plan_for(policy, kernel.world, /*daemon=*/true)[2] ==
        "nft create table arp arpguard, set vips, chain input, chain output");
  kernel = converged(kBoth);
  kernel.world.nft.owned_by_us = false;
  CHECK(plan_for(policy, kernel.world, /*daemon=*/true) == Lines{});
}

TEST_CASE("a VIP whose device does not exist is a problem, not an action") {
  FakeKernel kernel = FakeKernel::machine();
  const Policy policy = policy_of("[arp]\nmethod = \"sysctl\"\n[[vip]]\naddress = \"192.0.2.10\"\ndevice = \"lo9\"\n");
  const Plan plan = Diff(make_desired(policy, kernel.world, false), kernel.world);
  CHECK(plan.lines() == Lines{"set net.ipv4.conf.all.arp_ignore 0 -> 1", "set net.ipv4.conf.all.arp_announce 0 -> 2"});
  CHECK(plan.problems == Lines{"vip 192.0.2.10/32: device lo9 does not exist"});
}

TEST_CASE("removal: VIPs first, then the table, then sysctls back to their origin") {
  FakeKernel kernel = converged(kBoth);
  const Observed& o = kernel.world;
  CHECK(plan_removal(make_desired(policy_of(kBoth), o, false), o).lines() ==
        Lines{"del vip 192.0.2.10/32 dev lo (removing arpguard)", "nft delete table arp arpguard",
              "set net.ipv4.conf.all.arp_announce 2 -> 0", "set net.ipv4.conf.all.arp_ignore 1 -> 0"});
}

TEST_CASE("verify_suppression names every gap") {
  FakeKernel kernel = converged(kBoth);
  Observed o = kernel.world;
  const Desired desired = make_desired(policy_of(kBoth), o, false);
  CHECK(verify_suppression(desired, o) == Lines{});
  o.sysctls[{"all", kArpIgnore}] = 0;
  o.nft.vips.clear();
  CHECK(verify_suppression(desired, o) ==
        Lines{"sysctl net.ipv4.conf.all.arp_ignore is 0, want 1",
              "arp_ignore on eth0 is effectively 0, which answers ARP for VIPs",
              "nft table needs: nft add 1 element(s) to @vips: 192.0.2.10"});
  o.nft = ObservedArpTable{};
  CHECK(verify_suppression(desired, o).back() == "nft table arp arpguard is missing");
}

TEST_CASE("effective sysctls are computed as the kernel does") {
  SysctlValues v{{{"all", kArpIgnore}, 1}, {{"eth0", kArpIgnore}, 2}, {{"all", kArpFilter}, 0},
                 {{"eth0", kArpFilter}, 1}, {{"all", kArpAnnounce}, 2}, {{"eth0", kArpAnnounce}, 0}};
  CHECK(effective_sysctl(v, "eth0", kArpIgnore) == 2);
  CHECK(effective_sysctl(v, "eth0", kArpAnnounce) == 2);
  CHECK(effective_sysctl(v, "eth0", kArpFilter) == 1);
  CHECK(effective_sysctl(v, "eth9", kArpIgnore) == 1);
}
