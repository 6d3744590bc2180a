// A small Ethernet segment for the wire suite: a real server "rs", a client
// "cl" and another host "ot", each with eth0 on one bridge (in a fourth
// namespace, "sw"), IPv4 and IPv6 addresses usable at once (no duplicate
// address detection). And a way to open sockets inside a namespace. Test-only;
// everything is removed in the destructors (tests/support/netlab.h).
#pragma once

#include <string>

#include "tests/support/netlab.h"

namespace arpguard::wire_test {

struct Host {
  const char* ipv4;
  const char* ipv6;
  const char* link_local;
  const char* mac;
};

inline constexpr Host kRs{"192.0.2.1", "2001:db8::1", "fe80::ff:fe00:1", "02:00:00:00:00:01"};
inline constexpr Host kClient{"192.0.2.2", "2001:db8::2", "fe80::ff:fe00:2", "02:00:00:00:00:02"};
inline constexpr Host kOther{"192.0.2.3", "2001:db8::3", "fe80::ff:fe00:3", "02:00:00:00:00:03"};

struct Lan {
  Lan();
  testing::Netns sw{"sw"};
  testing::Netns rs{"rs"};
  testing::Netns client{"cl"};
  testing::Netns other{"ot"};

  /// eth0's interface index in `ns`.
  static int eth0_index(const testing::Netns& ns);
  /// Loads tests/wire/captured/rules.nft (the log rules of the captures) into rs.
  void load_log_rules() const;
};

/// While alive, this thread is in `ns`'s network namespace: sockets opened
/// then belong to it, and stay there after.
class InNetns {
 public:
  explicit InNetns(const testing::Netns& ns);
  ~InNetns();
  InNetns(const InNetns&) = delete;
  InNetns& operator=(const InNetns&) = delete;

 private:
  int home_ = -1;
};

}  // namespace arpguard::wire_test
