// Thousands of random sequences of drift, failures, lost events, reloads and
// operator commands against the fake kernel. After every single kernel write
// arpguard makes, no VIP is present without its suppression unless it already
// was (I1: arpguard never creates a leak), and readiness never says ready
// while the kernel does not meet the policy (I6: every VIP of the policy
// configured and suppressed as its method says; leftovers being cleaned up
// do not count, see Rig::unmet). Left alone with every failure healed, it
// converges to exactly the policy and says ready. A failing sequence is
// shrunk and printed, ready to paste as a regression case.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <random>

#include "core/engine.h"
#include "rig.h"
#include "rules/tables.h"

using namespace arpguard;
using namespace arpguard::testing;

namespace {

const std::string kPolicyA =
    "[agent]\nown_nft_table = false\n"
    "[[vip]]\naddress = \"192.0.2.10\"\n"
    "[[vip]]\naddress = \"192.0.2.11\"\n"
    "[[vip]]\naddress = \"2001:db8::10\"\n"
    "[[vip]]\naddress = \"10.100.0.0/24\"\n"
    "[[vip]]\naddress = \"198.51.100.7\"\nmethod = \"redirect\"\n";
const std::string kPolicyB =
    "[agent]\nown_nft_table = false\n"
    "[[vip]]\naddress = \"192.0.2.10\"\n"
    "[[vip]]\naddress = \"192.0.2.12\"\n"
    "[[vip]]\naddress = \"2001:db8::11\"\n"
    "[[vip]]\naddress = \"10.100.0.0/24\"\n";
// Every bound VIP of A and B, with the methods both give them: what I1 is checked against.
const std::string kUnion =
    "[[vip]]\naddress = \"192.0.2.10\"\n[[vip]]\naddress = \"192.0.2.11\"\n[[vip]]\naddress = \"192.0.2.12\"\n"
    "[[vip]]\naddress = \"2001:db8::10\"\n[[vip]]\naddress = \"2001:db8::11\"\n"
    "[[vip]]\naddress = \"10.100.0.0/24\"\n";

enum class Op {
  kDeleteVip, kDeleteTable, kDeleteElements, kDeleteRule, kResetSysctl, kMisplaceVip,
  kFailNext, kFailAlways, kHealAll, kLoseEvents, kReload, kDrain, kResume, kRestart, kAdvance,
};

struct Step {
  Op op;
  int a = 0;
  int b = 0;
  std::string str() const;
};

const char* const kVips[] = {"192.0.2.10/32", "192.0.2.11/32", "192.0.2.12/32", "2001:db8::10/128",
                             "2001:db8::11/128"};
const Call kCalls[] = {Call::kSysctlWrite, Call::kNftApply, Call::kRtnlAdd, Call::kRtnlDelete, Call::kSysctlRead,
                       Call::kLinks, Call::kNftObserve, Call::kStateRecord};
const int kErrnos[] = {EROFS, EPERM, ENODEV, EIO, ENOBUFS};
const double kDelays[] = {0, 0.001, 0.05, 0.3, 1.2, 6};

std::string Step::str() const {
  switch (op) {
    case Op::kDeleteVip: return fmt::format("delete vip {}", a == 5 ? "10.100.0.0/24 (route)" : kVips[a]);
    case Op::kDeleteTable: return fmt::format("delete table #{}", a);
    case Op::kDeleteElements: return fmt::format("delete elements of table #{}", a);
    case Op::kDeleteRule: return fmt::format("delete first rule of table #{}", a);
    case Op::kResetSysctl: return "reset all.arp_ignore to 0";
    case Op::kMisplaceVip: return fmt::format("put {} on eth0", kVips[a]);
    case Op::kFailNext: return fmt::format("fail next call #{} with errno {}", a, kErrnos[b]);
    case Op::kFailAlways: return fmt::format("fail every call #{} with errno {}", a, kErrnos[b]);
    case Op::kHealAll: return "heal every failure";
    case Op::kLoseEvents: return "lose pending events";
    case Op::kReload: return fmt::format("reload policy {}", a == 0 ? "A" : "B");
    case Op::kDrain: return "drain";
    case Op::kResume: return "resume";
    case Op::kRestart: return a == 0 ? "restart arpguardd" : "restart arpguardd with its state record lost";
    case Op::kAdvance: return fmt::format("advance {} s", kDelays[a]);
  }
  return "?";
}

Step random_step(std::mt19937& rng) {
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  const Op op = static_cast<Op>(pick(static_cast<int>(Op::kAdvance) + 1));
  switch (op) {
    case Op::kDeleteVip: return {op, pick(6)};
    case Op::kDeleteTable:
    case Op::kDeleteElements:
    case Op::kDeleteRule: return {op, pick(3)};
    case Op::kMisplaceVip: return {op, pick(5)};
    case Op::kFailNext:
    case Op::kFailAlways: return {op, pick(8), pick(5)};
    case Op::kReload:
    case Op::kRestart: return {op, pick(2)};
    case Op::kAdvance: return {op, pick(6)};
    default: return {op};
  }
}

const nft::TableId kTables[] = {rules::arp_table_id(), rules::ndp_table_id(), rules::nat_table_id(Family::kV4)};

// Per present bound VIP: is every layer of its method in place?
std::map<IpPrefix, bool> protection(const Observed& world, const Policy& all) {
  Observed w = world;
  w.nft_portid = FakeKernel::kOwnNftPort;
  const Desired desired = make_desired(all, w, true);
  std::map<IpPrefix, bool> out;
  for (const DesiredVip& vip : desired.vips.bound) {
    bool present = false;
    if (vip.kind == VipKind::kAddress) {
      for (const auto& [key, info] : w.addresses_of(vip.prefix.address)) present |= key.length == vip.prefix.length;
    } else {
      auto it = w.local_routes.lower_bound(RouteKey{vip.prefix, 0});
      present = it != w.local_routes.end() && it->first.destination == vip.prefix;
    }
    if (present) out[vip.prefix] = gaps_before_adding(desired, w, {vip.prefix}).empty();
  }
  return out;
}

struct Outcome {
  bool failed = false;
  std::string why;
  std::vector<std::string> log = {};  ///< the daemon's log and the steps, interleaved
};

Outcome run(const std::vector<Step>& steps) {
  Outcome outcome;
  const Policy all = policy_of(kUnion);
  Rig rig(kPolicyA, /*start=*/false);
  std::map<IpPrefix, bool> baseline;
  auto rebase = [&] { baseline = protection(rig.kernel.world, all); };
  rig.kernel.after_write = [&](const std::string& what) {
    if (outcome.failed) return;
    const std::map<IpPrefix, bool> now = protection(rig.kernel.world, all);
    for (const auto& [vip, protected_now] : now) {
      if (protected_now) continue;
      auto before = baseline.find(vip);
      if (before == baseline.end() || before->second) {
        outcome = {true, fmt::format("I1: after '{}', VIP {} is present without its suppression", what, vip.str())};
      }
    }
    baseline = now;
  };
  rebase();
  rig.boot();
  const Policy policies[] = {policy_of(kPolicyA), policy_of(kPolicyB)};
  auto finish = [&](Outcome o) {
    o.log = rig.host.logs;
    return o;
  };
  for (const Step& step : steps) {
    rig.host.logs.push_back("---- " + step.str());
    FakeKernel& k = rig.kernel;
    switch (step.op) {
      case Op::kDeleteVip:
        if (step.a == 5) {
          k.foreign_delete_route(RouteKey{*IpPrefix::parse("10.100.0.0/24"), 0});
        } else {
          for (int link : {1, 2}) k.foreign_delete_address(address(kVips[step.a], link));
        }
        break;
      case Op::kDeleteTable: k.foreign_delete_table(kTables[step.a]); break;
      case Op::kDeleteElements: {
        const char* set = step.a == 2 ? "keep" : "vips";
        k.foreign_delete_elements(SetRef{kTables[step.a], set});
        break;
      }
      case Op::kDeleteRule: {
        auto table = k.world.tables.find(kTables[step.a]);
        if (table != k.world.tables.end() && !table->second.rules.empty()) {
          k.foreign_delete_rule(kTables[step.a], table->second.rules.begin()->first);
        }
        break;
      }
      case Op::kResetSysctl: k.foreign_set_sysctl({"all", kArpIgnore}, 0); break;
      case Op::kMisplaceVip: k.foreign_add_address(address(kVips[step.a], 2), AddressInfo{}); break;
      case Op::kFailNext: k.fail_next[kCalls[step.a]].push_back(kErrnos[step.b]); break;
      case Op::kFailAlways: k.fail_always[kCalls[step.a]] = kErrnos[step.b]; break;
      case Op::kHealAll:
        k.fail_always.clear();
        k.fail_next.clear();
        break;
      case Op::kLoseEvents: k.lose_events = true; break;
      case Op::kReload: {
        const std::string& text = step.a == 0 ? kPolicyA : kPolicyB;
        rig.driver->feed(input::Reload{parse_policy(text, "p.toml"), 0});
        rig.policy = policies[step.a];
        break;
      }
      case Op::kDrain: rig.driver->feed(input::Drain{true}); break;
      case Op::kResume: rig.driver->feed(input::Drain{false}); break;
      case Op::kRestart:
        if (step.a == 1) k.state_record = ManagedState{};
        rig.driver.reset();
        rig.boot();  // with the policy last loaded
        break;
      case Op::kAdvance: rig.advance(kDelays[step.a]); break;
    }
    if (step.op <= Op::kMisplaceVip) rebase();  // what others did is the new starting point
    if (outcome.failed) return finish(outcome);
    // I6: whenever readiness says ready, the kernel meets the policy.
    const ReadySummary ready = rig.ready();
    if (outcome.failed) return finish(outcome);
    if (ready.ready && !rig.unmet().empty()) {
      return finish({true, fmt::format("I6: ready after '{}' while the kernel does not meet the policy", step.str())});
    }
    if (rig.driver->exit_code()) return finish({true, fmt::format("the daemon exited after '{}'", step.str())});
  }
  // With every failure healed and time to act, it converges and says ready.
  rig.kernel.fail_always.clear();
  rig.kernel.fail_next.clear();
  rig.driver->feed(input::Drain{false});
  rig.host.logs.push_back("---- heal everything and wait 40 s");
  rig.advance(40);
  if (outcome.failed) return finish(outcome);
  if (!rig.kernel_meets_policy()) return finish({true, "not converged 40 s after every failure was healed"});
  const ReadySummary ready = rig.ready();
  if (!ready.ready) return finish({true, "not ready after converging: " + Rig::texts(ready.reasons)});
  return outcome;
}

// Removes steps while the sequence still fails: the smallest story that shows the bug.
std::vector<Step> shrink(std::vector<Step> steps) {
  for (bool progress = true; progress;) {
    progress = false;
    for (size_t i = 0; i < steps.size(); ++i) {
      std::vector<Step> shorter = steps;
      shorter.erase(shorter.begin() + static_cast<long>(i));
      if (run(shorter).failed) {
        steps = std::move(shorter);
        progress = true;
        break;
      }
    }
  }
  return steps;
}

}  // namespace

