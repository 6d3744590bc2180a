// Readiness as typed reasons: a converged kernel is ready, and each single
// fault makes exactly its own ReasonKind appear; and the check the Engine
// makes before adding VIPs (I1), per VIP.
#include <doctest/doctest.h>

#include "core/engine.h"
#include "core/readiness.h"
#include "rules/tables.h"
#include "world.h"

using namespace arpguard;
using namespace arpguard::world;

namespace doctest {

template <>
struct StringMaker<std::vector<Reason>> {
  static String convert(const std::vector<Reason>& reasons) {
    std::string out = "{";
    for (const Reason& r : reasons) {
      out += "\n    [" + std::to_string(static_cast<int>(r.kind)) +
             (r.severity == Severity::kWarning ? " warning] " : " not ready] ") + r.text;
    }
    return String((out + (reasons.empty() ? "}" : "\n  }")).c_str());
  }
};

}  // namespace doctest

namespace {

const std::string kPolicy = vip("192.0.2.10") + vip("2001:db8::10") + vip("10.100.0.0/24") +
                            vip("192.0.2.30", "method = \"redirect\"\nports = [\"tcp:80\"]\n");

struct Kind {
  ReasonKind kind;
  Severity severity;
  bool operator==(const Kind&) const = default;
};

std::vector<Kind> kinds(const std::vector<Reason>& reasons) {
  std::vector<Kind> out;
  for (const Reason& r : reasons) out.push_back({r.kind, r.severity});
  return out;
}

constexpr Severity kNo = Severity::kNotReady;
constexpr Severity kWarn = Severity::kWarning;

// A converged machine, the Desired it converged to, and fresh inputs.
struct Server {
  Policy policy;
  Observed observed;
  Desired desired;
  ReadinessInputs inputs = fresh_inputs();

  static ReadinessInputs fresh_inputs() {
    ReadinessInputs in;
    in.fresh = true;
    return in;
  }

  explicit Server(const std::string& text = kPolicy)
      : policy(policy_of(text)), observed(converged(policy)), desired(desired_of(policy, observed)) {}

  const DesiredVip& bound(std::string_view p) const {
    for (const DesiredVip& v : desired.vips.bound) {
      if (v.prefix == prefix(p)) return v;
    }
    FAIL("no bound VIP " << p);
    return desired.vips.bound.front();
  }
  std::vector<Reason> vip(std::string_view p) const { return vip_reasons(desired, observed, inputs, bound(p)); }
  std::vector<Reason> redirect(std::string_view p) const { return redirect_reasons(desired, observed, inputs, prefix(p)); }
  std::vector<Reason> server() const { return server_reasons(desired, observed, inputs); }
};

}  // namespace

TEST_CASE("a converged server is ready, and so is each of its VIPs") {
  const Server s;
  CHECK(s.server() == std::vector<Reason>{});
  for (const char* p : {"192.0.2.10/32", "2001:db8::10/128", "10.100.0.0/24"}) {
    CAPTURE(p);
    CHECK(s.vip(p) == std::vector<Reason>{});
  }
  CHECK(s.redirect("192.0.2.30/32") == std::vector<Reason>{});
}

