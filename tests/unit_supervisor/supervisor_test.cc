// The Supervisor as a state machine: a fake kernel that can fail any call,
// drift of every kind, stale data, draining, and every kind of action.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cerrno>

#include "rig.h"
#include "rules/tables.h"

using namespace arpguard;
using namespace arpguard::testing;

namespace {

const std::string kOneVip = "[[vip]]\naddress = \"192.0.2.10\"\n";
const std::string kEveryKind =
    "[[vip]]\naddress = \"192.0.2.10\"\n"
    "[[vip]]\naddress = \"2001:db8::10\"\n"
    "[[vip]]\naddress = \"10.100.0.0/24\"\n"
    "[[vip]]\naddress = \"198.51.100.7\"\nmethod = \"redirect\"\nports = [\"tcp:80\", \"tcp:8080->18080\"]\n";

}  // namespace

TEST_CASE("start: suppression, then VIPs; ready once, and READY=1 told once") {
  Rig rig(kOneVip);
  CHECK(rig.has_address("192.0.2.10/32"));
  CHECK(rig.kernel.world.sysctls.at({"all", kArpIgnore}) == 1);
  CHECK(rig.kernel.world.tables.count(rules::arp_table_id()) == 1);
  // I1: the table batch and the sysctls were written before the VIP.
  const auto& w = rig.kernel.writes;
  const auto vip = std::find(w.begin(), w.end(), "add address 192.0.2.10/32 dev lo");
  REQUIRE(vip != w.end());
  CHECK(std::find_if(w.begin(), vip, [](const std::string& s) { return s.rfind("nft batch of ", 0) == 0; }) != vip);
  CHECK(std::find(w.begin(), vip, "sysctl net.ipv4.conf.all.arp_ignore=1") != vip);
  CHECK(rig.ready().ready);
  CHECK(std::count_if(rig.host.notifications.begin(), rig.host.notifications.end(),
                      [](const std::string& n) { return n.rfind("READY=1", 0) == 0; }) == 1);
  CHECK(rig.logged("<6>ready: guarding 1 VIP(s), method both"));
}

TEST_CASE("every kind of VIP is applied: IPv4 address, IPv6 address, local route, redirect") {
  Rig rig(kEveryKind);
  CHECK(rig.has_address("192.0.2.10/32"));
  const AddressKey v6 = address("2001:db8::10/128");
  REQUIRE(rig.kernel.world.addresses.count(v6));
  CHECK(rig.kernel.world.addresses.at(v6).deprecated());
  CHECK(rig.kernel.world.local_routes.count(RouteKey{*IpPrefix::parse("10.100.0.0/24"), 0}));
  CHECK_FALSE(rig.has_address("198.51.100.7/32"));
  CHECK(rig.kernel.world.tables.count(rules::ndp_table_id()));
  CHECK(rig.kernel.world.tables.count(rules::nat_table_id(Family::kV4)));
  CHECK(rig.kernel_meets_policy());
  const ReadySummary ready = rig.ready();
  CHECK_MESSAGE(ready.ready, Rig::texts(ready.reasons));
  CHECK(rig.status().vips_ready == 4);
}

TEST_CASE("a deleted VIP is repaired, logged with its cause and counted as one repair") {
  Rig rig(kOneVip);
  rig.kernel.foreign_delete_address(address("192.0.2.10/32"));
  CHECK_FALSE(rig.ready().ready);  // the cache says so at once, before the repair
  rig.settle();
  CHECK(rig.has_address("192.0.2.10/32"));
  CHECK(rig.logged("<5>repair after RTM_DELADDR 192.0.2.10/32 dev lo: add vip 192.0.2.10/32 dev lo"));
  const StatusSnapshot status = rig.status();
  CHECK(status.repairs_total == 1);
  CHECK(status.repair_failures_total == 0);
  CHECK(rig.ready().ready);
}

TEST_CASE("addresses beside a NIC's own leave its rule alone; its own address gone moves the ARP sender") {
  Rig rig(kOneVip);
  const AddressInfo info{kScopeGlobal, kAddrFlagPermanent};
  const size_t before = rig.kernel.writes.size();
  rig.kernel.foreign_add_address(address("10.9.0.1/32", 2), info);
  rig.kernel.foreign_add_address(address("172.16.0.1/32", 2), info);
  rig.settle();
  CHECK(rig.kernel.writes.size() == before);  // eth0's sender is still its own 192.0.2.1
  rig.kernel.foreign_delete_address(address("192.0.2.1/24", 2));
  rig.settle();
  CHECK(rig.kernel_meets_policy());  // the rule now puts 10.9.0.1 in place of a VIP
  CHECK(rig.kernel.writes.size() > before);
  rig.kernel.foreign_add_address(address("192.0.2.1/24", 2), info);
  rig.settle();
  CHECK(rig.kernel_meets_policy());
}

TEST_CASE("notifications the loop let wait are read before the debounce fires: one repair for the burst") {
  Rig rig(kOneVip + "[[vip]]\naddress = \"192.0.2.11\"\n");
  rig.kernel.foreign_add_address(address("172.16.0.1/32", 2), AddressInfo{kScopeGlobal, kAddrFlagPermanent});
  rig.driver->drain_events();
  REQUIRE(rig.driver->events_can_wait());  // nothing of arpguard's: a batch is armed
  // arpguardd does not wake for these: they wait in their socket.
  rig.kernel.foreign_delete_address(address("192.0.2.10/32"));
  rig.kernel.foreign_delete_address(address("192.0.2.11/32"));
  rig.host.clock = rig.driver->next_timer();
  rig.driver->fire_due_timers(rig.host.clock);
  CHECK_FALSE(rig.driver->events_can_wait());
  CHECK(rig.has_address("192.0.2.10/32"));
  CHECK(rig.has_address("192.0.2.11/32"));
  CHECK(rig.status().repairs_total == 1);
  CHECK(rig.logged("repair after RTM_DELADDR 192.0.2.10/32 dev lo; RTM_DELADDR 192.0.2.11/32 dev lo: "
                   "add vip 192.0.2.10/32 dev lo; add vip 192.0.2.11/32 dev lo"));
}

