// SysctlApi over /proc/sys/net/ipv4/conf/*/arp_{ignore,announce,filter}.
// Stateless; safe from any thread.
#pragma once

#include <string>

#include "core/kernel_api.h"

namespace arpguard {

class ProcSysctls final : public SysctlApi {
 public:
  /// `root`: where net/ipv4/conf lives; "/proc/sys" outside tests.
  explicit ProcSysctls(std::string root = "/proc/sys") : root_(std::move(root)) {}

  /// Scopes whose directory is missing (a link that just went away) are skipped.
  Result<SysctlValues> read(const std::vector<std::string>& scopes) override;
  Status write(const SysctlKey& key, int value) override;

 private:
  std::string path(const SysctlKey& key) const { return root_ + "/net/ipv4/conf/" + key.scope + "/" + key.name; }
  std::string root_;
};

/// ConntrackApi over /proc/sys/net/netfilter/nf_conntrack_{count,max}.
class ProcConntrack final : public ConntrackApi {
 public:
  explicit ProcConntrack(std::string root = "/proc/sys") : root_(std::move(root)) {}
  Result<std::optional<ConntrackFill>> read() override;

 private:
  std::string root_;
};

}  // namespace arpguard
