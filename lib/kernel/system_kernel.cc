#include "kernel/system_kernel.h"

namespace arpguard {

Result<std::unique_ptr<SystemKernel>> SystemKernel::open(const std::string& state_dir, bool remember_nft_elements) {
  auto rtnl = Rtnl::open();
  if (!rtnl) return rtnl.error();
  auto nft = NftTables::open(state_dir.empty() ? std::string() : state_dir + "/kernel-features", remember_nft_elements);
  if (!nft) return nft.error();
  return std::unique_ptr<SystemKernel>(new SystemKernel(std::move(*rtnl), std::move(*nft), state_dir));
}

}  // namespace arpguard
