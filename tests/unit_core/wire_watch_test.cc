// WireWatch: who claims a VIP on the segment, as the frames the log rules
// hand over say; learning the director; leaks; the probe limits. Pure.
#include <doctest/doctest.h>

#include <optional>
#include <set>

#include "core/wire_watch.h"

namespace arpguard {
namespace {

const IpPrefix kVip = *IpPrefix::parse("192.0.2.80/32");
const IpPrefix kVip6 = *IpPrefix::parse("2001:db8::80/128");
const MacAddress kDirector = *MacAddress::parse("02:00:00:00:00:02");
const MacAddress kRogue = *MacAddress::parse("02:00:00:00:00:13");
const MacAddress kOwn = *MacAddress::parse("02:00:00:00:00:11");
const std::set<MacAddress> kOwnMacs{kOwn};

WireFrame frame(WatchRule rule, const IpPrefix& vip, const MacAddress& mac) {
  WireFrame f;
  f.rule = rule;
  f.kind = vip.family() == Family::kV4 ? FrameKind::kArpReply : FrameKind::kNeighbourAdvertisement;
  f.ifindex = 2;
  f.vip = vip.address;
  f.mac = mac;
  return f;
}

std::optional<IpPrefix> vip_of(const IpAddress& a) {
  for (const IpPrefix& p : {kVip, kVip6}) {
    if (p.contains(a)) return p;
  }
  return std::nullopt;
}

WireWatch::Seen see(WireWatch& w, std::vector<WireFrame> frames, double now) {
  return w.observe(frames, kOwnMacs, vip_of, now);
}

ClaimOrigin origin_of(const WireWatch& w, const IpPrefix& vip, const MacAddress& mac) {
  auto it = w.claims().find({vip, mac});
  REQUIRE(it != w.claims().end());
  return it->second.origin;
}

}  // namespace

TEST_CASE("wire watch: with director_macs, the director is expected and anyone else is another host") {
  WireWatch w({kDirector});
  const WireWatch::Seen seen = see(w, {frame(WatchRule::kClaim, kVip, kDirector), frame(WatchRule::kClaim, kVip, kRogue)}, 10);
  REQUIRE(seen.new_claimants.size() == 2);
  CHECK(origin_of(w, kVip, kDirector) == ClaimOrigin::kDirector);
  CHECK(origin_of(w, kVip, kRogue) == ClaimOrigin::kOther);
  REQUIRE(w.others_claiming(kVip, 10).size() == 1);
  CHECK(w.others_claiming(kVip, 10)[0]->mac == kRogue);
  CHECK(w.learned_directors().empty());
  // The claim is a warning for kClaimHold after it was last seen, then forgotten by readiness.
  CHECK(w.others_claiming(kVip, 10 + WireWatch::kClaimHold - 1).size() == 1);
  CHECK(w.others_claiming(kVip, 10 + WireWatch::kClaimHold + 1).empty());
}

TEST_CASE("wire watch: without director_macs, the only claimant for kLearnWindow is learned; a later one is another host") {
  WireWatch w;
  see(w, {frame(WatchRule::kClaim, kVip, kDirector)}, 100);
  CHECK(w.learned_directors() == std::set<MacAddress>{kDirector});
  see(w, {frame(WatchRule::kClaim, kVip6, kDirector)}, 100.5);
  const WireWatch::Seen later = see(w, {frame(WatchRule::kClaim, kVip, kRogue)}, 100 + WireWatch::kLearnWindow + 0.1);
  CHECK(later.ambiguous.empty());
  CHECK(origin_of(w, kVip, kDirector) == ClaimOrigin::kDirector);
  CHECK(origin_of(w, kVip6, kDirector) == ClaimOrigin::kDirector);
  CHECK(origin_of(w, kVip, kRogue) == ClaimOrigin::kOther);
  CHECK(w.learned_directors() == std::set<MacAddress>{kDirector});
}

TEST_CASE("wire watch: two MACs claiming within the learning window: neither is taken for the director") {
  WireWatch w;
  // Whoever answers first (here the rogue) must not become "the director".
  see(w, {frame(WatchRule::kClaim, kVip, kRogue)}, 100);
  const WireWatch::Seen seen = see(w, {frame(WatchRule::kClaim, kVip, kDirector)}, 100.01);
  CHECK(seen.ambiguous == std::vector<MacAddress>{kRogue, kDirector});
  CHECK(origin_of(w, kVip, kRogue) == ClaimOrigin::kOther);
  CHECK(origin_of(w, kVip, kDirector) == ClaimOrigin::kOther);
  CHECK(w.learned_directors().empty());
  // And it stays undecided: a third MAC much later is another host too.
  see(w, {frame(WatchRule::kClaim, kVip6, *MacAddress::parse("02:00:00:00:00:99"))}, 500);
  CHECK(w.others_claiming(kVip6, 500).size() == 1);
}

TEST_CASE("wire watch: a frame from this host's own MAC, or a leak rule's, is a leak held kLeakHold") {
  WireWatch w({kDirector});
  const WireWatch::Seen seen = see(w, {frame(WatchRule::kClaim, kVip, kOwn)}, 50);
  CHECK(seen.leaked == std::vector<IpPrefix>{kVip});
  CHECK(w.leaked(kVip, 50 + WireWatch::kLeakHold - 0.5));
  CHECK_FALSE(w.leaked(kVip, 50 + WireWatch::kLeakHold + 0.5));
  CHECK_FALSE(w.leaked(kVip6, 50));
  const WireWatch::Seen out = see(w, {frame(WatchRule::kLeak, kVip6, kDirector)}, 60);
  CHECK(out.leaked == std::vector<IpPrefix>{kVip6});
  CHECK(w.leaks_total() == 2);
}

TEST_CASE("wire watch: frames for no VIP are counted and ignored") {
  WireWatch w;
  WireFrame stray = frame(WatchRule::kClaim, kVip, kRogue);
  stray.vip = *IpAddress::parse("192.0.2.99");
  const WireWatch::Seen seen = see(w, {stray}, 1);
  CHECK(seen.ignored == 1);
  CHECK(w.claims().empty());
  CHECK(w.learned_directors().empty());
}

TEST_CASE("wire watch: someone asking for a VIP makes one probe per VIP per cooldown, within the token bucket") {
  WireWatch w({kDirector});
  const WireFrame ask = frame(WatchRule::kAsk, kVip, *MacAddress::parse("02:00:00:00:00:64"));
  CHECK(see(w, {ask}, 10).probes == std::vector<ProbeRequest>{{2, kVip.address}});
  CHECK(see(w, {ask, ask, ask}, 10.5).probes.empty());
  CHECK(see(w, {ask}, 10 + WireWatch::kProbeCooldown + 0.01).probes.size() == 1);
  // This host's own question is not a reason to ask again.
  CHECK(see(w, {frame(WatchRule::kAsk, kVip6, kOwn)}, 20).probes.empty());
  // Many questions for one VIP at one instant make one probe.
  WireWatch many({kDirector});
  size_t probes = 0;
  for (int i = 0; i < 200; ++i) {
    WireFrame f = ask;
    f.vip = kVip.address;
    probes += many.observe({f}, kOwnMacs, [&](const IpAddress&) { return std::optional<IpPrefix>(kVip); }, 100).probes.size();
  }
  CHECK(probes == 1);
  CHECK(many.probes_sent() == 1);
}

TEST_CASE("wire watch: memory is bounded at kMaxClaims, the least recently seen forgotten first") {
  WireWatch w({kDirector});
  for (size_t i = 0; i < WireWatch::kMaxClaims + 10; ++i) {
    MacAddress mac;
    mac.bytes = {0x02, 0, 0, static_cast<uint8_t>(i >> 16), static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)};
    see(w, {frame(WatchRule::kClaim, kVip, mac)}, static_cast<double>(i));
  }
  CHECK(w.claims().size() == WireWatch::kMaxClaims);
  MacAddress first;
  first.bytes = {0x02, 0, 0, 0, 0, 0};
  CHECK(w.claims().count({kVip, first}) == 0);
}

}  // namespace arpguard