TEST_CASE("changes of nothing arpguard's are read in batches 4 ms apart; one of its own is repaired within 1 ms") {
  Rig rig(kOneVip);
  const double t0 = rig.host.clock;
  rig.kernel.foreign_add_address(address("172.16.0.1/32", 2), AddressInfo{kScopeGlobal, kAddrFlagPermanent});
  rig.driver->drain_events();
  CHECK(rig.driver->events_can_wait());
  CHECK(rig.driver->next_timer() == doctest::Approx(t0 + 0.004).epsilon(1e-9));
  CHECK(rig.status().repairs_total == 0);
  // A VIP deleted meanwhile (read early here, as a readiness query does) brings the debounce forward.
  rig.kernel.foreign_delete_address(address("192.0.2.10/32"));
  rig.driver->drain_events();
  CHECK(rig.driver->next_timer() == doctest::Approx(t0 + 0.001).epsilon(1e-9));
  CHECK_FALSE(rig.driver->events_can_wait());  // a change of its own: the next ones are read as they come
  rig.host.clock = rig.driver->next_timer();
  rig.driver->fire_due_timers(rig.host.clock);
  CHECK(rig.has_address("192.0.2.10/32"));
  CHECK(rig.logged("repair after RTM_DELADDR 192.0.2.10/32 dev lo: add vip 192.0.2.10/32 dev lo"));
}

TEST_CASE("a whole nftables commit is repaired at once; one still being read, or an address, waits the debounce") {
  Rig rig("[agent]\nown_nft_table = false\n" + kOneVip);
  const nft::TableId arp = rules::arp_table_id();
  // Read up to its NEWGEN: nothing of that commit is left to come.
  const double t0 = rig.host.clock;
  rig.kernel.foreign_delete_elements(SetRef{arp, "vips"});
  rig.driver->drain_events();
  CHECK(rig.driver->next_timer() == doctest::Approx(t0).epsilon(1e-9));
  rig.driver->fire_due_timers(rig.host.clock);
  CHECK(rig.kernel_meets_policy());
  CHECK(rig.status().repairs_total == 1);

  // The read stopped inside a commit: the rest may follow within the debounce.
  rig.kernel.nftables_whole = false;
  rig.kernel.foreign_delete_elements(SetRef{arp, "vips"});
  rig.driver->drain_events();
  CHECK(rig.driver->next_timer() == doctest::Approx(t0 + 0.001).epsilon(1e-9));
  rig.settle();
  CHECK(rig.kernel_meets_policy());

  // An address of arpguard's, beside a whole commit: `ip addr flush` may be under way.
  rig.kernel.nftables_whole = true;
  const double t1 = rig.host.clock;
  rig.kernel.foreign_delete_address(address("192.0.2.10/32"));
  rig.kernel.foreign_delete_elements(SetRef{arp, "vips"});
  rig.driver->drain_events();
  CHECK(rig.driver->next_timer() == doctest::Approx(t1 + 0.001).epsilon(1e-9));
  rig.settle();
  CHECK(rig.kernel_meets_policy());
}

TEST_CASE("an element taken while the daemon adds VIPs: it is put back before the VIPs still to add go in") {
  // 600 VIPs, three windows. The element of a VIP of the first window goes
  // after that window was verified: the VIP goes in uncovered (no check can
  // close that gap). The other windows wait until the element is back.
  std::string body = "[agent]\nown_nft_table = false\n[arp]\nmethod = \"nftables\"\n";
  for (int i = 0; i < 600; ++i) body += fmt::format("[[vip]]\naddress = \"10.2.{}.{}\"\n", i / 100, 2 * (i % 100) + 1);
  Rig rig(body, /*start=*/false);
  const SetRef vips{rules::arp_table_id(), "vips"};
  bool taken = false;
  rig.kernel.after_write = [&](const std::string& what) {
    if (taken || what != "add address 10.2.0.1/32 dev lo") return;
    taken = true;
    rig.kernel.foreign_delete_element(vips, *IpAddress::parse("10.2.0.101"));
  };
  rig.boot();
  REQUIRE(taken);
  const std::vector<std::string>& writes = rig.kernel.writes;
  auto first = [&](const std::string& what) {
    return std::find(writes.begin(), writes.end(), what) - writes.begin();
  };
  const auto taken_vip_added = first("add address 10.2.0.101/32 dev lo");
  const auto third_window = first("add address 10.2.5.1/32 dev lo");
  REQUIRE(third_window < static_cast<long>(writes.size()));
  // An nft batch (the element put back) between the uncovered VIP and the third window.
  const auto repair = std::find(writes.begin() + taken_vip_added, writes.end(), "nft batch of 1") - writes.begin();
  CHECK(repair < third_window);
  CHECK(rig.kernel_meets_policy());
}

TEST_CASE("each kind of nft drift is repaired: element, rule, whole table") {
  Rig rig("[agent]\nown_nft_table = false\n" + kOneVip);
  const nft::TableId arp = rules::arp_table_id();
  rig.kernel.foreign_delete_elements(SetRef{arp, "vips"});
  rig.settle();
  CHECK(rig.kernel_meets_policy());
  const uint64_t handle = rig.kernel.world.tables.at(arp).rules.begin()->first;
  rig.kernel.foreign_delete_rule(arp, handle);
  rig.settle();
  CHECK(rig.kernel_meets_policy());
  rig.kernel.foreign_delete_table(arp);
  rig.settle();
  CHECK(rig.kernel_meets_policy());
  CHECK(rig.status().repairs_total == 3);
}

