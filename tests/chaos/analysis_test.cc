// The chaos test's own judges, on fixed inputs: what "meets the policy" means
// for captured `ip -j` / `nft -j` output, which frames are VIP claims, and
// how stale a "ready" is. A judge that cannot fail would let the chaos pass.
#include <doctest/doctest.h>

#include "tests/chaos/timeline.h"
#include "tests/chaos/wire.h"

using namespace arpguard::chaos;

namespace {

ExpectedPolicy policy_a() {
  return {"A", {"192.0.2.10", "192.0.2.11"}, {"2001:db8::10"}, {"10.100.0.0/24"}, "192.0.2.30", {80}, {{8080, 18080}}};
}

const char* const kAddresses = R"([
 {"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8},
   {"family":"inet","local":"192.0.2.10","prefixlen":32},{"family":"inet","local":"192.0.2.11","prefixlen":32},
   {"family":"inet6","local":"2001:db8::10","prefixlen":128,"deprecated":true}]},
 {"ifname":"eth0","addr_info":[{"family":"inet","local":"192.0.2.1","prefixlen":24}]}])";
const char* const kRoutes = R"([{"type":"local","dst":"10.100.0.0/24","dev":"lo","protocol":"247"},
 {"type":"local","dst":"192.0.2.10","dev":"lo","protocol":"kernel"}])";

// The ruleset arpguardd made for policy A, as nft 1.0.6 lists it (counters dropped).
std::string ruleset(const std::string& arp_elements = R"([{"prefix":{"addr":"10.100.0.0","len":24}},{"prefix":{"addr":"192.0.2.10","len":31}}])") {
  return R"({"nftables":[{"metainfo":{}},
 {"table":{"family":"arp","name":"arpguard"}},
 {"set":{"family":"arp","name":"vips","table":"arpguard","type":"ipv4_addr","flags":["interval"],"elem":)" + arp_elements + R"(}},
 {"chain":{"family":"arp","table":"arpguard","name":"input","hook":"input"}},
 {"chain":{"family":"arp","table":"arpguard","name":"output","hook":"output"}},
 {"rule":{"family":"arp","table":"arpguard","chain":"input","handle":4,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"arp","field":"operation"}},"right":"request"}},{"match":{"op":"==","left":{"payload":{"protocol":"arp","field":"daddr ip"}},"right":"@vips"}},{"counter":null},{"drop":null}]}},
 {"rule":{"family":"arp","table":"arpguard","chain":"output","handle":5,"expr":[{"match":{"op":"==","left":{"meta":{"key":"oifname"}},"right":"eth0"}},{"match":{"op":"==","left":{"payload":{"protocol":"arp","field":"saddr ip"}},"right":"@vips"}},{"counter":null},{"mangle":{"key":{"payload":{"protocol":"arp","field":"saddr ip"}},"value":"192.0.2.1"}}]}},
 {"table":{"family":"ip6","name":"arpguard"}},
 {"set":{"family":"ip6","name":"vips","table":"arpguard","type":"ipv6_addr","flags":["interval"],"elem":["2001:db8::10"]}},
 {"chain":{"family":"ip6","table":"arpguard","name":"input","hook":"input"}},
 {"chain":{"family":"ip6","table":"arpguard","name":"output","hook":"output"}},
 {"rule":{"family":"ip6","table":"arpguard","chain":"input","expr":[{"match":{"op":"==","left":{"payload":{"protocol":"icmpv6","field":"type"}},"right":"nd-neighbor-solicit"}},{"match":{"op":"==","left":{"payload":{"base":"th","offset":64,"len":128}},"right":"@vips"}},{"drop":null}]}},
 {"rule":{"family":"ip6","table":"arpguard","chain":"output","expr":[{"match":{"op":"==","left":{"payload":{"protocol":"icmpv6","field":"type"}},"right":"nd-neighbor-advert"}},{"match":{"op":"==","left":{"payload":{"base":"th","offset":64,"len":128}},"right":"@vips"}},{"drop":null}]}},
 {"table":{"family":"ip","name":"arpguard_nat"}},
 {"set":{"family":"ip","name":"keep","table":"arpguard_nat","flags":["interval"],"elem":[{"concat":["192.0.2.30","tcp",80]}]}},
 {"map":{"family":"ip","name":"to","table":"arpguard_nat","flags":["interval"],"elem":[[{"concat":["192.0.2.30","tcp",8080]},18080]]}},
 {"chain":{"family":"ip","table":"arpguard_nat","name":"prerouting","hook":"prerouting"}},
 {"rule":{"family":"ip","table":"arpguard_nat","chain":"prerouting","expr":[{"match":{"op":"==","left":{"concat":[]},"right":"@keep"}},{"redirect":null}]}},
 {"rule":{"family":"ip","table":"arpguard_nat","chain":"prerouting","expr":[{"match":{"op":"==","left":{"meta":{"key":"l4proto"}},"right":"tcp"}},{"redirect":{"port":{"map":{"data":"@to"}}}}]}},
 {"rule":{"family":"ip","table":"arpguard_nat","chain":"prerouting","expr":[{"match":{"op":"==","left":{"meta":{"key":"l4proto"}},"right":"udp"}},{"redirect":{"port":{"map":{"data":"@to"}}}}]}}
]})";
}