TEST_CASE("each fault of one VIP is its own typed reason, and touches no other VIP") {
  Server s;
  SUBCASE("missing on lo") {
    remove_address(s.observed, prefix("192.0.2.10/32"), kLo);
    CHECK(s.vip("192.0.2.10/32") == std::vector<Reason>{not_ready(ReasonKind::kVipMissing, "vip 192.0.2.10/32 missing on lo")});
    CHECK(s.vip("2001:db8::10/128").empty());
  }
  SUBCASE("a route VIP's route missing") {
    s.observed.local_routes.erase(RouteKey{prefix("10.100.0.0/24"), 0});
    CHECK(kinds(s.vip("10.100.0.0/24")) == std::vector<Kind>{{ReasonKind::kVipMissing, kNo}});
  }
  SUBCASE("IPv6 VIP preferred as a source") {
    add_address(s.observed, prefix("2001:db8::10/128"), kLo, kScopeGlobal, false);
    CHECK(kinds(s.vip("2001:db8::10/128")) == std::vector<Kind>{{ReasonKind::kVipWrongAttributes, kNo}});
  }
  SUBCASE("a copy on eth0") {
    add_address(s.observed, prefix("192.0.2.10/32"), kEth0);
    CHECK(s.vip("192.0.2.10/32") ==
          std::vector<Reason>{not_ready(ReasonKind::kVipMisplaced, "vip 192.0.2.10/32 is also on eth0, which may answer ARP for it")});
  }
  SUBCASE("its element deleted") {
    remove_elements(arp_vips(s.observed), {rules::vip_element(range("192.0.2.10", "192.0.2.10"))});
    CHECK(kinds(s.vip("192.0.2.10/32")) == std::vector<Kind>{{ReasonKind::kVipNotSuppressed, kNo}});
    CHECK(s.vip("10.100.0.0/24").empty());
  }
  SUBCASE("part of a prefix VIP's element deleted") {
    remove_elements(arp_vips(s.observed), {rules::vip_element(range("10.100.0.0", "10.100.0.255"))});
    add_elements(arp_vips(s.observed), {rules::vip_element(range("10.100.0.0", "10.100.0.127"))});
    CHECK(kinds(s.vip("10.100.0.0/24")) == std::vector<Kind>{{ReasonKind::kVipNotSuppressed, kNo}});
  }
  SUBCASE("made local by a route arpguard did not make: a warning, still ready") {
    s.observed.local_routes.at(RouteKey{prefix("10.100.0.0/24"), 0}).protocol = 3;
    const std::vector<Reason> reasons = s.vip("10.100.0.0/24");
    CHECK(kinds(reasons) == std::vector<Kind>{{ReasonKind::kVipForeignRoute, kWarn}});
    CHECK(all_warnings(reasons));
  }
  SUBCASE("a redirected VIP configured on lo") {
    // The kernel's own local route of the address is reported as well.
    add_address(s.observed, prefix("192.0.2.30/32"), kLo);
    const std::vector<Reason> reasons = s.redirect("192.0.2.30/32");
    REQUIRE_FALSE(reasons.empty());
    CHECK(reasons.front() ==
          not_ready(ReasonKind::kRedirectConfigured, "redirected vip 192.0.2.30/32 is configured on lo"));
    for (const Reason& r : reasons) CHECK(r.kind == ReasonKind::kRedirectConfigured);
  }
  SUBCASE("a redirected VIP with a local route") {
    s.observed.local_routes[RouteKey{prefix("192.0.2.30/32"), 0}] = RouteInfo{kLo, 3, kScopeHost};
    CHECK(kinds(s.redirect("192.0.2.30/32")) == std::vector<Kind>{{ReasonKind::kRedirectConfigured, kNo}});
  }
  SUBCASE("a redirected VIP's NAT element missing") {
    s.observed.tables.at(rules::nat_table_id(Family::kV4)).sets.at("keep").elements.clear();
    CHECK(kinds(s.redirect("192.0.2.30/32")) == std::vector<Kind>{{ReasonKind::kVipNotSuppressed, kNo}});
  }
  CHECK(s.server().empty());
}

TEST_CASE("a VIP whose device does not exist says so, and not that it is missing") {
  Server s("[arp]\nmethod = \"nftables\"\n" + vip("192.0.2.10", "device = \"dummy0\"\n"));
  CHECK(s.vip("192.0.2.10/32") ==
        std::vector<Reason>{not_ready(ReasonKind::kVipDeviceMissing, "vip 192.0.2.10/32: device dummy0 does not exist")});
}

TEST_CASE("a VIP whose device is down is not ready: the kernel delivers nothing to it") {
  Server s(vip("192.0.2.10"));
  REQUIRE(s.vip("192.0.2.10/32").empty());
  s.observed.links.at(kLo).up = false;
  CHECK(s.vip("192.0.2.10/32") ==
        std::vector<Reason>{not_ready(ReasonKind::kVipDeviceDown, "vip 192.0.2.10/32: device lo is down")});
  s.observed.links.at(kLo).up = true;
  CHECK(s.vip("192.0.2.10/32").empty());
}