TEST_CASE("a table gone without a notification: the repair that finds it missing reads everything again") {
  // nftables frees an owner table with its owner's socket and tells nobody.
  // Before, every retry of the planned repair failed with ENOENT until the
  // periodic audit, minutes later.
  Rig rig("[agent]\nown_nft_table = false\n" + kOneVip);
  const nft::TableId arp = rules::arp_table_id();
  const uint64_t handle = rig.kernel.world.tables.at(arp).rules.begin()->first;
  rig.kernel.foreign_delete_rule(arp, handle);  // notified: the repair goes into the table...
  rig.kernel.vanish_table(arp);                 // ...that is gone by then, unannounced
  rig.settle();
  CHECK(rig.logged("not in the kernel though arpguard's cache holds it: full resync"));
  rig.advance(1);  // the failed repair's retry, now planned from what the kernel holds
  CHECK(rig.kernel_meets_policy());
}

TEST_CASE("a reset sysctl is seen at the next poll, or sooner by a readiness query, and repaired") {
  Rig rig(kOneVip);
  rig.kernel.foreign_set_sysctl({"all", kArpIgnore}, 0);
  rig.advance(1.1);  // no notification exists for sysctls: the poll finds it
  CHECK(rig.kernel.world.sysctls.at({"all", kArpIgnore}) == 1);
  CHECK(rig.logged("<5>repair after sysctl net.ipv4.conf.all.arp_ignore is 0, want 1"));

  // A query reads sysctls first: a drift it finds is repaired before the answer,
  // and when the repair fails the answer says so.
  rig.kernel.fail_always[Call::kSysctlWrite] = EROFS;
  rig.kernel.foreign_set_sysctl({"all", kArpIgnore}, 0);
  const ReadySummary now = rig.ready();
  CHECK_FALSE(now.ready);
  CHECK(has_reason(now.reasons, ReasonKind::kSysctlWrong));
  rig.kernel.fail_always.clear();
  rig.advance(1);
  CHECK(rig.ready().ready);
}

TEST_CASE("reading the kernel fails at start: not ready, naming the error; retried until it works") {
  Rig rig(kOneVip, /*start=*/false);
  rig.kernel.fail_next[Call::kLinks] = {EIO, EIO};
  rig.boot();
  const ReadySummary ready = rig.ready();
  CHECK_FALSE(ready.ready);
  CHECK(has_reason(ready.reasons, ReasonKind::kObserveFailed));
  CHECK(Rig::texts(ready.reasons).find("Input/output error") != std::string::npos);
  CHECK(rig.logged("<3>cannot read kernel state: RTM_GETLINK dump: Input/output error"));
  CHECK_FALSE(rig.has_address("192.0.2.10/32"));
  rig.advance(2.5);
  CHECK(rig.has_address("192.0.2.10/32"));
  CHECK(rig.ready().ready);
}

TEST_CASE("a sysctl write failing with EROFS: reported as failing, not a repair, VIP not added, retried") {
  Rig rig("[arp]\nmethod = \"sysctl\"\n" + kOneVip, /*start=*/false);
  rig.kernel.fail_always[Call::kSysctlWrite] = EROFS;
  rig.boot();
  CHECK_FALSE(rig.has_address("192.0.2.10/32"));  // I1: no VIP without its suppression
  const StatusSnapshot status = rig.status();
  CHECK(status.repairs_total == 0);
  CHECK(status.repair_failures_total >= 1);
  CHECK(status.contested.empty());  // nobody fought over it: it just cannot be written
  const ReadySummary ready = rig.ready();
  CHECK_FALSE(ready.ready);
  CHECK(has_reason(ready.reasons, ReasonKind::kRepairFailing));
  CHECK(Rig::texts(ready.reasons).find("cannot repair sysctl net.ipv4.conf.all.arp_ignore: write sysctl "
                                       "net.ipv4.conf.all.arp_ignore = 1: Read-only file system") != std::string::npos);
  const size_t writes = rig.kernel.writes.size();
  rig.advance(0.5);  // retried with backoff, not in a tight loop
  const uint64_t failures = rig.status().repair_failures_total;
  CHECK(failures > status.repair_failures_total);
  CHECK(failures < 10);
  CHECK(rig.kernel.writes.size() == writes);
  rig.kernel.fail_always.clear();
  rig.advance(30);
  CHECK(rig.has_address("192.0.2.10/32"));
  CHECK(rig.ready().ready);
  CHECK(rig.logged("sysctl net.ipv4.conf.all.arp_ignore repaired again"));
}

TEST_CASE("nft refusing the batch (EPERM) and the device gone (ENODEV): each named, each retried") {
  Rig rig(kOneVip, false);
  rig.kernel.fail_next[Call::kNftApply] = {EPERM};
  rig.boot();
  CHECK(rig.logged("<3>cannot repair nft table arp arpguard: nft batch: Operation not permitted"));
  CHECK_FALSE(rig.has_address("192.0.2.10/32"));
  rig.advance(1);
  CHECK(rig.has_address("192.0.2.10/32"));

  rig.kernel.foreign_delete_address(address("192.0.2.10/32"));
  rig.kernel.fail_next[Call::kRtnlAdd] = {ENODEV};
  rig.settle();
  CHECK(rig.logged("<3>cannot repair vip 192.0.2.10/32: RTM_NEWADDR 192.0.2.10/32: No such device"));
  rig.advance(1);
  CHECK(rig.has_address("192.0.2.10/32"));
}

TEST_CASE("lost events: everything is read again and repaired") {
  Rig rig(kOneVip);
  rig.kernel.foreign_delete_address(address("192.0.2.10/32"));
  rig.kernel.lose_events = true;  // the notification of that deletion is lost
  rig.settle();
  CHECK(rig.logged("kernel events were lost (socket overrun): full resync"));
  CHECK(rig.has_address("192.0.2.10/32"));
}