std::map<std::string, int> good_sysctls() {
  return {{"all/arp_ignore", 1}, {"all/arp_announce", 2}, {"eth0/arp_ignore", 0}, {"eth0/arp_announce", 0}};
}

}  // namespace

TEST_CASE("judge: the state arpguardd makes for policy A meets it, and each kind of drift is a typed gap") {
  const ExpectedPolicy a = policy_a();
  const Universe u = Universe::of({a});
  const KernelFacts good = KernelFacts::parse(kAddresses, kRoutes, ruleset(), good_sysctls());
  REQUIRE(good.read_error.empty());
  CHECK(evaluate(good, a, u).met);
  CHECK(layers(good, u).sysctl_ok);
  CHECK(layers(good, u).nft_ok);

  auto sysctls = good_sysctls();
  sysctls["all/arp_ignore"] = 0;
  const KernelFacts no_ignore = KernelFacts::parse(kAddresses, kRoutes, ruleset(), sysctls);
  CHECK(evaluate(no_ignore, a, u).has(Gap::kSysctl));
  CHECK_FALSE(layers(no_ignore, u).sysctl_ok);
  CHECK(layers(no_ignore, u).nft_ok);

  // 192.0.2.11 gone from the set (the /31 became .10 alone): the VIP on lo is unsuppressed.
  const KernelFacts no_element = KernelFacts::parse(kAddresses, kRoutes, ruleset(R"([{"prefix":{"addr":"10.100.0.0","len":24}},"192.0.2.10"])"), good_sysctls());
  const Verdict v = evaluate(no_element, a, u);
  CHECK(v.has(Gap::kNftArp));
  CHECK(v.has(Gap::kUnsuppressed));
  CHECK_FALSE(layers(no_element, u).nft_ok);

  const KernelFacts no_route = KernelFacts::parse(kAddresses, "[]", ruleset(), good_sysctls());
  CHECK(evaluate(no_route, a, u).has(Gap::kRoute));

  std::string on_eth0 = kAddresses;
  const std::string primary = R"("local":"192.0.2.1","prefixlen":24})";
  on_eth0.replace(on_eth0.find(primary), primary.size(), primary + R"(,{"family":"inet","local":"192.0.2.11","prefixlen":32})");
  const KernelFacts misplaced = KernelFacts::parse(on_eth0, kRoutes, ruleset(), good_sysctls());
  CHECK(evaluate(misplaced, a, u).has(Gap::kMisplaced));
  CHECK(layers(misplaced, u).misplaced);
  CHECK_FALSE(layers(misplaced, u).sysctl_ok);

  const KernelFacts flushed = KernelFacts::parse(kAddresses, kRoutes, R"({"nftables":[{"metainfo":{}}]})", good_sysctls());
  const Verdict f = evaluate(flushed, a, u);
  CHECK(f.has(Gap::kNftArp));
  CHECK(f.has(Gap::kNftIp6));
  CHECK(f.has(Gap::kNftNat));
}

