// One narrow interface per kernel surface. lib/kernel/ implements them over
// libnl-route-3, /proc/sys and libmnl+libnftnl; tests/unit/ has recording fakes.
// Implementations are used from one thread at a time.
#pragma once

#include <vector>

#include "core/model.h"
#include "core/plan.h"
#include "core/status.h"

namespace arpguard {

/// Links and IPv4 addresses (rtnetlink).
class AddressApi {
 public:
  virtual ~AddressApi() = default;
  virtual Result<std::vector<Link>> links() = 0;
  virtual Result<std::vector<Address>> addresses() = 0;
  /// Adds every VIP; one that exists already counts as added.
  virtual Status add(const std::vector<AddVip>& vips) = 0;
  /// Deletes every VIP; one that is gone already counts as deleted.
  virtual Status remove(const std::vector<DelVip>& vips) = 0;
};

/// net.ipv4.conf.* values.
class SysctlApi {
 public:
  virtual ~SysctlApi() = default;
  /// REQUIRES: names are the ARP sysctls; scopes are "all" plus links' names.
  virtual Result<SysctlValues> read(const std::vector<std::string>& scopes) = 0;
  virtual Status write(const SysctlKey& key, int value) = 0;
};

/// The table `arp arpguard`.
class NftApi {
 public:
  virtual ~NftApi() = default;
  virtual Result<ObservedArpTable> observe() = 0;
  /// Applies all changes in one atomic transaction.
  virtual Status apply(const std::vector<NftChange>& changes) = 0;
};

/// arpguard's own record of what it changed.
class StateApi {
 public:
  virtual ~StateApi() = default;
  virtual Result<ManagedState> load() = 0;
  virtual Status save(const ManagedState& state) = 0;
};

struct KernelApis {
  AddressApi& addresses;
  SysctlApi& sysctls;
  NftApi& nft;
  StateApi& state;
};

}  // namespace arpguard