TEST_CASE("readiness fails closed: sysctls that cannot be read make it not ready, naming why") {
  Rig rig(kOneVip);
  CHECK(rig.ready().ready);
  rig.kernel.fail_always[Call::kSysctlRead] = EACCES;
  rig.advance(2.5);  // past a poll interval and the slack
  const ReadySummary ready = rig.ready();
  CHECK_FALSE(ready.ready);
  CHECK(Rig::texts(ready.reasons).find("Permission denied") != std::string::npos);
  rig.kernel.fail_always.clear();
  CHECK(rig.ready().ready);
}

TEST_CASE("draining alone is a drain; draining while broken is broken") {
  Rig rig(kOneVip);
  rig.driver->feed(input::Drain{true});
  CHECK(rig.host.drain_file);
  ReadySummary ready = rig.ready();
  CHECK_FALSE(ready.ready);
  CHECK(ready.only_draining);
  rig.kernel.fail_always[Call::kRtnlAdd] = EPERM;  // the VIP goes and cannot come back
  rig.kernel.foreign_delete_address(address("192.0.2.10/32"));
  rig.settle();
  ready = rig.ready();
  CHECK_FALSE(ready.only_draining);
  CHECK(has_reason(ready.reasons, ReasonKind::kVipMissing));
  rig.kernel.fail_always.clear();
  rig.driver->feed(input::Drain{false});
  rig.advance(1);
  CHECK(rig.ready().ready);
}

TEST_CASE("a resource undone again and again is contested, repaired with backoff, then calms down") {
  Rig rig("[agent]\ncontested_repairs = 3\ncontested_window_ms = 2000\n" + kOneVip);
  for (int i = 0; i < 12; ++i) {
    rig.kernel.foreign_delete_address(address("192.0.2.10/32"));
    rig.advance(0.1);
  }
  CHECK(rig.logged("<4>contested: vip 192.0.2.10/32 undone again and again"));
  CHECK(rig.logged("backing off"));
  CHECK(has_reason(rig.ready().reasons, ReasonKind::kContested));
  rig.advance(6);
  CHECK(rig.has_address("192.0.2.10/32"));
  CHECK(rig.ready().ready);
  CHECK(rig.logged("no longer contested: vip 192.0.2.10/32"));
}

TEST_CASE("a VIP at scope global under arp_ignore = 3 is replaced at scope host, suppression first") {
  Rig rig("[arp]\narp_ignore = 3\n" + kOneVip, false);
  rig.kernel.world.put_address(address("192.0.2.10/32"), AddressInfo{kScopeGlobal, kAddrFlagPermanent});
  rig.boot();
  REQUIRE(rig.kernel.world.addresses.count(address("192.0.2.10/32")));
  CHECK(rig.kernel.world.addresses.at(address("192.0.2.10/32")).scope == kScopeHost);
  const auto& w = rig.kernel.writes;
  const auto del = std::find(w.begin(), w.end(), "del address 192.0.2.10/32 dev lo");
  const auto sysctl = std::find(w.begin(), w.end(), "sysctl net.ipv4.conf.all.arp_ignore=3");
  const auto add = std::find(w.begin(), w.end(), "add address 192.0.2.10/32 dev lo");
  CHECK(del < sysctl);
  CHECK(sysctl < add);
  CHECK(rig.ready().ready);
}

TEST_CASE("IPv6 VIPs arpguard adds are not someone else's change, though the kernel names no sender for them") {
  // More than two windows of VIPs: a change by someone else would end the apply after the first.
  std::string policy;
  for (int i = 1; i <= 600; ++i) policy += fmt::format("[[vip]]\naddress = \"2001:db8:1::{:x}\"\n", i);
  Rig rig(policy);
  CHECK(rig.kernel_meets_policy());
  CHECK_FALSE(rig.logged("someone else changed arpguard's state"));
  CHECK_FALSE(rig.logged("repair after"));
  CHECK(rig.status().repairs_total == 0);
  CHECK(rig.ready().ready);

  // A reload that swaps them all for others: arpguard's removals are not someone else's either.
  std::string other;
  for (int i = 1; i <= 600; ++i) other += fmt::format("[[vip]]\naddress = \"2001:db8:2::{:x}\"\n", i);
  rig.driver->feed(input::Reload{parse_policy(other, "p.toml"), 5});
  rig.settle();
  for (int i = 1; i <= 600; ++i) {
    CHECK_FALSE(rig.kernel.world.addresses.count(address(fmt::format("2001:db8:1::{:x}/128", i).c_str())));
    CHECK(rig.kernel.world.addresses.count(address(fmt::format("2001:db8:2::{:x}/128", i).c_str())));
  }
  CHECK_FALSE(rig.logged("someone else changed arpguard's state"));
  CHECK_FALSE(rig.logged("repair after"));
  CHECK(rig.ready().ready);

  // Someone else's deletion of one still is.
  rig.kernel.foreign_delete_address(address("2001:db8:2::7/128"));
  rig.settle();
  CHECK(rig.kernel.world.addresses.count(address("2001:db8:2::7/128")));
  CHECK(rig.logged("repair after RTM_DELADDR 2001:db8:2::7/128 dev lo"));
}

TEST_CASE("an apply of thousands of VIPs lets the daemon answer queries between its windows, adding and removing") {
  std::string policy;
  for (int i = 0; i < 2000; ++i) policy += fmt::format("[[vip]]\naddress = \"10.64.{}.{}\"\n", i / 250, 1 + i % 250);
  Rig rig(policy);
  REQUIRE(rig.kernel_meets_policy());
  CHECK(rig.host.queries_served >= 2000 / 256);  // 8 windows of adds: 7 gaps between them
  const int after_start = rig.host.queries_served;
  rig.driver->feed(input::Reload{parse_policy("", "p.toml"), 3});
  rig.settle();
  CHECK_FALSE(rig.has_address("10.64.0.1/32"));
  CHECK(rig.host.queries_served - after_start >= 2000 / 256);  // and as many windows of removals
}

