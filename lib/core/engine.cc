#include "core/engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "core/desired.h"
#include "core/diff.h"

namespace arpguard {

namespace {

template <class T>
std::vector<T> take_run(const Plan& plan, size_t& i) {
  std::vector<T> run;
  for (; i < plan.actions.size(); ++i) {
    if (auto* item = std::get_if<T>(&plan.actions[i])) {
      run.push_back(*item);
    } else {
      break;
    }
  }
  return run;
}

}  // namespace

Status Engine::observe_addresses(Observed& observed) {
  auto links = kernel_.addresses.links();
  if (!links) return links.status();
  observed.links = std::move(*links);
  auto addresses = kernel_.addresses.addresses();
  if (!addresses) return addresses.status();
  observed.addresses = std::move(*addresses);
  return Status();
}

Result<Observed> Engine::observe() {
  Observed observed;
  if (Status s = observe_addresses(observed); !s) return s.error();

  std::vector<std::string> scopes{"all"};
  for (const Link& link : observed.links) scopes.push_back(link.name);
  auto sysctls = kernel_.sysctls.read(scopes);
  if (!sysctls) return sysctls.error();
  observed.sysctls = std::move(*sysctls);

  auto nft = kernel_.nft.observe();
  if (!nft) return nft.error();
  observed.nft = std::move(*nft);

  auto state = kernel_.state.load();
  if (!state) return state.error();
  observed.state = std::move(*state);
  return observed;
}

Result<std::vector<Diagnostic>> Engine::check(const Policy& policy) {
  Observed observed;
  if (Status s = observe_addresses(observed); !s) return s.error();
  return check_against_kernel(policy, observed);
}

Status Engine::record_sysctl_origins(const Plan& plan, ManagedState& state) {
  bool changed = false;
  for (const Action& action : plan.actions) {
    if (auto* set = std::get_if<SetSysctl>(&action)) {
      changed |= state.sysctl_origin.emplace(set->key, set->from).second;
    }
  }
  // Saved before any sysctl is written: a crash must not lose the origin values.
  return changed ? kernel_.state.save(state) : Status();
}

Status Engine::verify_before_vips(const Desired& desired) {
  std::vector<std::string> scopes{"all"};
  scopes.insert(scopes.end(), desired.arp_facing.begin(), desired.arp_facing.end());
  Observed readback;
  auto sysctls = kernel_.sysctls.read(scopes);
  if (!sysctls) return sysctls.status();
  readback.sysctls = std::move(*sysctls);
  auto nft = kernel_.nft.observe();
  if (!nft) return nft.status();
  readback.nft = std::move(*nft);
  const std::vector<std::string> reasons = verify_suppression(desired, readback);
  if (reasons.empty()) return Status();
  return Status::failure(fmt::format("suppression not verified, no VIP added: {}", fmt::join(reasons, "; ")));
}

Status Engine::apply_plan(const Plan& plan, const Desired& desired) {
  auto loaded = kernel_.state.load();
  if (!loaded) return loaded.status();
  ManagedState state = *loaded;
  const ManagedState before = state;
  if (Status s = record_sysctl_origins(plan, state); !s) return s;

  bool verified = false;
  for (size_t i = 0; i < plan.actions.size();) {
    const Action& action = plan.actions[i];
    Status status;
    if (std::holds_alternative<DelVip>(action)) {
      auto run = take_run<DelVip>(plan, i);
      status = kernel_.addresses.remove(run);
      for (const DelVip& del : run) std::erase(state.vips, del.vip);
    } else if (auto* set = std::get_if<SetSysctl>(&action)) {
      status = kernel_.sysctls.write(set->key, set->to);
      ++i;
    } else if (std::holds_alternative<NftChange>(action)) {
      status = kernel_.nft.apply(take_run<NftChange>(plan, i));
    } else {
      if (!verified) {
        if (Status s = verify_before_vips(desired); !s) return s;
        verified = true;
      }
      auto run = take_run<AddVip>(plan, i);
      status = kernel_.addresses.add(run);
      if (status) {
        for (const AddVip& add : run) state.vips.push_back(add.vip);
      }
    }
    if (!status) return status;
  }
  return state == before ? Status() : kernel_.state.save(state);
}

Status Engine::adopt_policy_vips(const Desired& desired, const Observed& observed) {
  // Every VIP of the policy is arpguard's to manage, whoever put it there first:
  // dropped from the policy later, it is removed.
  ManagedState state = observed.state;
  std::set<VipOnDevice> managed(state.vips.begin(), state.vips.end());
  for (const VipOnDevice& vip : desired.vips) {
    const Link* link = observed.link_named(vip.device);
    const bool present = link && std::any_of(observed.addresses.begin(), observed.addresses.end(), [&](const Address& a) {
      return a.link_index == link->index && a.prefix == vip.prefix;
    });
    if (present) managed.insert(vip);
  }
  if (managed.size() == state.vips.size()) return Status();
  state.vips.assign(managed.begin(), managed.end());
  return kernel_.state.save(state);
}

Result<Planned> Engine::plan(const Policy& policy) {
  auto observed = observe();
  if (!observed) return observed.error();
  Planned planned;
  planned.observed = std::move(*observed);
  planned.desired = make_desired(policy, planned.observed, daemon_);
  planned.plan = Diff(planned.desired, planned.observed);
  return planned;
}

Result<ConvergeReport> Engine::converge(const Policy& policy, bool dry_run) {
  auto planned = plan(policy);
  if (!planned) return planned.error();
  if (dry_run) {
    ConvergeReport report;
    report.plan = std::move(planned->plan);
    report.problems = report.plan.problems;
    report.desired = std::move(planned->desired);
    return report;
  }
  return execute(policy, std::move(*planned));
}

Result<ConvergeReport> Engine::execute(const Policy& policy, Planned planned) {
  ConvergeReport report;
  report.plan = std::move(planned.plan);
  report.desired = std::move(planned.desired);
  if (Status status = apply_plan(report.plan, report.desired); !status) {
    report.problems = report.plan.problems;
    report.problems.push_back(status.message());
    return report;
  }
  // Read everything back: converged means a fresh diff plans nothing.
  auto after = observe();
  if (!after) return after.error();
  Desired again = make_desired(policy, *after, daemon_);
  report.problems = again.problems;
  if (Status status = adopt_policy_vips(again, *after); !status) report.problems.push_back(status.message());
  for (const std::string& line : Diff(again, *after).lines()) report.problems.push_back("still needed: " + line);
  for (const std::string& reason : verify_suppression(again, *after)) report.problems.push_back(reason);
  report.desired = std::move(again);
  return report;
}

Result<ConvergeReport> Engine::remove(const Policy& policy, bool dry_run) {
  auto observed = observe();
  if (!observed) return observed.error();
  const Desired desired = make_desired(policy, *observed, daemon_);
  ConvergeReport report;
  report.plan = plan_removal(desired, *observed);
  if (dry_run) return report;
  if (Status status = apply_plan(report.plan, desired); !status) {
    report.problems.push_back(status.message());
    return report;
  }
  if (Status status = kernel_.state.save(ManagedState{}); !status) report.problems.push_back(status.message());
  return report;
}

}  // namespace arpguard
