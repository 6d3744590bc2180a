// The TOML policy (v1): parsing and validation into a Policy value.
//
// Pure: reads only the text it is given (kernel/policy_file.h reads the
// file). Text is bounded before the TOML parser sees it. Every problem is a
// Diagnostic located as FILE:LINE:COL; a policy with any error is not
// returned, so nothing can act on half a policy (I3). Warnings accompany a
// valid policy. Linear in the size of the text (duplicates and overlaps are
// found by sorting). Thread-compatible.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/ip.h"

namespace arpguard {

struct SourceLocation {
  int line = 0;
  int column = 0;
};

struct Diagnostic {
  std::string file;
  SourceLocation where;
  std::string message;
  /// "policy.toml:7:14: arp.arp_ignore: 0 would not protect VIPs (allowed: 1, 2, 3, 8)"
  std::string str() const;
};

enum class Method { kSysctl, kNftables, kBoth, kRedirect };
enum class OnStop { kKeep, kRemove };
/// How a VIP is made local: an address on a device, or a local route (a whole prefix).
enum class VipKind { kAddress, kRoute };

std::string_view to_string(Method method);
std::string_view to_string(OnStop on_stop);
std::string_view to_string(VipKind kind);
inline bool uses_sysctls(Method m) { return m == Method::kSysctl || m == Method::kBoth; }
inline bool uses_nftables(Method m) { return m == Method::kNftables || m == Method::kBoth; }
inline bool is_bound(Method m) { return m != Method::kRedirect; }

inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;

/// One `ports` entry of a redirected VIP: "tcp:80", "udp:1000-2000", "tcp:8080->18080".
struct PortMapping {
  uint8_t protocol = kProtoTcp;
  uint16_t first = 0;
  uint16_t last = 0;
  std::optional<uint16_t> to;  ///< target port; none: the port is kept

  auto operator<=>(const PortMapping&) const = default;
  std::string str() const;
};

struct Endpoint {
  IpAddress address;
  uint16_t port = 0;
  /// "192.0.2.1:9480", "[2001:db8::1]:9480"
  std::string str() const;
};

struct AgentPolicy {
  std::string control_socket = "/run/arpguard/arpguard.sock";
  int sysctl_poll_ms = 1000;
  OnStop on_stop = OnStop::kKeep;
  /// Where arpguard records what it changed (sysctl values before, VIPs it manages).
  std::string state_dir = "/run/arpguard";
  /// Hold the nft tables as their owner where the kernel allows (Linux 6.9+): no other
  /// process can change them and `nft flush ruleset` skips them.
  bool own_nft_table = true;
  /// A resource undone by someone else more than this many times within
  /// contested_window_ms is contested.
  int contested_repairs = 5;
  int contested_window_ms = 10000;
  /// How often the VIPs' service checks run.
  int check_interval_ms = 2000;
  /// How often the whole kernel state is read and compared with what events built (0: never).
  int audit_interval_ms = 300000;
  /// Receive buffer for kernel notifications. Too small, and a burst overruns it:
  /// then arpguardd reads everything again (correct, but slower).
  int event_buffer_kb = 32768;
};

struct ArpPolicy {
  Method method = Method::kBoth;
  /// Names or globs of ARP-facing interfaces; "*" means every one but lo.
  std::vector<std::string> interfaces{"*"};
  int arp_ignore = 1;
  int arp_announce = 2;
  bool arp_filter = false;
  /// Per ARP-facing interface, a routing table and `ip rule from ADDR` so that
  /// arp_filter=1 answers each address on its own interface.
  bool source_routing = false;
  /// Source routing: interface ifindex N gets table source_routing_table + N, and its
  /// `from ADDR` rules this priority.
  uint32_t source_routing_table = 5000;
  uint32_t source_routing_priority = 1000;
  /// Sender address for the output mangle rule of an interface, overriding its primary IPv4.
  std::map<std::string, IpAddress> real_ip;
  std::map<std::string, SourceLocation> real_ip_where;  ///< of each value, for later located errors

  bool all_interfaces() const { return interfaces.size() == 1 && interfaces[0] == "*"; }
};

struct VipPolicy {
  IpPrefix prefix;
  std::string device = "lo";
  VipKind kind = VipKind::kAddress;
  Method method = Method::kBoth;       ///< the VIP's own, or arp.method
  std::vector<PortMapping> ports;      ///< redirect only; empty: every TCP and UDP port
  uint16_t check_port = 0;             ///< check = "tcp:PORT"; 0: no service check
  SourceLocation where;                ///< of the address value, for later located errors
};

struct ReadinessPolicy {
  std::vector<Endpoint> listen;
  std::vector<Endpoint> agent_check_listen;
  /// MACs that may claim a VIP on the wire (the director's).
  std::vector<std::string> director_macs;
  /// Per-VIP series in /metrics up to this many VIPs; aggregates beyond.
  int metrics_vip_limit = 1000;
  /// Readiness warns when conntrack is fuller than this (redirect VIPs only).
  int conntrack_warn_percent = 90;
};

/// The wire watch: log rules in arpguard's tables hand every ARP and NDP frame
/// that claims a VIP to arpguardd (nfnetlink_log group `log_group`).
struct WatchPolicy {
  bool enabled = true;
  uint16_t log_group = 4247;
  /// Each VIP is asked for on the segment once per this many seconds (0: only
  /// when someone else asks for it), to hear who answers.
  int probe_interval_s = 300;
};

struct Policy {
  std::string file;
  AgentPolicy agent;
  ArpPolicy arp;
  std::vector<VipPolicy> vips;  ///< sorted by prefix
  ReadinessPolicy readiness;
  WatchPolicy watch;

  /// The VIP whose prefix contains `address`; nullptr when none.
  const VipPolicy* vip_containing(const IpAddress& address) const;
};

struct PolicyResult {
  std::optional<Policy> policy;        ///< set only when errors is empty
  std::vector<Diagnostic> errors;
  std::vector<Diagnostic> warnings;
};

/// Parses and validates policy text; `file` names it in diagnostics.
PolicyResult parse_policy(std::string_view text, const std::string& file);

/// Why `prefix` cannot be a VIP ("a link-local address", "holds addresses in
/// the multicast range 224.0.0.0/4"), or nullopt when it can: the rule
/// `[[vip]] address` applies, for tools that take VIPs elsewhere.
std::optional<std::string> unusable_vip(const IpPrefix& prefix);

}  // namespace arpguard