TEST_CASE("an address on lo before arpguard, named in the policy, is changed as a VIP needs but never taken as its own") {
  // An IPv6 one without the VIP's lifetimes, an IPv4 one at scope global under
  // arp_ignore = 3: both are changed in place, neither is recorded as arpguard's,
  // and a reload without them leaves them where they were (issue 9: removal
  // removes only what arpguard owns).
  const std::string vips = "[[vip]]\naddress = \"192.0.2.10\"\n[[vip]]\naddress = \"2001:db8::10\"\n";
  Rig rig("[arp]\narp_ignore = 3\n" + vips, false);
  rig.kernel.world.put_address(address("192.0.2.10/32"), AddressInfo{kScopeGlobal, kAddrFlagPermanent});
  rig.kernel.world.put_address(address("2001:db8::10/128"), AddressInfo{kScopeGlobal, kAddrFlagPermanent});
  rig.boot();
  REQUIRE(rig.kernel.world.addresses.count(address("192.0.2.10/32")));
  CHECK(rig.kernel.world.addresses.at(address("192.0.2.10/32")).scope == kScopeHost);
  REQUIRE(rig.kernel.world.addresses.count(address("2001:db8::10/128")));
  CHECK(rig.kernel.world.addresses.at(address("2001:db8::10/128")).deprecated());
  CHECK(rig.kernel.state_record.vips.empty());
  CHECK(rig.ready().ready);

  rig.driver->feed(input::Reload{parse_policy("[arp]\narp_ignore = 3\n", "p.toml"), 9});
  rig.settle();
  CHECK(rig.has_address("192.0.2.10/32"));
  CHECK(rig.kernel.world.addresses.count(address("2001:db8::10/128")));

  // One arpguard added itself is still its own, and goes.
  rig.driver->feed(input::Reload{parse_policy("[arp]\narp_ignore = 3\n" + vips + "[[vip]]\naddress = \"192.0.2.11\"\n", "p.toml"), 10});
  rig.settle();
  CHECK(rig.has_address("192.0.2.11/32"));
  CHECK(rig.kernel.state_record.vips.size() == 1);
  rig.driver->feed(input::Reload{parse_policy("[arp]\narp_ignore = 3\n", "p.toml"), 11});
  rig.settle();
  CHECK_FALSE(rig.has_address("192.0.2.11/32"));
  CHECK(rig.has_address("192.0.2.10/32"));
  CHECK(rig.kernel.world.addresses.count(address("2001:db8::10/128")));
}

TEST_CASE("reload: a bad policy is rejected with its errors and changes nothing; a good one answers when met") {
  Rig rig(kOneVip + "[[vip]]\naddress = \"192.0.2.11\"\n");
  PolicyResult bad = parse_policy("[[vip]]\naddress = \"192.0.2.12\"\nport = 80\n", "p.toml");
  rig.driver->feed(input::Reload{bad, 7});
  std::optional<ReloadReply> reply = rig.driver->take_reply(7);
  REQUIRE(reply);
  CHECK_FALSE(reply->accepted);
  CHECK(reply->errors == std::vector<std::string>{"p.toml:3:1: unknown key 'vip.port'"});
  CHECK(rig.has_address("192.0.2.11/32"));

  rig.driver->feed(input::Reload{parse_policy(kOneVip, "p.toml"), 8});
  reply = rig.driver->take_reply(8);
  REQUIRE(reply);
  CHECK(reply->accepted);
  CHECK(reply->converged);
  CHECK_FALSE(rig.has_address("192.0.2.11/32"));
  // I8: the VIP went first, its suppression only once it was gone.
  const ObservedSet& set = rig.kernel.world.tables.at(rules::arp_table_id()).sets.at("vips");
  CHECK(set.all_elements().size() == 1);
  CHECK(set.all_elements()[0].addresses.str() == "192.0.2.10");
}

TEST_CASE("a lost state record and a policy with no VIPs: a VIP still on lo keeps its suppression") {
  Rig rig(kOneVip);
  // arpguardd stops, its record is lost, and it starts again with a policy of no VIPs.
  rig.kernel.state_record = ManagedState{};
  rig.policy = policy_of("");
  rig.boot();
  CHECK(rig.has_address("192.0.2.10/32"));  // ownership unknown: kept
  REQUIRE(rig.kernel.world.tables.count(rules::arp_table_id()));
  CHECK(rig.kernel.world.tables.at(rules::arp_table_id()).sets.at("vips").size() == 1);
  CHECK(rig.kernel.world.sysctls.at({"all", kArpIgnore}) == 1);
}

TEST_CASE("stop with on_stop = remove: VIPs first, then tables, sysctls back to before; exit 0") {
  Rig rig("[agent]\non_stop = \"remove\"\n" + kEveryKind, false);
  rig.kernel.world.sysctls[{"all", kArpAnnounce}] = 1;
  rig.boot();
  rig.driver->feed(input::Stop{});
  rig.settle();
  REQUIRE(rig.driver->exit_code());
  CHECK(*rig.driver->exit_code() == 0);
  CHECK_FALSE(rig.has_address("192.0.2.10/32"));
  CHECK(rig.kernel.world.local_routes.empty());
  CHECK(rig.kernel.world.tables.empty());
  CHECK(rig.kernel.world.sysctls.at({"all", kArpIgnore}) == 0);
  CHECK(rig.kernel.world.sysctls.at({"all", kArpAnnounce}) == 1);
  // The record forgets what was restored: a later run takes the operator's values as they are then.
  CHECK(rig.kernel.state_record.vips.empty());
  CHECK(rig.kernel.state_record.sysctl_origin.empty());
  const auto& w = rig.kernel.writes;
  const auto last_vip = std::find(w.rbegin(), w.rend(), "del address 192.0.2.10/32 dev lo");
  const auto first_table = std::find(w.rbegin(), w.rend(), "nft batch of 3");
  CHECK(last_vip != w.rend());
  CHECK(first_table < last_vip);  // (reverse iterators: the table batch came later)
}

