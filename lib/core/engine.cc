#include "core/engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <future>
#include <optional>
#include <set>

#include "core/diff.h"
#include "core/observed_delta.h"
#include "core/overloaded.h"
#include "rules/tables.h"

namespace arpguard {

std::vector<nft::TableId> arpguard_tables() {
  return {rules::arp_table_id(), rules::ndp_table_id(), rules::nat_table_id(Family::kV4),
          rules::nat_table_id(Family::kV6)};
}

size_t ApplyOutcome::failures() const {
  return static_cast<size_t>(std::count_if(results.begin(), results.end(), [](const Status& s) { return !s.ok(); }));
}

Result<Observed> Engine::observe() {
  Observed observed;
  // The tables are read on a thread of their own, over their own socket: a
  // set of 100,000 elements keeps the kernel busy 0.3 s, time the rtnetlink
  // dumps, sysctls and the record take on the other core. Not when the last
  // read found them small: starting the thread would cost more.
  constexpr size_t kElementsWorthAThread = 1000;
  auto persist = kernel_.nft.persist_supported();
  if (!persist) return persist.error();
  observed.persist_supported = *persist;
  observed.nft_portid = kernel_.nft.portid();
  auto read_tables = [nft = &kernel_.nft] { return nft->observe(arpguard_tables()); };
  std::future<Result<std::map<nft::TableId, ObservedTable>>> tables =
      std::async(last_elements_ >= kElementsWorthAThread ? std::launch::async : std::launch::deferred, read_tables);

  auto links = kernel_.netlink.links();
  if (!links) return links.error();
  observed.links = std::move(*links);
  auto addresses = kernel_.netlink.addresses();
  if (!addresses) return addresses.error();
  observed.set_addresses(std::move(*addresses));
  auto routes = kernel_.netlink.routes();
  if (!routes) return routes.error();
  observed.local_routes = std::move(routes->local);
  observed.policy_routes = std::move(routes->policy);
  auto rules = kernel_.netlink.rules();
  if (!rules) return rules.error();
  observed.rules = std::move(*rules);

  std::vector<std::string> scopes{"all", "default"};
  for (const auto& [index, link] : observed.links) scopes.push_back(link.name);
  auto sysctls = kernel_.sysctls.read(scopes);
  if (!sysctls) return sysctls.error();
  observed.sysctls = std::move(*sysctls);

  // A record that cannot be read is a lost one: ownership unknown, which keeps (I8), never a reason to stop.
  auto state = kernel_.state.load();
  if (state) {
    observed.state = std::move(*state);
  } else {
    observed.state_error = state.error().message();
  }

  // An address the record owns that is on its device no more is arpguard's no
  // more: a crash between recording an address and adding it (or between
  // deleting one and forgetting it) leaves such entries, and an address the
  // administrator puts there later must not be taken for arpguard's.
  if (state) {
    StateChange absent;
    for (const ManagedVip& vip : observed.state.vips) {
      if (vip.kind != VipKind::kAddress) continue;
      const Link* device = observed.link_named(vip.device);
      if (!device || !observed.addresses.count(AddressKey{vip.prefix.address, vip.prefix.length, device->index})) {
        absent.removed.push_back(vip);
      }
    }
    if (!absent.empty() && kernel_.state.record(absent)) {
      for (const ManagedVip& vip : absent.removed) observed.state.vips.erase(vip);
    }
  }

  if (auto unsaved = kernel_.state.unsaved()) observed.state_unsaved = unsaved->message();
  observed.state_notice = kernel_.state.take_notice();

  auto tables_read = tables.get();
  if (!tables_read) return tables_read.error();
  observed.tables = std::move(*tables_read);
  last_elements_ = 0;
  for (const auto& [id, table] : observed.tables) {
    for (const auto& [name, set] : table.sets) last_elements_ += set.size();
  }
  observed.managed_lengths = {};
  for (const ManagedVip& vip : observed.state.vips) observed.managed_lengths.add(vip.prefix);
  for (const auto& [key, info] : observed.local_routes) {
    if (info.protocol == kRouteProtoArpguard) observed.managed_lengths.add(key.destination);
  }
  return observed;
}

namespace {

enum class Phase { kDelete, kRouting, kSysctl, kNft, kAdd, kCount };

constexpr size_t kVerifyWindow = 256;  // VIPs added per verification: one rtnetlink datagram

Phase phase_of(const Action& action) {
  return std::visit(Overloaded{
                        [](const DelAddress&) { return Phase::kDelete; },
                        [](const DelRoute&) { return Phase::kDelete; },
                        [](const RoutingChange&) { return Phase::kRouting; },
                        [](const SetSysctl&) { return Phase::kSysctl; },
                        [](const NftChange&) { return Phase::kNft; },
                        [](const AddAddress&) { return Phase::kAdd; },
                        [](const AddRoute&) { return Phase::kAdd; },
                    },
                    action);
}

RtnlChange as_rtnl(const Action& action) {
  return std::visit(Overloaded{
                        [](const DelAddress& a) -> RtnlChange { return a; },
                        [](const DelRoute& a) -> RtnlChange { return a; },
                        [](const AddAddress& a) -> RtnlChange { return a; },
                        [](const AddRoute& a) -> RtnlChange { return a; },
                        [](const RoutingChange& a) -> RtnlChange { return a; },
                        [](const SetSysctl&) -> RtnlChange { return DelAddress{}; },  // never: not an rtnetlink phase
                        [](const NftChange&) -> RtnlChange { return DelAddress{}; },
                    },
                    action);
}

// The VIP an rtnetlink action concerns, as arpguard records ownership.
ManagedVip managed_of(const RtnlChange& change) {
  return std::visit(Overloaded{
                        [](const DelAddress& a) { return ManagedVip{a.key.prefix(), VipKind::kAddress, a.device}; },
                        [](const DelRoute& a) { return ManagedVip{a.key.destination, VipKind::kRoute, a.device}; },
                        [](const AddAddress& a) { return ManagedVip{a.key.prefix(), VipKind::kAddress, a.device}; },
                        [](const AddRoute& a) { return ManagedVip{a.key.destination, VipKind::kRoute, a.device}; },
                        [](const RoutingChange&) { return ManagedVip{}; },  // not a VIP: never recorded
                    },
                    change);
}

}  // namespace

ApplyOutcome Engine::apply(const Plan& plan, Verifier& verifier) {
  ApplyOutcome out;
  out.results.assign(plan.actions.size(), Status());
  out.skipped.assign(plan.actions.size(), false);
  std::vector<size_t> phases[static_cast<int>(Phase::kCount)];
  for (size_t i = 0; i < plan.actions.size(); ++i) phases[static_cast<int>(phase_of(plan.actions[i]))].push_back(i);
  const std::vector<size_t>& deletions = phases[static_cast<int>(Phase::kDelete)];
  const std::vector<size_t>& routing = phases[static_cast<int>(Phase::kRouting)];
  const std::vector<size_t>& sysctls = phases[static_cast<int>(Phase::kSysctl)];
  const std::vector<size_t>& nft = phases[static_cast<int>(Phase::kNft)];
  const std::vector<size_t>& additions = phases[static_cast<int>(Phase::kAdd)];

  // `vips`: the changes are VIPs, whose ownership is recorded.
  auto run_rtnl = [&](const std::vector<size_t>& indices, bool vips, bool adding) {
    std::vector<RtnlChange> changes;
    changes.reserve(indices.size());
    for (size_t i : indices) changes.push_back(as_rtnl(plan.actions[i]));
    std::vector<Status> statuses = kernel_.netlink.apply(changes);
    for (size_t k = 0; k < indices.size(); ++k) {
      Status status = k < statuses.size() ? statuses[k] : Status::failure("rtnetlink: no answer");
      // Ownership of an address is the record's; of a route, its protocol
      // (a record written before says so of some routes too: it forgets them
      // as they go). Adopted addresses stay someone else's.
      const auto* address = std::get_if<AddAddress>(&changes[k]);
      if (status.ok() && vips && (!adding || (address && !address->adopted))) {
        (adding ? out.state.added : out.state.removed).push_back(managed_of(changes[k]));
      }
      out.results[indices[k]] = std::move(status);
    }
  };

  // 1. VIPs that go: removal first can never expose anything.
  for (size_t begin = 0; begin < deletions.size(); begin += kVerifyWindow) {
    if (begin > 0) verifier.between_windows();
    const size_t end = std::min(deletions.size(), begin + kVerifyWindow);
    run_rtnl(std::vector<size_t>(deletions.begin() + static_cast<std::ptrdiff_t>(begin),
                                 deletions.begin() + static_cast<std::ptrdiff_t>(end)),
             true, false);
  }

  // 2. Source routing, before the arp_filter it makes right.
  if (!routing.empty()) run_rtnl(routing, false, false);

  // 3. Sysctls, their values before arpguard recorded before the first write.
  if (!sysctls.empty()) {
    StateChange origins;
    for (size_t i : sysctls) {
      const auto& set = std::get<SetSysctl>(plan.actions[i]);
      origins.origins.emplace(set.key, set.from);
    }
    if (Status s = kernel_.state.record(origins); !s) out.state_error = s.error();
    out.state.origins = origins.origins;
    for (size_t i : sysctls) {
      const auto& set = std::get<SetSysctl>(plan.actions[i]);
      out.results[i] = kernel_.sysctls.write(set.key, set.to);
    }
  }

  // 4. The nft changes: one transaction, all or nothing.
  if (!nft.empty()) {
    std::vector<NftChange> changes;
    changes.reserve(nft.size());
    for (size_t i : nft) changes.push_back(std::get<NftChange>(plan.actions[i]));
    const Status status = kernel_.nft.apply(changes);
    for (size_t i : nft) out.results[i] = status;
  }

  // 5. VIPs last. The new addresses are recorded as arpguard's before the
  // first goes in: a crash between windows must not leave VIPs no record
  // owns, which a restart with a smaller policy would then keep. (A route is
  // known as arpguard's by its protocol.) Those not added are forgotten again
  // once the windows are done.
  std::vector<size_t> new_addresses;  // plan indices
  StateChange announced;
  for (size_t i : additions) {
    const auto* add = std::get_if<AddAddress>(&plan.actions[i]);
    if (!add || add->adopted || add->replace) continue;
    new_addresses.push_back(i);
    announced.added.push_back(managed_of(*add));
  }
  if (!announced.empty()) {
    if (Status s = kernel_.state.record(announced); !s) out.state_error = s.error();
  }

  // Each VIP goes in only once its suppression is verified (I1): again
  // for each window, as the kernel takes them, for a window of thousands of
  // VIPs takes seconds, and someone may take an element away meanwhile.
  for (size_t begin = 0; begin < additions.size(); begin += kVerifyWindow) {
    if (begin > 0) verifier.between_windows();
    if (begin > 0 && verifier.interrupted()) {
      const Reason why = not_ready(ReasonKind::kVipNotSuppressed,
                                   "someone else changed arpguard's state while VIPs were being added: the rest wait "
                                   "for a new plan");
      for (size_t k = begin; k < additions.size(); ++k) {
        out.results[additions[k]] = Status::failure("not added yet: " + why.text);
        out.skipped[additions[k]] = true;
      }
      out.blocked.push_back(why);
      break;
    }
    const size_t end = std::min(additions.size(), begin + kVerifyWindow);
    std::vector<IpPrefix> vips;
    for (size_t k = begin; k < end; ++k) vips.push_back(managed_of(as_rtnl(plan.actions[additions[k]])).prefix);
    const std::map<IpPrefix, std::vector<Reason>> gaps = verifier.gaps_before_adding(vips);
    std::vector<size_t> protected_adds;
    for (size_t k = begin; k < end; ++k) {
      auto it = gaps.find(vips[k - begin]);
      if (it == gaps.end() || it->second.empty()) {
        protected_adds.push_back(additions[k]);
        continue;
      }
      out.results[additions[k]] =
          Status::failure(fmt::format("suppression not verified, VIP not added: {}", it->second.front().text));
      out.skipped[additions[k]] = true;
      for (const Reason& r : it->second) {
        if (std::find(out.blocked.begin(), out.blocked.end(), r) == out.blocked.end()) out.blocked.push_back(r);
      }
    }
    if (!protected_adds.empty()) run_rtnl(protected_adds, true, true);
  }

  std::vector<ManagedVip> not_added;
  for (size_t i : new_addresses) {
    if (!out.results[i].ok()) not_added.push_back(managed_of(as_rtnl(plan.actions[i])));
  }
  if (!out.state.added.empty() || !out.state.removed.empty() || !not_added.empty()) {
    StateChange ownership{out.state.added, out.state.removed, {}, false};
    ownership.removed.insert(ownership.removed.end(), not_added.begin(), not_added.end());
    if (Status s = kernel_.state.record(ownership); !s) out.state_error = s.error();
  }
  return out;
}

std::map<IpPrefix, std::vector<Reason>> gaps_before_adding(const Desired& desired, const Observed& observed,
                                                           const std::vector<IpPrefix>& vips) {
  std::map<IpPrefix, std::vector<Reason>> out;
  std::optional<std::vector<Reason>> sysctls;               // server-wide, computed once
  std::map<nft::TableId, std::vector<Reason>> tables;       // per table, computed once
  for (const IpPrefix& prefix : vips) {
    const DesiredVip* vip = desired.vips.bound_containing(prefix.address);
    if (!vip || vip->prefix != prefix) continue;  // not a VIP of the policy: nothing to hide it with
    std::vector<Reason> reasons;
    if (prefix.family() == Family::kV4 && uses_sysctls(vip->method)) {
      if (!sysctls) sysctls = sysctl_gaps(desired, observed.sysctls);
      reasons.insert(reasons.end(), sysctls->begin(), sysctls->end());
    }
    if (uses_nftables(vip->method)) {
      const nft::TableId table = suppression_table(prefix);
      auto it = tables.find(table);
      if (it == tables.end()) it = tables.emplace(table, table_gaps(desired, observed, table)).first;
      reasons.insert(reasons.end(), it->second.begin(), it->second.end());
      for (Reason& r : vip_suppression_gaps(desired, observed, *vip)) reasons.push_back(std::move(r));
    }
    if (!reasons.empty()) out.emplace(prefix, std::move(reasons));
  }
  return out;
}

std::map<IpPrefix, std::vector<Reason>> ReadBackVerifier::gaps_before_adding(const std::vector<IpPrefix>& vips) {
  auto everyone = [&](Reason reason) {
    std::map<IpPrefix, std::vector<Reason>> out;
    for (const IpPrefix& vip : vips) out[vip].push_back(reason);
    return out;
  };
  std::vector<std::string> scopes{"all"};
  scopes.insert(scopes.end(), desired_.host.arp_facing.begin(), desired_.host.arp_facing.end());
  auto sysctls = kernel_.sysctls.read(scopes);
  if (!sysctls) return everyone(not_ready(ReasonKind::kObserveFailed, sysctls.error().message()));
  readback_.sysctls = std::move(*sysctls);
  // The tables whole, elements too, read again whenever anyone has committed
  // since the last read (the ruleset's generation moved): what the plan read
  // plus the transaction is not proof. The adapter of `arpguard apply` serves
  // the elements from memory while the generation proves its own commit the
  // only one since it read them.
  auto generation = kernel_.nft.generation();
  if (!generation) return everyone(not_ready(ReasonKind::kObserveFailed, generation.error().message()));
  if (!tables_generation_ || *tables_generation_ != *generation) {
    tables_generation_.reset();
    auto tables = kernel_.nft.observe(arpguard_tables());
    if (!tables) return everyone(not_ready(ReasonKind::kObserveFailed, tables.error().message()));
    readback_.tables = std::move(*tables);
    tables_generation_ = *generation;  // read after it: a commit in between shows as a move at the next call
  }
  return arpguard::gaps_before_adding(desired_, readback_, vips);
}

}  // namespace arpguard
