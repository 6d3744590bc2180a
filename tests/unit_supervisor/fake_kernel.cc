#include "fake_kernel.h"

#include <fmt/format.h>

#include <cerrno>

#include "core/overloaded.h"
#include "core/status_snapshot.h"

namespace arpguard::testing {

namespace {

AddressKey key_of(const char* prefix, int link) {
  const IpPrefix p = *IpPrefix::parse(prefix);
  return {p.address, p.length, link};
}

}  // namespace

FakeKernel::FakeKernel() {
  world.links[1] = Link{1, "lo", true, false, true, {}};
  world.links[2] = Link{2, "eth0", false, false, true, {}};
  world.put_address(key_of("127.0.0.1/8", 1), AddressInfo{kScopeHost, kAddrFlagPermanent});
  world.put_address(key_of("::1/128", 1), AddressInfo{kScopeHost, kAddrFlagPermanent});
  world.put_address(key_of("192.0.2.1/24", 2), AddressInfo{kScopeGlobal, kAddrFlagPermanent});
  for (const char* scope : {"all", "default", "lo", "eth0"}) {
    for (const char* name : {kArpIgnore, kArpAnnounce, kArpFilter}) world.sysctls[{scope, name}] = 0;
  }
  world.persist_supported = true;
}

std::optional<int> FakeKernel::failure(Call call) {
  if (auto it = fail_always.find(call); it != fail_always.end()) return it->second;
  auto it = fail_next.find(call);
  if (it == fail_next.end() || it->second.empty()) return std::nullopt;
  const int error = it->second.front();
  it->second.erase(it->second.begin());
  return error;
}

void FakeKernel::notify(uint32_t port, Delta delta) { events.push_back({port, std::move(delta)}); }

void FakeKernel::wrote(const std::string& what) {
  writes.push_back(what);
  if (after_write) after_write(what);
}

int FakeKernel::link_index(const std::string& name) const {
  const Link* link = world.link_named(name);
  return link ? link->index : 0;
}

// ---- others ----

namespace {
// As the kernel says who changed an address: IPv4 names the requesting
// socket; IPv6 (inet6_ifa_notify) never does, and says 0, for arpguard's own too.
uint32_t address_sender(const AddressKey& key, uint32_t requester) {
  return key.address.family == Family::kV6 ? 0 : requester;
}
}  // namespace

void FakeKernel::foreign_delete_address(const AddressKey& key) {
  world.remove_address(key);
  notify(address_sender(key, kOtherPort), delta::AddressRemoved{key});
}

void FakeKernel::foreign_add_address(const AddressKey& key, AddressInfo info) {
  world.put_address(key, info);
  notify(address_sender(key, kOtherPort), delta::AddressUpsert{key, info});
}

void FakeKernel::foreign_delete_route(const RouteKey& key) {
  world.local_routes.erase(key);
  notify(kOtherPort, delta::RouteRemoved{key});
}

void FakeKernel::foreign_delete_table(const nft::TableId& id) {
  world.tables.erase(id);
  notify(kOtherPort, delta::TableRemoved{id});
}

void FakeKernel::foreign_delete_elements(const SetRef& ref) {
  auto table = world.tables.find(ref.table);
  if (table == world.tables.end()) return;
  auto set = table->second.sets.find(ref.set);
  if (set == table->second.sets.end()) return;
  delta::ElementsRemoved removed{ref, {set->second.points.begin(), set->second.points.end()},
                                 {set->second.elements.begin(), set->second.elements.end()}};
  set->second.points.clear();
  set->second.elements.clear();
  notify(kOtherPort, std::move(removed));
}

void FakeKernel::foreign_delete_element(const SetRef& ref, const IpAddress& address) {
  auto table = world.tables.find(ref.table);
  if (table == world.tables.end()) return;
  auto set = table->second.sets.find(ref.set);
  if (set == table->second.sets.end()) return;
  const std::vector<std::pair<IpAddress, bool>> points{{address, true}, {address.next(), false}};
  for (const auto& point : points) set->second.points.erase(point);
  notify(kOtherPort, delta::ElementsRemoved{ref, points, {}});
}

void FakeKernel::foreign_delete_rule(const nft::TableId& id, uint64_t handle) {
  auto table = world.tables.find(id);
  if (table == world.tables.end()) return;
  table->second.rules.erase(handle);
  notify(kOtherPort, delta::RuleRemoved{id, handle});
}

void FakeKernel::foreign_set_sysctl(const SysctlKey& key, int value) { world.sysctls[key] = value; }

void FakeKernel::remove_link(int index) {
  std::vector<AddressKey> gone;
  for (const auto& [key, info] : world.addresses) {
    if (key.link_index == index) gone.push_back(key);
  }
  for (const AddressKey& key : gone) foreign_delete_address(key);
  world.links.erase(index);
  notify(0, delta::LinkRemoved{index});
}

// ---- NetlinkApi ----

Result<std::map<int, Link>> FakeKernel::links() {
  if (auto e = failure(Call::kLinks)) return Error{"RTM_GETLINK dump", *e};
  if (during_dump) during_dump();
  return world.links;
}

Result<std::map<AddressKey, AddressInfo>> FakeKernel::addresses() {
  if (auto e = failure(Call::kAddresses)) return Error{"RTM_GETADDR dump", *e};
  return world.addresses;
}

Result<RouteTables> FakeKernel::routes() {
  if (auto e = failure(Call::kRoutes)) return Error{"RTM_GETROUTE dump", *e};
  return RouteTables{world.local_routes, world.policy_routes};
}

Result<std::map<RoutingRuleKey, RoutingRuleInfo>> FakeKernel::rules() {
  if (auto e = failure(Call::kRoutes)) return Error{"RTM_GETRULE dump", *e};
  return world.rules;
}

std::vector<Status> FakeKernel::apply(const std::vector<RtnlChange>& changes) {
  std::vector<Status> out;
  for (const RtnlChange& change : changes) {
    out.push_back(std::visit(
        Overloaded{
            [&](const DelAddress& a) -> Status {
              if (auto e = failure(Call::kRtnlDelete)) return Status::failure("RTM_DELADDR " + a.key.prefix().str(), *e);
              if (world.addresses.count(a.key)) {
                world.remove_address(a.key);
                notify(address_sender(a.key, kOwnRtnlPort), delta::AddressRemoved{a.key});
                wrote("del address " + a.key.prefix().str() + " dev " + a.device);
              }
              return Status();
            },
            [&](const AddAddress& a) -> Status {
              if (auto e = failure(Call::kRtnlAdd)) return Status::failure("RTM_NEWADDR " + a.key.prefix().str(), *e);
              if (!world.links.count(a.key.link_index)) return Status::failure("RTM_NEWADDR " + a.key.prefix().str(), ENODEV);
              if (world.addresses.count(a.key) && !a.replace) return Status();
              uint32_t flags = kAddrFlagPermanent;
              if (a.deprecated) flags |= kAddrFlagDeprecated | kAddrFlagNoDad;
              const AddressInfo info{a.scope, flags};
              world.put_address(a.key, info);
              notify(address_sender(a.key, kOwnRtnlPort), delta::AddressUpsert{a.key, info});
              wrote("add address " + a.key.prefix().str() + " dev " + a.device);
              return Status();
            },
            [&](const DelRoute& a) -> Status {
              if (auto e = failure(Call::kRtnlDelete)) return Status::failure("RTM_DELROUTE " + a.key.destination.str(), *e);
              if (world.local_routes.erase(a.key)) {
                notify(kOwnRtnlPort, delta::RouteRemoved{a.key});
                wrote("del route " + a.key.destination.str());
              }
              return Status();
            },
            [&](const AddRoute& a) -> Status {
              if (auto e = failure(Call::kRtnlAdd)) return Status::failure("RTM_NEWROUTE " + a.key.destination.str(), *e);
              if (!world.links.count(a.link_index)) return Status::failure("RTM_NEWROUTE " + a.key.destination.str(), ENODEV);
              if (world.local_routes.count(a.key)) return Status();
              const RouteInfo info{a.link_index, kRouteProtoArpguard, kScopeHost};
              world.local_routes[a.key] = info;
              notify(kOwnRtnlPort, delta::RouteUpsert{a.key, info});
              wrote("add route " + a.key.destination.str());
              return Status();
            },
            [&](const RoutingChange& a) -> Status {
              if (auto e = failure(a.add ? Call::kRtnlAdd : Call::kRtnlDelete)) return Status::failure(describe(Action{a}), *e);
              std::visit(Overloaded{
                             [&](const PolicyRoute& r) {
                               if (a.add) {
                                 world.policy_routes[r.key] = r.info;
                               } else {
                                 world.policy_routes.erase(r.key);
                               }
                             },
                             [&](const RoutingRule& r) {
                               if (a.add) {
                                 world.rules[r.key] = r.info;
                               } else {
                                 world.rules.erase(r.key);
                               }
                             },
                         },
                         a.object);
              wrote(describe(Action{a}));
              return Status();
            },
        },
        change));
  }
  return out;
}

// ---- SysctlApi ----

Result<SysctlValues> FakeKernel::read(const std::vector<std::string>& scopes) {
  if (auto e = failure(Call::kSysctlRead)) return Error{"read sysctl", *e};
  SysctlValues out;
  for (const auto& [key, value] : world.sysctls) {
    if (std::find(scopes.begin(), scopes.end(), key.scope) != scopes.end()) out[key] = value;
  }
  return out;
}

Status FakeKernel::write(const SysctlKey& key, int value) {
  if (auto e = failure(Call::kSysctlWrite)) return Status::failure(fmt::format("write sysctl {} = {}", key.str(), value), *e);
  world.sysctls[key] = value;
  wrote(fmt::format("sysctl {}={}", key.str(), value));
  return Status();
}

// ---- NftApi ----

Result<std::map<nft::TableId, ObservedTable>> FakeKernel::observe(const std::vector<nft::TableId>& tables) {
  if (auto e = failure(Call::kNftObserve)) return Error{"GETTABLE", *e};
  std::map<nft::TableId, ObservedTable> out;
  for (const nft::TableId& id : tables) {
    if (auto it = world.tables.find(id); it != world.tables.end()) out.emplace(id, it->second);
  }
  return out;
}

Result<uint32_t> FakeKernel::generation() {
  if (auto e = failure(Call::kNftObserve)) return Error{"GETGEN", *e};
  std::string view;
  for (const auto& [id, table] : world.tables) {
    view += fmt::format("{} {} {}|", id.str(), table.flags, table.chains.size() + table.rules.size());
    for (const auto& [name, set] : table.sets) {
      view += name + ":";
      for (const auto& [point, start] : set.points) view += point.str() + (start ? "+" : "-");
      for (const nft::Element& e : set.elements) view += e.addresses.first.str() + "," + e.addresses.last.str() + ";";
    }
  }
  return static_cast<uint32_t>(std::hash<std::string>{}(view));
}

Result<std::map<nft::TableId, ObservedTable>> FakeKernel::observe_structure(const std::vector<nft::TableId>& tables) {
  auto out = observe(tables);
  if (!out) return out;
  for (auto& [id, table] : *out) {
    for (auto& [name, set] : table.sets) {
      set.points.clear();
      set.elements.clear();
    }
  }
  return out;
}

Status FakeKernel::apply(const std::vector<NftChange>& changes) {
  if (auto e = failure(Call::kNftApply)) return Status::failure("nft batch", *e);
  // All or nothing: changes go to a copy, kept only when every one is valid.
  Observed next;
  next.tables = world.tables;
  std::vector<Delta> deltas;
  auto fail = [](const std::string& what, int error) { return Status::failure("nft: " + what, error); };
  for (const NftChange& change : changes) {
    const std::string what = describe(change);
    std::optional<Status> bad = std::visit(
        Overloaded{
            [&](const nft_change::CreateTable& c) -> std::optional<Status> {
              auto it = next.tables.find(c.table);
              const bool exists = it != next.tables.end();
              if (exists && it->second.owner && *it->second.owner != kOwnNftPort) return fail(what, EPERM);
              const bool owned = (c.flags & nft::kTableFlagOwner) != 0;
              delta::TableUpsert up{c.table, exists && !c.adopt ? it->second.flags : c.flags,
                                    owned ? std::optional<uint32_t>(kOwnNftPort) : std::nullopt};
              deltas.push_back(up);
              apply_delta(next, deltas.back());
              return std::nullopt;
            },
            [&](const nft_change::DeleteTable& c) -> std::optional<Status> {
              if (!next.tables.count(c.table)) return fail(what, ENOENT);
              deltas.push_back(delta::TableRemoved{c.table});
              apply_delta(next, deltas.back());
              return std::nullopt;
            },
            [&](const nft_change::CreateSet& c) -> std::optional<Status> {
              if (!next.tables.count(c.table)) return fail(what, ENOENT);
              ObservedSet set;
              set.flags = c.set.flags();
              set.key_type = c.set.key_type();
              set.key_len = c.set.key_len();
              set.data_type = c.set.data ? static_cast<uint32_t>(*c.set.data) : 0;
              set.data_len = c.set.data ? 2 : 0;
              deltas.push_back(delta::SetUpsert{c.table, c.set.name, set});
              apply_delta(next, deltas.back());
              return std::nullopt;
            },
            [&](const nft_change::CreateChain& c) -> std::optional<Status> {
              if (!next.tables.count(c.table)) return fail(what, ENOENT);
              deltas.push_back(delta::ChainUpsert{c.table, c.chain.name,
                                                  ObservedChain{c.chain.type, c.chain.hook, c.chain.priority, 1, true}});
              apply_delta(next, deltas.back());
              return std::nullopt;
            },
            [&](const nft_change::AddElements& c) -> std::optional<Status> {
              auto table = next.tables.find(c.set.table);
              if (table == next.tables.end() || !table->second.sets.count(c.set.set)) return fail(what, ENOENT);
              const ObservedSet& set = table->second.sets.at(c.set.set);
              delta::ElementsAdded added{c.set, {}, {}};
              for (const nft::Element& e : c.elements) {
                for (const nft::Element& existing : set.elements_overlapping(e.addresses)) {
                  if (c.shape.concatenated() ? existing == e : true) return fail(what, EEXIST);
                }
                if (c.shape.concatenated()) {
                  added.elements.push_back(e);
                } else {
                  for (auto& p : interval_points(e)) added.points.push_back(p);
                }
              }
              deltas.push_back(added);
              apply_delta(next, deltas.back());
              return std::nullopt;
            },
            [&](const nft_change::DelElements& c) -> std::optional<Status> {
              auto table = next.tables.find(c.set.table);
              if (table == next.tables.end() || !table->second.sets.count(c.set.set)) return fail(what, ENOENT);
              const ObservedSet& set = table->second.sets.at(c.set.set);
              delta::ElementsRemoved removed{c.set, {}, {}};
              for (const nft::Element& e : c.elements) {
                if (c.shape.concatenated()) {
                  if (!set.elements.count(e)) return fail(what, ENOENT);
                  removed.elements.push_back(e);
                } else {
                  for (auto& p : interval_points(e)) {
                    if (!set.points.count(p)) return fail(what, ENOENT);
                    removed.points.push_back(p);
                  }
                }
              }
              deltas.push_back(removed);
              apply_delta(next, deltas.back());
              return std::nullopt;
            },
            [&](const nft_change::AddRule& c) -> std::optional<Status> {
              auto table = next.tables.find(c.table);
              if (table == next.tables.end() || !table->second.chains.count(c.rule.chain)) return fail(what, ENOENT);
              ObservedRule rule{next_handle_++, c.rule.chain, nft::normalized(c.rule.exprs), 0, 0};
              deltas.push_back(delta::RuleUpsert{c.table, rule});
              apply_delta(next, deltas.back());
              return std::nullopt;
            },
            [&](const nft_change::DelRule& c) -> std::optional<Status> {
              auto table = next.tables.find(c.table);
              if (table == next.tables.end() || !table->second.rules.count(c.handle)) return fail(what, ENOENT);
              deltas.push_back(delta::RuleRemoved{c.table, c.handle});
              apply_delta(next, deltas.back());
              return std::nullopt;
            },
        },
        change);
    if (bad) return *bad;
  }
  world.tables = std::move(next.tables);
  for (Delta& d : deltas) notify(kOwnNftPort, std::move(d));
  wrote(fmt::format("nft batch of {}", changes.size()));
  return Status();
}

// ---- StateApi ----

Result<ManagedState> FakeKernel::load() {
  if (auto e = failure(Call::kStateLoad)) return Error{"read state.json", *e};
  return state_record;
}

Status FakeKernel::record(const StateChange& change) {
  if (auto e = failure(Call::kStateRecord)) {
    record_failure_ = Error{"write state.json.tmp", *e};
    return Status(*record_failure_);
  }
  record_failure_.reset();
  if (change.clear) state_record = ManagedState{};
  for (const ManagedVip& vip : change.removed) state_record.vips.erase(vip);
  for (const ManagedVip& vip : change.added) state_record.vips.insert(vip);
  for (const auto& [key, value] : change.origins) state_record.sysctl_origin.emplace(key, value);
  return Status();
}

input::Events FakeKernel::drain() {
  input::Events out;
  if (lose_events) {
    lose_events = false;
    events.clear();
    out.lost = true;
    return out;
  }
  out.events.assign(events.begin(), events.end());
  out.nftables_whole = nftables_whole;
  events.clear();
  return out;
}

void FakeHost::log(LogLevel level, const std::string& text) {
  logs.push_back(fmt::format("<{}>{}", static_cast<int>(level), text));
  if (echo) fmt::print("<{}>{}\n", static_cast<int>(level), text);
}

}  // namespace arpguard::testing