TEST_CASE("the policy checked against the kernel at start: a VIP that is eth0's own address exits 1") {
  Rig rig("[[vip]]\naddress = \"192.0.2.1\"\n");
  REQUIRE(rig.driver->exit_code());
  CHECK(*rig.driver->exit_code() == 1);
  CHECK(rig.logged("<3>p.toml:2:11: vip.address: 192.0.2.1 is the own address of eth0 (192.0.2.1/24), not a VIP"));
  CHECK(rig.kernel.writes.empty());
}

TEST_CASE("an unreadable state record: a warning, and protection as usual") {
  Rig rig(kOneVip, false);
  rig.kernel.fail_next[Call::kStateLoad] = {EACCES};
  rig.boot();
  CHECK(rig.logged("<4>the state record cannot be read"));
  CHECK(rig.has_address("192.0.2.10/32"));
  CHECK(rig.ready().ready);
}

TEST_CASE("the audit compares the event-fed cache with the kernel and counts differences") {
  Rig rig("[agent]\naudit_interval_ms = 1000\n" + kOneVip);
  CHECK(rig.status().audits_total == 0);
  rig.advance(1.1);
  CHECK(rig.status().audits_total == 1);
  CHECK(rig.status().cache_divergence_total == 0);
  // A change the kernel made without telling anyone (a lost notification).
  rig.kernel.world.remove_address(address("192.0.2.10/32"));
  rig.advance(1.1);
  CHECK(rig.status().audits_total == 2);
  CHECK(rig.status().cache_divergence_total == 1);
  CHECK(rig.has_address("192.0.2.10/32"));
}

TEST_CASE("an audit whose read the kernel changed under is not compared, and the change is repaired") {
  Rig rig("[agent]\naudit_interval_ms = 1000\n" + kOneVip);
  rig.advance(1.1);
  REQUIRE(rig.status().audits_total == 1);
  // A notification pending before the audit's read: folded in first, not a divergence.
  rig.kernel.foreign_delete_address(AddressKey{*IpAddress::parse("192.0.2.10"), 32, 1});
  // Another change while the read is under way (notified, but after the read began).
  rig.kernel.during_dump = [&] {
    rig.kernel.during_dump = nullptr;
    rig.kernel.foreign_add_address(AddressKey{*IpAddress::parse("198.51.100.9"), 32, 2},
                                   AddressInfo{kScopeGlobal, kAddrFlagPermanent});
  };
  rig.advance(1.1);
  CHECK(rig.status().cache_divergence_total == 0);
  CHECK(rig.status().audits_inconclusive_total == 1);
  CHECK(rig.has_address("192.0.2.10/32"));
  // The next audit, in quiet, is compared and finds the cache right.
  rig.advance(1.1);
  CHECK(rig.status().audits_total == 2);
  CHECK(rig.status().cache_divergence_total == 0);
}


TEST_CASE("an audit that cannot read the kernel (dumps interrupted by churn elsewhere) keeps the cache and readiness") {
  Rig rig("[agent]\naudit_interval_ms = 1000\n" + kOneVip);
  rig.advance(1.1);
  REQUIRE(rig.status().audits_total == 1);
  REQUIRE(rig.ready().ready);
  // Someone's burst of address changes interrupts every dump for a while.
  rig.kernel.fail_next[Call::kAddresses] = std::vector<int>(40, EINTR);
  rig.advance(1.1);
  CHECK(rig.ready().ready);
  CHECK(rig.status().audits_inconclusive_total == 1);
  CHECK(rig.status().audits_total == 1);
  CHECK(rig.logged("<5>audit: cannot read kernel state"));
  CHECK_FALSE(rig.logged("<3>cannot read kernel state"));
  // Drift meanwhile is still seen through the events and repaired.
  rig.kernel.foreign_delete_address(AddressKey{*IpAddress::parse("192.0.2.10"), 32, 1});
  rig.settle();
  CHECK(rig.has_address("192.0.2.10/32"));
  CHECK(rig.ready().ready);
  // Once the burst is over, the next audit (a second later: min(5 s, the interval)) reads and compares.
  rig.kernel.fail_next.clear();
  rig.advance(1.1);
  CHECK(rig.status().audits_total == 2);
  CHECK(rig.status().cache_divergence_total == 0);
}

TEST_CASE("events lost while an audit reads, and its read fails: no audit to shrug off, not ready until a read works") {
  Rig rig("[agent]\naudit_interval_ms = 1000\n" + kOneVip);
  REQUIRE(rig.ready().ready);
  Supervisor& supervisor = rig.supervisor();
  const double now = rig.host.clock;
  (void)supervisor.handle(input::Timer{TimerId::kAudit}, now);  // the audit's read begins
  input::Events lost;
  lost.lost = true;
  (void)supervisor.handle(std::move(lost), now);  // a loss noticed as it reads: the cache missed something
  (void)supervisor.handle(input::Observed{Error{"RTM_GETADDR dump", EINTR}, true}, now);
  const ReadySummary during = supervisor.ready_summary(now);
  CHECK_FALSE(during.ready);
  CHECK(has_reason(during.reasons, ReasonKind::kObserveFailed));
  CHECK(supervisor.snapshot(now, true).audits_inconclusive_total == 0);
  rig.advance(2);
  CHECK(rig.ready().ready);
}

// ---- arpguard apply's Verifier ----

