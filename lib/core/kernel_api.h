// One narrow interface per kernel surface. lib/kernel/ implements them over
// libnl-route-3, /proc/sys and libmnl+libnftnl; tests/unit/ has a fake that
// can fail any call with any errno. Implementations are used from one thread.
#pragma once

#include <map>
#include <optional>
#include <variant>
#include <vector>

#include "core/flux.h"
#include "core/model.h"
#include "core/plan.h"
#include "core/status.h"

namespace arpguard {

struct RouteTables {
  std::map<RouteKey, RouteInfo> local;
  std::map<PolicyRouteKey, PolicyRouteInfo> policy;
};

using RtnlChange = std::variant<DelAddress, DelRoute, AddAddress, AddRoute, RoutingChange>;

/// Links, addresses of both families, and local routes (rtnetlink).
class NetlinkApi {
 public:
  virtual ~NetlinkApi() = default;
  virtual Result<std::map<int, Link>> links() = 0;
  virtual Result<std::map<AddressKey, AddressInfo>> addresses() = 0;
  /// Type local routes of table local, both families; and IPv4 unicast routes
  /// of tables other than local, main and default (one dump).
  virtual Result<RouteTables> routes() = 0;
  /// IPv4 rules that select a table by source address.
  virtual Result<std::map<RoutingRuleKey, RoutingRuleInfo>> rules() = 0;
  /// `ip route get ASKER from ADDRESS` for each query: the interface the
  /// kernel's route leaves through. A query that fails is left out.
  virtual RouteAnswers route_lookups(const std::vector<RouteQuery>& queries) = 0;
  /// Carries out every change, pipelined; one status per change, in order.
  /// Idempotent by identity: an address added already, or gone already, is done.
  virtual std::vector<Status> apply(const std::vector<RtnlChange>& changes) = 0;
};

/// net.ipv4.conf.* ARP values, and conntrack's fill for the redirect method.
class SysctlApi {
 public:
  virtual ~SysctlApi() = default;
  /// REQUIRES: scopes are "all", "default" or links' names. A scope whose
  /// directory is gone (a link that just went away) is skipped.
  virtual Result<SysctlValues> read(const std::vector<std::string>& scopes) = 0;
  virtual Status write(const SysctlKey& key, int value) = 0;
};

struct ConntrackFill {
  uint64_t entries = 0;
  uint64_t max = 0;
};

class ConntrackApi {
 public:
  virtual ~ConntrackApi() = default;
  /// nullopt when conntrack is not loaded.
  virtual Result<std::optional<ConntrackFill>> read() = 0;
};

/// arpguard's nft tables.
class NftApi {
 public:
  virtual ~NftApi() = default;
  /// Whether the kernel knows NFT_TABLE_F_PERSIST (asked once).
  virtual Result<bool> persist_supported() = 0;
  /// The netlink port that owns tables this adapter creates or adopts.
  virtual uint32_t portid() const = 0;
  /// Those of `tables` that exist, with sets, elements, chains and rules.
  virtual Result<std::map<nft::TableId, ObservedTable>> observe(const std::vector<nft::TableId>& tables) = 0;
  /// The same without the sets' elements: a few messages, where a set of
  /// 100,000 elements costs the kernel 0.3 s to read back.
  virtual Result<std::map<nft::TableId, ObservedTable>> observe_structure(const std::vector<nft::TableId>& tables) = 0;
  /// Applies every change in one atomic transaction.
  virtual Status apply(const std::vector<NftChange>& changes) = 0;
  /// The ruleset's generation: it moves with every commit, anyone's.
  virtual Result<uint32_t> generation() = 0;
};

/// What changed in arpguard's record of ownership.
struct StateChange {
  std::vector<ManagedVip> added;
  std::vector<ManagedVip> removed;
  SysctlValues origins;  ///< first-write origins to record (existing ones are kept)
  bool clear = false;    ///< forget everything (after on_stop = "remove")

  bool empty() const { return added.empty() && removed.empty() && origins.empty() && !clear; }
};

/// arpguard's own record of what it changed. The implementation keeps the
/// whole record and rewrites it only when a change alters it.
class StateApi {
 public:
  virtual ~StateApi() = default;
  virtual Result<ManagedState> load() = 0;
  virtual Status record(const StateChange& change) = 0;
  /// Why the record in memory is not on disk: a write failed and no later
  /// one has succeeded. Nothing when the file holds it all.
  virtual std::optional<Error> unsaved() const { return std::nullopt; }
  /// Something about the record worth a line in the log, said once.
  virtual std::optional<std::string> take_notice() { return std::nullopt; }
};

struct KernelApis {
  NetlinkApi& netlink;
  SysctlApi& sysctls;
  NftApi& nft;
  StateApi& state;
};

/// The tables arpguard may own: observed at start and at every audit.
std::vector<nft::TableId> arpguard_tables();

}  // namespace arpguard