TEST_CASE("judge: set elements as nft writes them, back in nft syntax") {
  CHECK(nft_element_text(nlohmann::json::parse(R"({"prefix":{"addr":"192.0.2.10","len":31}})")) == "192.0.2.10/31");
  CHECK(nft_element_text(nlohmann::json::parse(R"({"range":["192.0.2.10","192.0.2.12"]})")) == "192.0.2.10-192.0.2.12");
  CHECK(nft_element_text(nlohmann::json::parse(R"({"concat":["192.0.2.30","tcp",80]})")) == "192.0.2.30 . tcp . 80");
  CHECK(Range::parse("192.0.2.10-192.0.2.12")->contains(*Addr::parse("192.0.2.12")));
  CHECK_FALSE(Range::parse("192.0.2.10/31")->contains(*Addr::parse("192.0.2.12")));
  CHECK(Range::parse("2001:db8::/64")->contains(*Range::parse("2001:db8::10")));
}

TEST_CASE("wire: frames tcpdump printed for an unguarded VIP are claims") {
  // Captured from namespaces with 192.0.2.10 on lo, 2001:db8::10 on eth0, no arpguard.
  WireExpectations e{"02:00:00:00:00:01", "192.0.2.1", "2001:db8:f::1", {*Range::parse("192.0.2.10")},
                     {*Range::parse("2001:db8::10")}};
  const WireReport r = judge_wire(
      {"1795354475.446654 02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype ARP (0x0806), length 42: Reply 192.0.2.10 is-at 02:00:00:00:00:01, length 28",
       "1795354476.484375 02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv6 (0x86dd), length 86: 2001:db8::10 > fe80::ff:fe00:2: ICMP6, neighbor advertisement, tgt is 2001:db8::10, length 32",
       "1795354476.554545 02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 58: Request who-has 192.0.2.10 (ff:ff:ff:ff:ff:ff) tell 192.0.2.10, length 44"},
      e);
  REQUIRE(r.leaks.size() == 3);
  CHECK(r.leaks[0].first.time == doctest::Approx(1795354475.446654));
  CHECK(r.leaks[2].second == "gratuitous ARP for VIP 192.0.2.10");
}

TEST_CASE("wire: claims for a VIP are told from asking, revealing and the server's own answers") {
  WireExpectations e{"02:00:00:00:00:01", "192.0.2.1", "2001:db8:f::1",
                     {*Range::parse("192.0.2.10"), *Range::parse("10.100.0.0/24")}, {*Range::parse("2001:db8::10")}};
  const std::vector<std::string> lines = {
      "1.000001 02:00:00:00:00:02 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 192.0.2.10 tell 192.0.2.2, length 28",
      "1.000002 02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype ARP (0x0806), length 42: Reply 192.0.2.1 is-at 02:00:00:00:00:01, length 28",
      "1.000003 02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype ARP (0x0806), length 42: Reply 10.100.0.77 is-at 02:00:00:00:00:01, length 28",
      "1.000004 02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 192.0.2.2 (02:00:00:00:00:02) tell 192.0.2.10, length 28",
      "1.000005 02:00:00:00:00:01 > 33:33:00:00:00:01, ethertype IPv6 (0x86dd), length 86: fe80::1 > fe80::2: ICMP6, neighbor advertisement, tgt is 2001:db8::10, length 32",
      "1.000006 02:00:00:00:00:01 > 33:33:ff:00:00:10, ethertype IPv6 (0x86dd), length 78: :: > ff02::1:ff00:10: ICMP6, neighbor solicitation, who has 2001:db8::10, length 24",
      "1.000007 02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv6 (0x86dd), length 86: 2001:db8:f::1 > 2001:db8:f::2: ICMP6, neighbor advertisement, tgt is 2001:db8:f::1, length 32",
      "1.000008 02:00:00:00:00:01 > 33:33:ff:00:00:02, ethertype IPv6 (0x86dd), length 86: 2001:db8::10 > ff02::1:ff00:2: ICMP6, neighbor solicitation, who has 2001:db8:f::2, length 32",
      "1.000009 02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Announcement 192.0.2.10, length 28",
  };
  const WireReport r = judge_wire(lines, e);
  CHECK(r.frames == 9);
  CHECK(r.asked.at("192.0.2.10") == 1);
  CHECK(r.normal_arp_replies == 1);
  CHECK(r.normal_neighbor_adverts == 1);
  REQUIRE(r.leaks.size() == 5);
  CHECK(r.leaks[0].second == "ARP reply for VIP 10.100.0.77");
  CHECK(r.leaks[1].second == "ARP request with VIP sender 192.0.2.10");
  CHECK(r.leaks[2].second == "neighbour advertisement for VIP 2001:db8::10");
  CHECK(r.leaks[3].second == "neighbour solicitation from VIP 2001:db8::10");
  CHECK(r.leaks[4].second == "ARP announcement of VIP 192.0.2.10");
  REQUIRE(r.revealing.size() == 1);
  CHECK(r.revealing[0].second == "duplicate address detection probe for VIP 2001:db8::10");
}