namespace {

// One round of `arpguard apply`: observe, plan, apply with the read-back Verifier.
ApplyOutcome apply_once(FakeKernel& kernel, const Policy& policy) {
  Engine engine(kernel.apis());
  auto observed = engine.observe();
  REQUIRE(observed);
  const Desired desired = make_desired(policy, *observed, /*daemon=*/false);
  const Plan plan = Diff(desired, *observed);
  ReadBackVerifier verifier(kernel.apis(), desired);
  return engine.apply(plan, verifier);
}

bool on_lo(const FakeKernel& kernel, const char* address) {
  const IpAddress want = *IpAddress::parse(address);
  return std::any_of(kernel.world.addresses.begin(), kernel.world.addresses.end(),
                     [&](const auto& entry) { return entry.first.address == want && entry.first.link_index == 1; });
}

}  // namespace

TEST_CASE("apply's read-back: VIPs go in after their elements' transaction is acknowledged, never after a failed one") {
  const std::string two = "[arp]\nmethod = \"nftables\"\n" + kOneVip + "[[vip]]\naddress = \"192.0.2.12\"\n";
  const Policy policy = policy_of(two);

  SUBCASE("acknowledged: both added") {
    FakeKernel kernel;
    const ApplyOutcome outcome = apply_once(kernel, policy);
    CHECK(outcome.all_ok());
    CHECK(on_lo(kernel, "192.0.2.10"));
    CHECK(on_lo(kernel, "192.0.2.12"));
  }
  SUBCASE("the transaction fails: no VIP is added, and why is said") {
    FakeKernel kernel;
    kernel.fail_next[Call::kNftApply] = {EPERM};
    const ApplyOutcome outcome = apply_once(kernel, policy);
    CHECK_FALSE(outcome.blocked.empty());
    CHECK_FALSE(on_lo(kernel, "192.0.2.10"));
    CHECK_FALSE(on_lo(kernel, "192.0.2.12"));
  }
  SUBCASE("the table is there, the transaction adding the new VIP's element fails: that VIP stays out") {
    FakeKernel kernel;
    REQUIRE(apply_once(kernel, policy_of("[arp]\nmethod = \"nftables\"\n" + kOneVip)).all_ok());
    kernel.fail_next[Call::kNftApply] = {EPERM};
    const ApplyOutcome outcome = apply_once(kernel, policy);
    CHECK_FALSE(outcome.blocked.empty());
    CHECK_FALSE(on_lo(kernel, "192.0.2.12"));
  }
  SUBCASE("one VIP more: the elements seen before the plan and the new one together cover both") {
    FakeKernel kernel;
    REQUIRE(apply_once(kernel, policy_of("[arp]\nmethod = \"nftables\"\n" + kOneVip)).all_ok());
    const ApplyOutcome outcome = apply_once(kernel, policy);
    CHECK(outcome.all_ok());
    CHECK(on_lo(kernel, "192.0.2.12"));
  }
  SUBCASE("an element deleted by someone else after the plan's read: its VIP is held back, the other goes in") {
    const Policy both = policy_of("[arp]\nmethod = \"both\"\n" + kOneVip + "[[vip]]\naddress = \"192.0.2.12\"\n");
    FakeKernel kernel;
    REQUIRE(apply_once(kernel, both).all_ok());
    kernel.world.addresses.erase(AddressKey{*IpAddress::parse("192.0.2.10"), 32, 1});
    kernel.world.addresses.erase(AddressKey{*IpAddress::parse("192.0.2.12"), 32, 1});
    kernel.foreign_set_sysctl({"all", kArpIgnore}, 0);
    // Once the sysctl is written, after the plan read the set: 192.0.2.10's element goes.
    kernel.after_write = [&](const std::string&) {
      auto& points = kernel.world.tables.at(rules::arp_table_id()).sets.at("vips").points;
      points.erase({*IpAddress::parse("192.0.2.10"), true});
      points.erase({*IpAddress::parse("192.0.2.11"), false});
    };
    const ApplyOutcome outcome = apply_once(kernel, both);
    CHECK_FALSE(outcome.blocked.empty());
    CHECK_FALSE(on_lo(kernel, "192.0.2.10"));
    CHECK(on_lo(kernel, "192.0.2.12"));
  }
  SUBCASE("an element deleted while the VIPs go in: those after it are verified again, and its VIP is held back") {
    // 300 VIPs: two windows of additions. Once the first VIP is in, the
    // element of one in the second window goes.
    std::string body = "[arp]\nmethod = \"nftables\"\n";
    for (int i = 0; i < 300; ++i) body += fmt::format("[[vip]]\naddress = \"10.1.{}.{}\"\n", i / 100, 2 * (i % 100) + 1);
    const Policy many = policy_of(body);
    FakeKernel kernel;
    kernel.after_write = [&](const std::string& what) {
      if (what != "add address 10.1.0.1/32 dev lo") return;
      auto& points = kernel.world.tables.at(rules::arp_table_id()).sets.at("vips").points;
      points.erase({*IpAddress::parse("10.1.2.181"), true});
      points.erase({*IpAddress::parse("10.1.2.182"), false});
    };
    const ApplyOutcome outcome = apply_once(kernel, many);
    CHECK_FALSE(outcome.blocked.empty());
    CHECK(std::count(outcome.skipped.begin(), outcome.skipped.end(), true) == 1);
    CHECK_FALSE(on_lo(kernel, "10.1.2.181"));
    CHECK(on_lo(kernel, "10.1.2.179"));
    CHECK(on_lo(kernel, "10.1.0.1"));
  }
  SUBCASE("elements and a VIP gone behind its back: the elements go back in before the VIP") {
    FakeKernel kernel;
    REQUIRE(apply_once(kernel, policy).all_ok());
    // The table loses its elements and 192.0.2.12 behind arpguard's back, as if never seen.
    kernel.world.tables.at(rules::arp_table_id()).sets.at("vips").points.clear();
    kernel.world.addresses.erase(AddressKey{*IpAddress::parse("192.0.2.12"), 32, 1});
    const ApplyOutcome outcome = apply_once(kernel, policy);
    CHECK(outcome.all_ok());
    CHECK(on_lo(kernel, "192.0.2.12"));
  }
}