TEST_CASE("arp_ignore 3 and the VIP at scope global: wrong attributes") {
  Server s("[arp]\narp_ignore = 3\n" + vip("192.0.2.10"));
  REQUIRE(s.vip("192.0.2.10/32").empty());
  add_address(s.observed, prefix("192.0.2.10/32"), kLo, kScopeGlobal);
  CHECK(s.vip("192.0.2.10/32") ==
        std::vector<Reason>{not_ready(ReasonKind::kVipWrongAttributes, "vip 192.0.2.10/32 on lo has scope global, want host")});
}

TEST_CASE("addresses left behind in the set: the first ten named, the rest counted in one line") {
  Server s(vip("192.0.2.10"));
  CHECK(orphan_reasons(s.desired, s.observed).empty());
  // 25 addresses on lo that the set still hides, in no VIP of the policy (a crash mid-apply, say).
  add_elements(arp_vips(s.observed), {rules::vip_element(range("10.70.0.1", "10.70.0.25"))});
  for (int i = 1; i <= 25; ++i) add_address(s.observed, prefix("10.70.0." + std::to_string(i) + "/32"), 1);
  const std::vector<Reason> reasons = orphan_reasons(s.desired, s.observed);
  REQUIRE(reasons.size() == 11);
  for (const Reason& r : reasons) CHECK(r.kind == ReasonKind::kOrphanGuarded);
  for (const Reason& r : reasons) CHECK(r.severity == Severity::kWarning);
  CHECK(reasons.front().text.rfind("10.70.0.1/32 on lo is in no VIP of the policy", 0) == 0);
  CHECK(reasons[9].text.rfind("10.70.0.10/32 on lo", 0) == 0);
  CHECK(reasons.back().text.rfind("and 15 more address(es) or local route(s) in no VIP of the policy", 0) == 0);
  // The VIP itself, also in the set and configured, is never one of them.
  for (const Reason& r : reasons) CHECK(r.text.find("192.0.2.10/32") == std::string::npos);
  CHECK(orphan_reasons(s.desired, s.observed, 25).size() == 25);
}

