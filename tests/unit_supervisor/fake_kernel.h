// A fake kernel for unit tests of the pure core: it holds what a kernel holds
// (as an Observed), carries out changes the way the kernel does (nft batches
// all or nothing, interval elements as start and end points), notifies every
// change as a KernelEvent, and can fail any call with any errno. A hook runs
// after every single write, so a test can check an invariant at every step.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/driver.h"
#include "core/kernel_api.h"

namespace arpguard::testing {

/// The calls a test can make fail.
enum class Call {
  kLinks, kAddresses, kRoutes, kSysctlRead, kSysctlWrite, kNftObserve, kNftApply, kRtnlAdd, kRtnlDelete,
  kStateLoad, kStateRecord, kConntrack,
};

class FakeKernel final : public NetlinkApi, public SysctlApi, public NftApi, public StateApi, public ConntrackApi {
 public:
  static constexpr uint32_t kOwnRtnlPort = 1001;
  static constexpr uint32_t kOwnNftPort = 1002;
  static constexpr uint32_t kOtherPort = 4242;

  /// lo (1) with 127.0.0.1/8 and ::1, eth0 (2) with 192.0.2.1/24; ARP sysctls 0; PERSIST known.
  FakeKernel();

  KernelApis apis() { return {*this, *this, *this, *this}; }

  Observed world;                                   ///< what the kernel holds
  ManagedState state_record;                        ///< the state file
  std::deque<KernelEvent> events;                   ///< notifications not yet read
  bool lose_events = false;                         ///< notifications overflow: the next read says lost
  bool nftables_whole = true;                       ///< each change is a whole commit; false: a read stops inside one
  std::map<Call, int> fail_always;                  ///< call -> errno, until removed
  std::map<Call, std::vector<int>> fail_next;       ///< call -> errnos for the next calls
  std::function<void(const std::string&)> after_write;  ///< called after every change, with what it was
  std::function<void()> during_dump;                     ///< called as a full read starts (at links())
  std::vector<std::string> writes;                  ///< every change, in order

  // ---- what others do (notified as a foreign process would be) ----
  void foreign_delete_address(const AddressKey& key);
  void foreign_add_address(const AddressKey& key, AddressInfo info);
  void foreign_delete_route(const RouteKey& key);
  void foreign_delete_table(const nft::TableId& id);
  /// Gone without a notification: an owner table freed with its owner's socket.
  void vanish_table(const nft::TableId& id) { world.tables.erase(id); }
  void foreign_delete_elements(const SetRef& set);
  /// The element of the single address `address` (a plain interval set).
  void foreign_delete_element(const SetRef& set, const IpAddress& address);
  void foreign_delete_rule(const nft::TableId& id, uint64_t handle);
  void foreign_set_sysctl(const SysctlKey& key, int value);  ///< sysctls are never notified
  void remove_link(int index);

  int link_index(const std::string& name) const;

  // NetlinkApi
  Result<std::map<int, Link>> links() override;
  Result<std::map<AddressKey, AddressInfo>> addresses() override;
  Result<RouteTables> routes() override;
  Result<std::map<RoutingRuleKey, RoutingRuleInfo>> rules() override;
  RouteAnswers route_lookups(const std::vector<RouteQuery>&) override { return {}; }
  std::vector<Status> apply(const std::vector<RtnlChange>& changes) override;
  // SysctlApi
  Result<SysctlValues> read(const std::vector<std::string>& scopes) override;
  Status write(const SysctlKey& key, int value) override;
  // NftApi
  Result<bool> persist_supported() override { return world.persist_supported; }
  uint32_t portid() const override { return kOwnNftPort; }
  Result<std::map<nft::TableId, ObservedTable>> observe(const std::vector<nft::TableId>& tables) override;
  Result<std::map<nft::TableId, ObservedTable>> observe_structure(const std::vector<nft::TableId>& tables) override;
  Status apply(const std::vector<NftChange>& changes) override;
  /// Moves whenever the tables change, however they were changed (tests write `world` directly).
  Result<uint32_t> generation() override;
  // StateApi
  Result<ManagedState> load() override;
  Status record(const StateChange& change) override;
  std::optional<Error> unsaved() const override { return record_failure_; }
  // ConntrackApi
  Result<std::optional<ConntrackFill>> read() override { return std::optional<ConntrackFill>(); }

  /// The events a host would read now (and forget).
  input::Events drain();

 private:
  std::optional<int> failure(Call call);
  void notify(uint32_t port, Delta delta);
  void wrote(const std::string& what);
  uint64_t next_handle_ = 100;
  std::optional<Error> record_failure_;  ///< the last record() failed with it
};

/// A Host with a settable clock that reads the fake kernel's events.
class FakeHost final : public Host {
 public:
  explicit FakeHost(FakeKernel& kernel) : kernel_(kernel) {}
  input::Events drain_events() override { return kernel_.drain(); }
  void run_checks(const std::vector<CheckTarget>& targets, double) override { checks_run += targets.size(); }
  void notify(const std::string& text) override { notifications.push_back(text); }
  void log(LogLevel level, const std::string& text) override;
  void persist_drain(bool draining) override { drain_file = draining; }
  void probe(const std::vector<command::ProbeTarget>& targets) override {
    probes.insert(probes.end(), targets.begin(), targets.end());
  }
  double now() const override { return clock; }
  void serve_queries() override { ++queries_served; }

  double clock = 1000;
  int queries_served = 0;  ///< serve_queries() calls: one between each two windows of an apply
  std::vector<std::string> logs;          ///< "<3>text"
  std::vector<std::string> notifications;
  size_t checks_run = 0;
  std::vector<command::ProbeTarget> probes;
  bool drain_file = false;
  bool echo = false;                       ///< print logs as they come (debugging)

 private:
  FakeKernel& kernel_;
};

}  // namespace arpguard::testing