TEST_CASE("the new address VIPs are recorded as arpguard's before the first goes in; those not added are forgotten") {
  // A crash (kill -9) between two windows of additions must leave no VIP on
  // lo that the record does not own: a restart with a smaller policy would keep it.
  std::string body = "[arp]\nmethod = \"nftables\"\n";
  for (int i = 0; i < 300; ++i) body += fmt::format("[[vip]]\naddress = \"10.1.{}.{}\"\n", i / 100, 2 * (i % 100) + 1);
  FakeKernel kernel;
  size_t recorded_at_first_add = 0;
  kernel.after_write = [&](const std::string& what) {
    if (what != "add address 10.1.0.1/32 dev lo") return;
    recorded_at_first_add = kernel.state_record.vips.size();
    kernel.fail_next[Call::kRtnlAdd] = {ENODEV};  // the next one cannot go in
  };
  const ApplyOutcome outcome = apply_once(kernel, policy_of(body));
  CHECK(recorded_at_first_add == 300);
  CHECK(outcome.failures() == 1);
  CHECK(outcome.state.added.size() == 299);
  CHECK(kernel.state_record.vips.size() == 299);
  for (const ManagedVip& vip : kernel.state_record.vips) CHECK(on_lo(kernel, vip.prefix.address.str().c_str()));
}

TEST_CASE("a route VIP is known as arpguard's by its protocol, not the record; a reload without it removes it") {
  Rig rig(kOneVip + "[[vip]]\naddress = \"10.50.0.1\"\nas = \"route\"\n");
  REQUIRE(rig.kernel_meets_policy());
  CHECK(rig.kernel.state_record.vips.size() == 1);  // 192.0.2.10 alone: routes cost the record no line
  const RouteKey route{*IpPrefix::parse("10.50.0.1/32"), 0};
  REQUIRE(rig.kernel.world.local_routes.count(route));
  CHECK(rig.kernel.world.local_routes.at(route).protocol == kRouteProtoArpguard);
  rig.driver->feed(input::Reload{parse_policy(kOneVip, "p.toml"), 3});
  rig.settle();
  CHECK_FALSE(rig.kernel.world.local_routes.count(route));
  CHECK(rig.has_address("192.0.2.10/32"));
}

TEST_CASE("a recorded address that is on lo no more is forgotten at a full read; one added there later is not arpguard's") {
  // What a kill -9 between recording a VIP and adding it (or between deleting
  // one and forgetting it) leaves behind.
  Rig rig(kOneVip, false);
  rig.kernel.state_record.vips.insert(ManagedVip{*IpPrefix::parse("192.0.2.50/32"), VipKind::kAddress, "lo"});
  rig.kernel.state_record.vips.insert(ManagedVip{*IpPrefix::parse("192.0.2.51/32"), VipKind::kAddress, "lo"});
  rig.kernel.world.put_address(address("192.0.2.51/32"), AddressInfo{kScopeHost, kAddrFlagPermanent});
  rig.boot();
  CHECK(rig.kernel.state_record.vips.count(ManagedVip{*IpPrefix::parse("192.0.2.50/32"), VipKind::kAddress, "lo"}) == 0);
  CHECK_FALSE(rig.has_address("192.0.2.51/32"));  // present and recorded: arpguard's, and not in the policy
  rig.kernel.foreign_add_address(address("192.0.2.50/32"), AddressInfo{kScopeHost, kAddrFlagPermanent});
  rig.settle();
  CHECK(rig.has_address("192.0.2.50/32"));
}

TEST_CASE("a state record that cannot be written: VIPs still go in, status warns until a write succeeds") {
  Rig rig(kOneVip, /*start=*/false);
  rig.kernel.fail_always[Call::kStateRecord] = EROFS;
  rig.boot();
  CHECK(rig.has_address("192.0.2.10/32"));  // protection does not hang on the record
  StatusSnapshot status = rig.status();
  CHECK(status.ready);
  const auto unrecorded = [](const StatusSnapshot& s) {
    return std::find_if(s.reasons.begin(), s.reasons.end(),
                        [](const Reason& r) { return r.kind == ReasonKind::kStateUnrecorded; });
  };
  REQUIRE(unrecorded(status) != status.reasons.end());
  CHECK(unrecorded(status)->severity == Severity::kWarning);
  CHECK(unrecorded(status)->text.find("Read-only file system") != std::string::npos);
  CHECK(status_exit_code(status) == 1);
  CHECK(render_metrics(status).find("\narpguard_state_record_ok 0\n") != std::string::npos);

  // A full read finds the record still unwritten: the warning stays.
  rig.kernel.fail_always.clear();
  rig.driver->feed(input::Reload{parse_policy(kOneVip, "p.toml"), 5});
  rig.settle();
  CHECK(unrecorded(rig.status()) != rig.status().reasons.end());

  // The next write that goes through ends it.
  rig.driver->feed(input::Reload{parse_policy(kOneVip + "[[vip]]\naddress = \"192.0.2.11\"\n", "p.toml"), 6});
  rig.settle();
  CHECK(rig.has_address("192.0.2.11/32"));
  CHECK(rig.kernel.state_record.vips.size() == 1);  // the fake keeps only what it was given after the failure
  status = rig.status();
  CHECK(unrecorded(status) == status.reasons.end());
  CHECK(render_metrics(status).find("\narpguard_state_record_ok 1\n") != std::string::npos);
}

TEST_CASE("a commit unheard while arpguard's own big commit was muted: said so, and everything read again") {
  Rig rig(kOneVip);
  input::Events in;
  in.unheard = true;
  rig.driver->feed(std::move(in));
  rig.settle();
  CHECK(rig.logged("another process committed to nftables during one of arpguard's own big commits, unheard: "
                   "full resync"));
  CHECK_FALSE(rig.logged("socket overrun"));
  // The read happened, found nothing to repair: still ready.
  CHECK(rig.ready().ready);
}