namespace {

KernelSample sample(double start, bool sysctl_gap) {
  KernelSample s;
  s.start = start;
  s.end = start + 0.015;
  s.ok = true;
  Verdict v;
  if (sysctl_gap) v.gaps.emplace_back(Gap::kSysctl, "arp_ignore 0");
  v.met = v.gaps.empty();
  s.verdicts = {v, v};
  return s;
}

}  // namespace

TEST_CASE("timeline: a ready during a long unmet streak is stale; a gap caused anew is a new streak") {
  std::vector<KernelSample> samples;
  for (int i = 0; i < 100; ++i) samples.push_back(sample(i * 0.02, i >= 10 && i < 90));  // unmet over [0.2, 1.8)
  const UnmetStreaks plain = unmet_streaks(samples, {}, 0, {});
  REQUIRE(plain.by_gap[static_cast<size_t>(Gap::kSysctl)].size() == 1);
  const Staleness s = attributable_staleness(plain, 1.5, 1.502);
  CHECK(s.age == doctest::Approx(1.5 - 0.215));
  CHECK(s.gap == static_cast<int>(Gap::kSysctl));
  CHECK(attributable_staleness(plain, 1.9, 1.902).age == 0);  // met again by then
  CHECK(literal_staleness(plain, 1.5, 1.502).age == doctest::Approx(1.5 - 0.215));

  // A sysctl drift at 1.0 may have broken it anew after a repair the sampler missed.
  DriftSpan d{1.0, 1.005, {}};
  d.causes.set(static_cast<size_t>(Gap::kSysctl));
  const UnmetStreaks split = unmet_streaks(samples, {}, 0, {d});
  CHECK(split.by_gap[static_cast<size_t>(Gap::kSysctl)].size() >= 2);  // the sample read during the drift stands alone
  CHECK(attributable_staleness(split, 1.5, 1.502).age < 0.5);
  CHECK(literal_staleness(split, 1.5, 1.502).age == doctest::Approx(1.5 - 0.215));

  // An unreadable sample may hide a met moment.
  samples[50].ok = false;
  CHECK(attributable_staleness(unmet_streaks(samples, {}, 0, {}), 1.5, 1.502).age < 0.6);
}

TEST_CASE("timeline: during a reload either policy may be in force, after it only the new one") {
  const std::vector<ReloadEvent> reloads = {{10, 10.5, 0, 1}, {20, 20.1, 1, 0}};
  CHECK(policies_during(reloads, 0, 1, 2) == std::set<int>{0});
  CHECK(policies_during(reloads, 0, 10.2, 10.3) == std::set<int>{0, 1});
  CHECK(policies_during(reloads, 0, 11, 12) == std::set<int>{1});
  CHECK(policies_during(reloads, 0, 19, 25) == std::set<int>{0, 1});
  CHECK(policies_during(reloads, 0, 30, 31) == std::set<int>{0});
}