TEST_CASE("random drift, failures, lost events, reloads and drains never break I1 or I6") {
  constexpr int kSequences = 3000;
  constexpr int kSteps = 30;
  const unsigned seed = std::getenv("ARPGUARD_PROPERTY_SEED") ? static_cast<unsigned>(std::stoul(std::getenv("ARPGUARD_PROPERTY_SEED"))) : 20261122u;
  const int sequences = std::getenv("ARPGUARD_PROPERTY_RUNS") ? std::stoi(std::getenv("ARPGUARD_PROPERTY_RUNS")) : kSequences;
  MESSAGE("seed " << seed << ", " << sequences << " sequences (ARPGUARD_PROPERTY_SEED, ARPGUARD_PROPERTY_RUNS)");
  std::mt19937 rng(seed);
  for (int sequence = 0; sequence < sequences; ++sequence) {
    std::vector<Step> steps;
    for (int i = 0; i < kSteps; ++i) steps.push_back(random_step(rng));
    const Outcome outcome = run(steps);
    if (!outcome.failed) continue;
    const std::vector<Step> minimal = shrink(steps);
    std::string story;
    for (const Step& step : minimal) story += "  " + step.str() + "\n";
    const Outcome again = run(minimal);
    std::string log;
    for (const std::string& line : again.log) log += "    " + line + "\n";
    FAIL("sequence " << sequence << ": " << again.why << "\nshrunk to:\n" << story << "log:\n" << log);
  }
}