TEST_CASE("each server-wide fault is its own typed reason") {
  Server s;
  SUBCASE("the arp table gone: the server says which, its VIPs that they are unsuppressed") {
    s.observed.tables.erase(rules::arp_table_id());
    CHECK(s.server() == std::vector<Reason>{not_ready(ReasonKind::kTableMissing, "nft table arp arpguard is missing")});
    CHECK(kinds(s.vip("192.0.2.10/32")) == std::vector<Kind>{{ReasonKind::kVipNotSuppressed, kNo}});
    CHECK(s.vip("2001:db8::10/128").empty());
  }
  SUBCASE("a rule gone") {
    ObservedTable& ndp = s.observed.tables.at(rules::ndp_table_id());
    ndp.rules.erase(ndp.rules.begin());
    CHECK(kinds(s.server()) == std::vector<Kind>{{ReasonKind::kTableMismatch, kNo}});
  }
  SUBCASE("a chain of another priority") {
    s.observed.tables.at(rules::nat_table_id(Family::kV4)).chains.at("prerouting").priority = 0;
    CHECK(kinds(s.server()) == std::vector<Kind>{{ReasonKind::kTableMismatch, kNo}});
  }
  SUBCASE("a sysctl not what arpguard set, still protecting") {
    s.observed.sysctls[{"all", kArpIgnore}] = 2;
    CHECK(s.server() == std::vector<Reason>{not_ready(ReasonKind::kSysctlWrong, "sysctl net.ipv4.conf.all.arp_ignore is 2, want 1")});
  }
  SUBCASE("arp_announce lowered") {
    s.observed.sysctls[{"all", kArpAnnounce}] = 1;
    CHECK(kinds(s.server()) ==
          std::vector<Kind>{{ReasonKind::kSysctlWrong, kNo}, {ReasonKind::kArpAnnounceLow, kNo}});
  }
  SUBCASE("eth0's own arp_ignore wins the max() and answers ARP") {
    s.observed.sysctls[{"eth0", kArpIgnore}] = 4;
    CHECK(s.server() == std::vector<Reason>{not_ready(ReasonKind::kArpIgnoreExposes,
                                                      "arp_ignore on eth0 is effectively 4, which answers ARP for VIPs")});
    // Once the host half is made again from it, arpguard also wants eth0's key.
    const Desired rebuilt = desired_of(s.policy, s.observed);
    CHECK(kinds(server_reasons(rebuilt, s.observed, s.inputs)) ==
          std::vector<Kind>{{ReasonKind::kSysctlWrong, kNo}, {ReasonKind::kArpIgnoreExposes, kNo}});
  }
  SUBCASE("kernel state too old to vouch for") {
    s.inputs.fresh = false;
    CHECK(kinds(s.server()) == std::vector<Kind>{{ReasonKind::kStale, kNo}});
  }
  SUBCASE("kernel state unreadable: that, not staleness") {
    s.inputs.fresh = false;
    s.inputs.observe_error = "RTM_GETADDR: Permission denied";
    CHECK(s.server() == std::vector<Reason>{not_ready(ReasonKind::kObserveFailed,
                                                      "cannot read kernel state: RTM_GETADDR: Permission denied")});
  }
  SUBCASE("draining") {
    s.inputs.draining = true;
    CHECK(kinds(s.server()) == std::vector<Kind>{{ReasonKind::kDraining, kNo}});
    CHECK(s.vip("192.0.2.10/32").empty());
  }
  SUBCASE("failing and contested: a VIP's own on the VIP, the others on the server") {
    const std::map<Resource, std::string> failing{{Resource{Resource::Kind::kVip, "192.0.2.10/32"}, "EPERM"},
                                                  {Resource{Resource::Kind::kTable, "arp arpguard"}, "EBUSY"}};
    const std::map<Resource, int> contested{{Resource{Resource::Kind::kSysctl, "net.ipv4.conf.all.arp_ignore"}, 9},
                                            {Resource{Resource::Kind::kVip, "2001:db8::10/128"}, 6}};
    s.inputs.failing = &failing;
    s.inputs.contested = &contested;
    CHECK(kinds(s.server()) == std::vector<Kind>{{ReasonKind::kRepairFailing, kNo}, {ReasonKind::kContested, kNo}});
    CHECK(kinds(s.vip("192.0.2.10/32")) == std::vector<Kind>{{ReasonKind::kRepairFailing, kNo}});
    CHECK(kinds(s.vip("2001:db8::10/128")) == std::vector<Kind>{{ReasonKind::kContested, kNo}});
    CHECK(s.vip("10.100.0.0/24").empty());
  }
  SUBCASE("a failed service check") {
    const std::map<IpPrefix, CheckResult> checks{{prefix("192.0.2.10/32"), {false, "tcp:80 Connection refused"}},
                                                 {prefix("2001:db8::10/128"), {true, ""}}};
    s.inputs.checks = &checks;
    CHECK(s.vip("192.0.2.10/32") == std::vector<Reason>{not_ready(
                                        ReasonKind::kCheckFailed, "service check on 192.0.2.10 failed: tcp:80 Connection refused")});
    CHECK(s.vip("2001:db8::10/128").empty());
  }
}

TEST_CASE("conntrack at or above the policy's threshold is a warning, and only with redirected VIPs") {
  Server s;
  s.inputs.conntrack_warn_percent = 90;
  s.inputs.conntrack = ConntrackFill{899, 1000};
  CHECK(s.server().empty());
  s.inputs.conntrack = ConntrackFill{900, 1000};
  CHECK(s.server() ==
        std::vector<Reason>{warning(ReasonKind::kConntrackHigh,
                                    "conntrack holds 900 of 1000 entries (90%, warning at 90%): when it is full, new "
                                    "connections to redirected VIPs are dropped (raise net.netfilter.nf_conntrack_max)")});
  CHECK(s.redirect("192.0.2.30/32").empty());  // a warning: the VIP stays ready
  s.inputs.conntrack = ConntrackFill{5, 0};      // no conntrack module loaded: nothing to warn about
  CHECK(s.server().empty());
  const Server bound_only(vip("192.0.2.10"));
  Server b = bound_only;
  b.inputs.conntrack = ConntrackFill{1000, 1000};
  CHECK(b.server().empty());
}

TEST_CASE("a policy without VIPs is not ready: nothing to be ready for") {
  const Server s("");
  CHECK(kinds(s.server()) == std::vector<Kind>{{ReasonKind::kNoVips, kNo}});
}

// ---- before adding VIPs (I1) ----

