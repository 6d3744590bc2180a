#include "kernel/system_kernel.h"

namespace arpguard {

Result<std::unique_ptr<SystemKernel>> SystemKernel::open(const std::string& state_dir) {
  auto addresses = RtnlAddresses::open();
  if (!addresses) return addresses.error();
  auto nft = NftTable::open();
  if (!nft) return nft.error();
  return std::unique_ptr<SystemKernel>(new SystemKernel(std::move(*addresses), std::move(*nft), state_dir));
}

}  // namespace arpguard
