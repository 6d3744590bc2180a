// NetlinkApi over libnl-route-3: links, addresses of both families and local
// routes, read by dumps decoded with kernel/rtnl_decode.h, changed by
// requests pipelined in windows whose acknowledgements are matched back by
// sequence number, so many VIPs cost few round trips. Not thread-safe.
#pragma once

#include <linux/netlink.h>

#include <functional>
#include <memory>

#include "core/kernel_api.h"

struct nl_sock;

namespace arpguard {

class Rtnl final : public NetlinkApi {
 public:
  static Result<std::unique_ptr<Rtnl>> open();
  ~Rtnl() override;

  Result<std::map<int, Link>> links() override;
  Result<std::map<AddressKey, AddressInfo>> addresses() override;
  Result<RouteTables> routes() override;
  Result<std::map<RoutingRuleKey, RoutingRuleInfo>> rules() override;
  RouteAnswers route_lookups(const std::vector<RouteQuery>& queries) override;
  std::vector<Status> apply(const std::vector<RtnlChange>& changes) override;

  /// The netlink port this adapter's requests come from (their notifications carry it).
  uint32_t portid() const;

 private:
  explicit Rtnl(nl_sock* sock) : sock_(sock) {}
  /// Sends one dump request and hands every reply message to `on_message`;
  /// a dump the kernel says was interrupted is begun again after `restart`.
  Status dump(int type, int family, const std::function<void(const nlmsghdr*)>& on_message,
              const std::function<void()>& restart);

  nl_sock* sock_;
};

}  // namespace arpguard
