// A Supervisor driven by the real Driver over a FakeKernel, with a clock the
// test moves: the whole daemon but its sockets.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <string>

#include "core/desired.h"
#include "core/diff.h"
#include "core/driver.h"
#include "core/policy.h"
#include "fake_kernel.h"

namespace arpguard::testing {

inline Policy policy_of(const std::string& text) {
  PolicyResult result = parse_policy(text, "p.toml");
  for (const Diagnostic& d : result.errors) FAIL_CHECK(d.str());
  REQUIRE(result.policy);
  return *result.policy;
}

struct Rig {
  explicit Rig(const std::string& policy_text, bool start = true) : policy(policy_of(policy_text)) {
    if (start) boot();
  }

  void boot() {
    Supervisor::Options options;
    options.own_portids = {FakeKernel::kOwnRtnlPort, FakeKernel::kOwnNftPort};
    options.started = 0;
    options.unix_offset = 0;
    options.draining = host.drain_file;
    driver = std::make_unique<Driver>(kernel.apis(), kernel, host, policy, options);
    driver->start();
    settle();
  }

  /// Moves the clock forward by `seconds`, firing timers and reading events on the way.
  void advance(double seconds) {
    const double until = host.clock + seconds;
    for (int i = 0; i < 100000 && !driver->exit_code(); ++i) {
      driver->drain_events();
      const double next = driver->next_timer();
      if (next > until) break;
      host.clock = std::max(host.clock, next);
      driver->fire_due_timers(host.clock);
    }
    host.clock = std::max(host.clock, until);
    driver->drain_events();
  }
  /// Lets every pending reaction happen (debounce, retries within 50 ms).
  void settle() { advance(0.05); }

  Supervisor& supervisor() { return driver->supervisor(); }
  ReadySummary ready() {
    driver->refresh_for_query();
    return supervisor().ready_summary(host.clock);
  }
  StatusSnapshot status() {
    driver->refresh_for_query();
    return supervisor().snapshot(host.clock, true);
  }
  bool logged(const std::string& text) const {
    return std::any_of(host.logs.begin(), host.logs.end(),
                       [&](const std::string& line) { return line.find(text) != std::string::npos; });
  }
  bool has_address(const char* prefix, const char* device = "lo") const {
    const IpPrefix p = *IpPrefix::parse(prefix);
    return kernel.world.addresses.count(AddressKey{p.address, p.length, kernel.link_index(device)}) != 0;
  }
  /// Why the fake kernel does not meet the policy, checked from first
  /// principles: every VIP configured with the attributes it needs, nowhere
  /// else, held by its nft set where its method has one; the sysctls the
  /// policy sets; tables whole; redirected VIPs configured nowhere and in their
  /// NAT set. Leftovers (extra suppression, VIPs being removed) do not count.
  std::vector<std::string> unmet() const {
    std::vector<std::string> out;
    Observed w = kernel.world;
    w.nft_portid = FakeKernel::kOwnNftPort;
    const Desired desired = make_desired(policy, w, true);
    for (const DesiredVip& vip : desired.vips.bound) {
      const Link* device = w.link_named(vip.device);
      if (vip.kind == VipKind::kAddress) {
        bool exact = false;
        for (const auto& [key, info] : w.addresses_of(vip.prefix.address)) {
          if (key.length != vip.prefix.length) continue;
          if (!device || key.link_index != device->index) {
            out.push_back(vip.prefix.str() + " also on link " + std::to_string(key.link_index));
          } else {
            const bool scope = vip.prefix.family() == Family::kV6 || info.scope == vip.scope;
            const bool lifetime = vip.prefix.family() == Family::kV4 || info.deprecated() == vip.deprecated;
            exact = scope && lifetime;
          }
        }
        if (!exact) out.push_back(vip.prefix.str() + " not configured as it should be");
      } else {
        auto it = w.local_routes.lower_bound(RouteKey{vip.prefix, 0});
        if (it == w.local_routes.end() || !(it->first.destination == vip.prefix)) out.push_back(vip.prefix.str() + " has no route");
      }
      if (uses_nftables(vip.method)) {
        const ObservedTable* table = w.table(suppression_table(vip.prefix));
        const bool held = table && table->sets.count("vips") && set_covers(table->sets.at("vips"), IpRange::of(vip.prefix));
        if (!held) out.push_back(vip.prefix.str() + " not in its nft set");
      }
    }
    for (const auto& [key, value] : desired.host.sysctls) {
      if (w.sysctls.at(key) != value) out.push_back(key.str() + " is " + std::to_string(w.sysctls.at(key)));
    }
    for (const nft::TableSpec& table : desired.host.tables) {
      for (const Reason& r : table_gaps(desired, w, table.id)) out.push_back(r.text);
    }
    for (const IpPrefix& prefix : desired.vips.redirected) {
      for (const auto& [key, info] : w.addresses_of(prefix.address)) {
        if (key.length == prefix.length) out.push_back("redirected " + prefix.str() + " is configured");
      }
    }
    for (const auto& [set, elements] : desired.vips.elements) {
      if (set.set == "vips") continue;
      const ObservedTable* table = w.table(set.table);
      for (const nft::Element& e : elements) {
        const ObservedSet* have = table && table->sets.count(set.set) ? &table->sets.at(set.set) : nullptr;
        // Plain interval sets hold points; concatenated ones whole elements.
        const bool held = have && (e.protocol == 0 ? set_covers(*have, e.addresses) : have->elements.count(e) != 0);
        if (!held) out.push_back(e.str() + " not in " + set.str());
      }
    }
    return out;
  }
  bool policy_met() const {
    const std::vector<std::string> missing = unmet();
    for (const std::string& m : missing) MESSAGE("unmet: " << m);
    return missing.empty();
  }

  /// The kernel holds exactly what the policy wants: a fresh Diff plans nothing.
  bool kernel_meets_policy() const {
    Observed world = kernel.world;
    world.state = kernel.state_record;
    world.nft_portid = FakeKernel::kOwnNftPort;
    const Plan plan = Diff(make_desired(policy, world, true), world);
    for (const std::string& line : plan.lines()) MESSAGE("still needed: " << line);
    return plan.empty();
  }
  /// Reasons as text, for failure messages.
  static std::string texts(const std::vector<Reason>& reasons) {
    std::string out;
    for (const Reason& r : reasons) out += r.text + "; ";
    return out;
  }

  Policy policy;
  FakeKernel kernel;
  FakeHost host{kernel};
  std::unique_ptr<Driver> driver;
};

inline AddressKey address(const char* prefix, int link = 1) {
  const IpPrefix p = *IpPrefix::parse(prefix);
  return {p.address, p.length, link};
}

inline bool has_reason(const std::vector<Reason>& reasons, ReasonKind kind) {
  return std::any_of(reasons.begin(), reasons.end(), [&](const Reason& r) { return r.kind == kind; });
}

}  // namespace arpguard::testing
