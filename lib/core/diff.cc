#include "core/diff.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "core/desired.h"

namespace arpguard {

namespace {

bool has_address(const Observed& observed, const Ipv4Prefix& prefix, int link_index) {
  return std::any_of(observed.addresses.begin(), observed.addresses.end(), [&](const Address& address) {
    return address.link_index == link_index && address.prefix == prefix;
  });
}

std::vector<SetSysctl> sysctl_changes(const Desired& desired, const Observed& observed) {
  std::vector<SetSysctl> changes;
  if (!uses_sysctls(desired.method)) return changes;
  for (const auto& [key, value] : desired.sysctls) {
    auto it = observed.sysctls.find(key);
    if (it != observed.sysctls.end() && it->second != value) changes.push_back({key, it->second, value});
  }
  return changes;
}

std::vector<NftChange> nft_changes(const Desired& desired, const Observed& observed) {
  std::vector<NftChange> changes;
  const ObservedArpTable& table = observed.nft;
  if (!desired.nft) {
    if (table.exists) changes.emplace_back(NftDeleteTable{});
    return changes;
  }
  const rules::ArpTableSpec& spec = *desired.nft;

  // OWNER only with PERSIST: an owned table without it would vanish when its owner exits.
  const bool owned = desired.ownership != TableOwnership::kPlain && table.persist_supported;
  NftCreateTable create{!table.exists, owned, !table.set_ok, !table.input_chain, !table.output_chain};
  std::vector<ObservedRule> kept_rules = table.rules;
  std::vector<Ipv4Range> kept_vips = table.vips;
  // A set or chain of the wrong shape cannot be fixed in place: replace the table
  // in the same atomic batch, so protection never lapses.
  // The daemon cannot take ownership of a table made without PERSIST (the kernel
  // does not change that flag later): it replaces the table the same way.
  const bool unadoptable = desired.ownership == TableOwnership::kHold && table.persist_supported && table.exists &&
                           !table.owned_by_us && !table.persistent();
  if (table.exists && (table.malformed || unadoptable)) {
    changes.emplace_back(NftDeleteTable{});
    create = {true, owned, true, true, true};
    kept_rules.clear();
    kept_vips.clear();
  }
  if (create.table || create.set || create.input_chain || create.output_chain) {
    if (!create.table) create.owned = false;
    changes.emplace_back(create);
  }
  if (desired.ownership == TableOwnership::kHold && table.exists && !table.malformed && !unadoptable &&
      !table.owned_by_us && table.persist_supported) {
    changes.emplace_back(NftAdoptTable{});
  }

  // Rules: keep one observed copy of each desired rule, delete everything else.
  std::vector<bool> matched(spec.rules.size(), false);
  for (const ObservedRule& observed_rule : kept_rules) {
    bool keep = false;
    if (observed_rule.rule) {
      for (size_t i = 0; i < spec.rules.size(); ++i) {
        if (!matched[i] && spec.rules[i] == *observed_rule.rule && spec.rules[i].chain() == observed_rule.chain) {
          matched[i] = keep = true;
          break;
        }
      }
    }
    if (!keep) {
      changes.emplace_back(NftDelRule{observed_rule.handle, observed_rule.chain,
                                      observed_rule.rule ? observed_rule.rule->nft_text() : "rule not written by arpguard"});
    }
  }

  const std::set<Ipv4Range> want(spec.vips.begin(), spec.vips.end());
  const std::set<Ipv4Range> have(kept_vips.begin(), kept_vips.end());
  NftDelElements stale;
  std::set_difference(have.begin(), have.end(), want.begin(), want.end(), std::back_inserter(stale.vips));
  NftAddElements missing;
  std::set_difference(want.begin(), want.end(), have.begin(), have.end(), std::back_inserter(missing.vips));
  if (!stale.vips.empty()) changes.emplace_back(std::move(stale));
  if (!missing.vips.empty()) changes.emplace_back(std::move(missing));

  for (size_t i = 0; i < spec.rules.size(); ++i) {
    if (!matched[i]) changes.emplace_back(NftAddRule{spec.rules[i]});
  }
  return changes;
}

}  // namespace

Plan Diff(const Desired& desired, const Observed& observed) {
  Plan plan;
  plan.problems = desired.problems;
  const std::set<VipOnDevice> wanted(desired.vips.begin(), desired.vips.end());

  // 1. Removals first: a VIP that goes away can never leak.
  for (const Address& address : observed.addresses) {
    const Link* link = observed.link_at(address.link_index);
    if (!link) continue;
    for (const VipOnDevice& vip : desired.vips) {
      if (address.prefix == vip.prefix && link->name != vip.device) {
        plan.actions.emplace_back(DelVip{{address.prefix, link->name}, link->index,
                                         fmt::format("misplaced: belongs on {}", vip.device)});
      }
    }
  }
  for (const VipOnDevice& managed : observed.state.vips) {
    if (wanted.count(managed)) continue;
    const Link* link = observed.link_named(managed.device);
    if (link && has_address(observed, managed.prefix, link->index)) {
      plan.actions.emplace_back(DelVip{managed, link->index, "no longer in policy"});
    }
  }

  // 2. Suppression: sysctls, then the nft table in one batch.
  for (SetSysctl& change : sysctl_changes(desired, observed)) plan.actions.emplace_back(std::move(change));
  for (NftChange& change : nft_changes(desired, observed)) plan.actions.emplace_back(std::move(change));

  // 3. VIPs last, once their suppression is verified.
  for (const VipOnDevice& vip : desired.vips) {
    const Link* link = observed.link_named(vip.device);
    if (link && !has_address(observed, vip.prefix, link->index)) {
      plan.actions.emplace_back(AddVip{vip, link->index, desired.vip_scope});
    }
  }
  return plan;
}

std::vector<std::string> verify_sysctls(const Desired& desired, const SysctlValues& values) {
  std::vector<std::string> reasons;
  if (!uses_sysctls(desired.method) || desired.vips.empty()) return reasons;  // nothing to hide
  for (const auto& [key, value] : desired.sysctls) {
    auto it = values.find(key);
    if (it == values.end()) {
      reasons.push_back(fmt::format("sysctl {} cannot be read", key.str()));
    } else if (it->second != value) {
      reasons.push_back(fmt::format("sysctl {} is {}, want {}", key.str(), it->second, value));
    }
  }
  for (const std::string& name : desired.arp_facing) {
    const int ignore = effective_sysctl(values, name, kArpIgnore);
    if (!arp_ignore_protects(ignore)) {
      reasons.push_back(fmt::format("arp_ignore on {} is effectively {}, which answers ARP for VIPs", name, ignore));
    }
    const int announce = effective_sysctl(values, name, kArpAnnounce);
    if (announce < desired.arp_announce) {
      reasons.push_back(
          fmt::format("arp_announce on {} is effectively {}, want {}", name, announce, desired.arp_announce));
    }
  }
  return reasons;
}

std::vector<std::string> verify_suppression(const Desired& desired, const Observed& observed) {
  std::vector<std::string> reasons = verify_sysctls(desired, observed.sysctls);
  if (uses_nftables(desired.method) && !desired.vips.empty()) {
    if (!observed.nft.exists) {
      reasons.push_back(fmt::format("nft table arp {} is missing", rules::kTable));
    } else {
      for (const NftChange& change : nft_changes(desired, observed)) {
        if (!std::holds_alternative<NftAdoptTable>(change)) reasons.push_back("nft table needs: " + describe(change));
      }
    }
  }
  return reasons;
}

Plan plan_removal(const Desired& desired, const Observed& observed) {
  Plan plan;
  std::set<VipOnDevice> ours(desired.vips.begin(), desired.vips.end());
  ours.insert(observed.state.vips.begin(), observed.state.vips.end());
  for (const VipOnDevice& vip : ours) {
    const Link* link = observed.link_named(vip.device);
    if (link && has_address(observed, vip.prefix, link->index)) {
      plan.actions.emplace_back(DelVip{vip, link->index, "removing arpguard"});
    }
  }
  if (observed.nft.exists) plan.actions.emplace_back(NftChange{NftDeleteTable{}});
  for (const auto& [key, origin] : observed.state.sysctl_origin) {
    auto it = observed.sysctls.find(key);
    if (it != observed.sysctls.end() && it->second != origin) {
      plan.actions.emplace_back(SetSysctl{key, it->second, origin});
    }
  }
  return plan;
}

}  // namespace arpguard
