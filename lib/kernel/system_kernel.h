// The real kernel: every adapter of lib/kernel/ opened together.
#pragma once

#include <memory>
#include <string>

#include "core/kernel_api.h"
#include "kernel/nft_tables.h"
#include "kernel/proc_sysctls.h"
#include "kernel/rtnl.h"
#include "kernel/state_file.h"

namespace arpguard {

class SystemKernel {
 public:
  /// Opens the rtnetlink and nfnetlink sockets; `state_dir` holds state.json.
  /// `remember_nft_elements`: see NftTables::open (for a one-shot apply).
  static Result<std::unique_ptr<SystemKernel>> open(const std::string& state_dir, bool remember_nft_elements = false);

  KernelApis apis() { return {*rtnl_, sysctls_, *nft_, state_}; }
  SysctlApi& sysctls() { return sysctls_; }
  NftTables& nft() { return *nft_; }
  ConntrackApi& conntrack() { return conntrack_; }
  /// The netlink ports of arpguard's own requests: notifications they cause carry one.
  std::vector<uint32_t> own_portids() const { return {rtnl_->portid(), nft_->portid()}; }

 private:
  SystemKernel(std::unique_ptr<Rtnl> rtnl, std::unique_ptr<NftTables> nft, std::string state_dir)
      : rtnl_(std::move(rtnl)), nft_(std::move(nft)), state_(std::move(state_dir)) {}

  std::unique_ptr<Rtnl> rtnl_;
  std::unique_ptr<NftTables> nft_;
  ProcSysctls sysctls_;
  ProcConntrack conntrack_;
  StateFile state_;
};

}  // namespace arpguard
