// NftApi over libmnl + libnftnl: the table `arp arpguard`.
//
// Holds one netlink socket for its lifetime: when the table is created or
// adopted with NFT_TABLE_F_OWNER, that socket is its owner, and only it may
// change the table. Every apply() is one atomic nfnetlink batch.
// Not thread-safe: one owner.
#pragma once

#include <memory>
#include <optional>

#include "core/kernel_api.h"

struct mnl_socket;

namespace arpguard {

class NftTable final : public NftApi {
 public:
  static Result<std::unique_ptr<NftTable>> open();
  ~NftTable() override;

  Result<ObservedArpTable> observe() override;
  Status apply(const std::vector<NftChange>& changes) override;

  /// The netlink port id that owns the table after a create or adopt.
  uint32_t portid() const { return portid_; }

 private:
  NftTable(mnl_socket* sock, uint32_t portid) : sock_(sock), portid_(portid) {}
  class Batch;
  struct BatchError {
    uint32_t seq;
    int error;
  };
  /// Sends the batch; returns the errors the kernel reported, by sequence number.
  Result<std::vector<BatchError>> send(Batch& batch);
  /// Whether the kernel knows NFT_TABLE_F_PERSIST (Linux 6.9+); asked once, by a
  /// transaction that is aborted on purpose, so nothing changes and no event fires.
  Result<bool> persist_supported();

  mnl_socket* sock_;
  uint32_t portid_;
  uint32_t seq_ = 1;
  std::optional<bool> persist_supported_;
};

}  // namespace arpguard
