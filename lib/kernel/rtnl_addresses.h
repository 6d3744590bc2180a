// AddressApi over libnl-route-3: links and IPv4 addresses by rtnetlink.
//
// Additions and deletions are pipelined: requests go out in windows and their
// acknowledgements are matched back by sequence number, so many VIPs cost few
// round trips. Not thread-safe: one owner.
#pragma once

#include <memory>

#include "core/kernel_api.h"

struct nl_sock;

namespace arpguard {

class RtnlAddresses final : public AddressApi {
 public:
  static Result<std::unique_ptr<RtnlAddresses>> open();
  ~RtnlAddresses() override;

  Result<std::vector<Link>> links() override;
  Result<std::vector<Address>> addresses() override;
  Status add(const std::vector<AddVip>& vips) override;
  Status remove(const std::vector<DelVip>& vips) override;

  /// The netlink port this adapter's requests come from (their notifications carry it).
  uint32_t portid() const;

 private:
  explicit RtnlAddresses(nl_sock* sock) : sock_(sock) {}
  struct Request;
  Status send_pipelined(const std::vector<Request>& requests);

  nl_sock* sock_;
};

}  // namespace arpguard
