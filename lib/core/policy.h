// The TOML policy (v1): parsing and validation into a Policy value.
//
// Pure: reads only the text it is given (load_policy also reads the file).
// Every problem is a Diagnostic located as FILE:LINE:COL; a policy with any
// diagnostic is not returned, so nothing can act on half a policy (I3).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/ipv4.h"

namespace arpguard {

struct SourceLocation {
  std::string file;
  int line = 0;
  int column = 0;
};

struct Diagnostic {
  SourceLocation where;
  std::string message;
  /// "policy.toml:7:14: arp.arp_ignore: 0 would not protect VIPs (allowed: 1, 2, 3, 8)"
  std::string str() const;
};

enum class Method { kSysctl, kNftables, kBoth, kRedirect };
enum class OnStop { kKeep, kRemove };

std::string_view to_string(Method method);
std::string_view to_string(OnStop on_stop);
inline bool uses_sysctls(Method m) { return m == Method::kSysctl || m == Method::kBoth; }
inline bool uses_nftables(Method m) { return m == Method::kNftables || m == Method::kBoth; }

struct Endpoint {
  Ipv4 address;
  uint16_t port = 0;
  std::string str() const { return address.str() + ':' + std::to_string(port); }
};

struct AgentPolicy {
  std::string control_socket = "/run/arpguard/arpguard.sock";
  int sysctl_poll_ms = 1000;
  OnStop on_stop = OnStop::kKeep;
  /// Where arpguard records what it changed (sysctl values before, VIPs it manages).
  std::string state_dir = "/run/arpguard";
  /// Hold the nft table as its owner where the kernel allows (Linux 6.9+): no other
  /// process can change it and `nft flush ruleset` skips it.
  bool own_nft_table = true;
  /// A resource repaired more than this many times within contested_window_ms is contested.
  int contested_repairs = 5;
  int contested_window_ms = 10000;
  /// How often the VIPs' service checks run.
  int check_interval_ms = 2000;
};

struct ArpPolicy {
  Method method = Method::kBoth;
  /// Names or globs of ARP-facing interfaces; "*" means every one but lo.
  std::vector<std::string> interfaces{"*"};
  int arp_ignore = 1;
  int arp_announce = 2;
  bool arp_filter = false;
  /// Sender address for the output mangle rule of an interface, overriding its primary IPv4.
  std::map<std::string, Ipv4> real_ip;

  bool all_interfaces() const { return interfaces.size() == 1 && interfaces[0] == "*"; }
};

struct VipPolicy {
  Ipv4Prefix prefix;
  std::string device = "lo";
  /// check = "tcp:PORT": the agent connects to VIP:PORT locally; failure makes the VIP not ready.
  uint16_t check_port = 0;
  SourceLocation where;  ///< of the address value, for later located errors
};

struct ReadinessPolicy {
  std::vector<Endpoint> listen;
  std::vector<Endpoint> agent_check_listen;
};

struct Policy {
  std::string file;
  AgentPolicy agent;
  ArpPolicy arp;
  std::vector<VipPolicy> vips;
  ReadinessPolicy readiness;
};

struct PolicyResult {
  std::optional<Policy> policy;       ///< set only when errors is empty
  std::vector<Diagnostic> errors;
};

/// Parses and validates policy text; `file` names it in diagnostics.
PolicyResult parse_policy(std::string_view text, const std::string& file);
/// Reads FILE and parses it; an unreadable file is one diagnostic at FILE:0:0.
PolicyResult load_policy(const std::string& file);

}  // namespace arpguard