TEST_CASE("gaps_before_adding holds back an IPv4 VIP until its sysctls and its element are in place") {
  Server s(vip("192.0.2.10") + vip("192.0.2.20") + vip("2001:db8::10") +
           vip("2001:db8::20", "method = \"sysctl\"\n") + vip("192.0.2.40", "method = \"nftables\"\n"));
  const std::vector<IpPrefix> adding{prefix("192.0.2.10/32"), prefix("192.0.2.20/32"), prefix("2001:db8::10/128"),
                                     prefix("2001:db8::20/128"), prefix("192.0.2.40/32"), prefix("198.51.100.1/32")};
  REQUIRE(gaps_before_adding(s.desired, s.observed, adding).empty());

  SUBCASE("sysctls reset: every IPv4 VIP relying on them, and no other") {
    s.observed.sysctls[{"all", kArpIgnore}] = 0;
    const auto gaps = gaps_before_adding(s.desired, s.observed, adding);
    CHECK(gaps.size() == 2);
    for (const char* p : {"192.0.2.10/32", "192.0.2.20/32"}) {
      CAPTURE(p);
      REQUIRE(gaps.count(prefix(p)) == 1);
      CHECK(kinds(gaps.at(prefix(p))) ==
            std::vector<Kind>{{ReasonKind::kSysctlWrong, kNo}, {ReasonKind::kArpIgnoreExposes, kNo}});
    }
  }
  SUBCASE("one VIP's element missing: that VIP alone") {
    remove_elements(arp_vips(s.observed), {rules::vip_element(range("192.0.2.20", "192.0.2.20"))});
    const auto gaps = gaps_before_adding(s.desired, s.observed, adding);
    REQUIRE(gaps.size() == 1);
    CHECK(kinds(gaps.at(prefix("192.0.2.20/32"))) == std::vector<Kind>{{ReasonKind::kVipNotSuppressed, kNo}});
  }
  SUBCASE("the arp table missing: every IPv4 VIP of the nftables layer, each saying why") {
    s.observed.tables.erase(rules::arp_table_id());
    const auto gaps = gaps_before_adding(s.desired, s.observed, adding);
    CHECK(gaps.size() == 3);
    CHECK(kinds(gaps.at(prefix("192.0.2.40/32"))) ==
          std::vector<Kind>{{ReasonKind::kTableMissing, kNo}, {ReasonKind::kVipNotSuppressed, kNo}});
    CHECK(gaps.count(prefix("2001:db8::10/128")) == 0);
  }
  SUBCASE("the ip6 table missing: the IPv6 VIP of method both, never the one of method sysctl") {
    s.observed.tables.erase(rules::ndp_table_id());
    const auto gaps = gaps_before_adding(s.desired, s.observed, adding);
    REQUIRE(gaps.size() == 1);
    CHECK(gaps.count(prefix("2001:db8::10/128")) == 1);
  }
  SUBCASE("everything reset: an IPv6 VIP of method sysctl is still never held back") {
    for (auto& [key, value] : s.observed.sysctls) value = 0;
    s.observed.tables.clear();
    const auto gaps = gaps_before_adding(s.desired, s.observed, adding);
    CHECK(gaps.size() == 4);
    CHECK(gaps.count(prefix("2001:db8::20/128")) == 0);
    CHECK(gaps.count(prefix("198.51.100.1/32")) == 0);  // not a VIP of the policy: nothing to hide it with
  }
}

TEST_CASE("on a fresh machine every VIP is held back; after the suppression half of its plan, none is") {
  const Policy policy = policy_of(vip("192.0.2.10") + vip("2001:db8::10") + vip("10.100.0.0/24"));
  Observed observed = fresh_machine();
  const Desired desired = desired_of(policy, observed);
  const std::vector<IpPrefix> adding{prefix("192.0.2.10/32"), prefix("2001:db8::10/128"), prefix("10.100.0.0/24")};
  CHECK(gaps_before_adding(desired, observed, adding).size() == 3);

  Plan suppression = Diff(desired, observed);
  std::erase_if(suppression.actions, [](const Action& a) {
    return std::holds_alternative<AddAddress>(a) || std::holds_alternative<AddRoute>(a);
  });
  REQUIRE(apply_to(observed, suppression) == Lines{});
  CHECK(gaps_before_adding(desired, observed, adding).empty());
}
