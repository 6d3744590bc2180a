// What the chaos test expects of the real server's kernel, decided without
// arpguard's code: the policies the test alternates between, the facts read
// from `ip -j addr`, `ip -j route show table local`, `nft -j list ruleset` and
// /proc/sys, and the verdict "meets the policy" with typed gaps.
//
// Pure: no I/O. Thread-safety: values only.
#pragma once

#include <nlohmann/json.hpp>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace arpguard::chaos {

__extension__ typedef unsigned __int128 Uint128;

/// An IPv4 or IPv6 address as a number (IPv4 in the low 32 bits).
struct Addr {
  int family = 4;  // 4 or 6
  Uint128 value = 0;

  static std::optional<Addr> parse(const std::string& text);
  bool operator==(const Addr&) const = default;
};

/// An inclusive range of addresses of one family.
struct Range {
  Addr first, last;
  /// "a.b.c.d", "a.b.c.d/len", "a-b" (IPv4 or IPv6).
  static std::optional<Range> parse(const std::string& text);
  bool contains(const Range& other) const;
  bool contains(const Addr& a) const { return contains(Range{a, a}); }
};

/// One policy the daemon may run, and what its file says.
struct ExpectedPolicy {
  std::string name;                     ///< "A", "B"
  std::vector<std::string> v4;          ///< host VIPs on lo, "192.0.2.10"
  std::vector<std::string> v6;          ///< host VIPs on lo, nodad, preferred_lft 0
  std::vector<std::string> routes;      ///< prefix VIPs as local routes, "10.100.0.0/24"
  std::string redirect;                 ///< a VIP with method "redirect", configured nowhere
  std::vector<int> redirect_tcp_ports;  ///< "tcp:80": kept as is
  std::vector<std::pair<int, int>> redirect_tcp_maps;  ///< "tcp:8080->18080"

  /// The [[vip]] tables of the policy file.
  std::string vip_toml() const;
};

/// Every VIP of every policy the run uses: an address of these found anywhere
/// needs its suppression, whichever policy is in force.
struct Universe {
  std::vector<std::string> v4, v6, routes, redirects;
  static Universe of(const std::vector<ExpectedPolicy>& policies);
};

struct AddrFact {
  std::string device, local;
  int prefixlen = 0;
  bool deprecated = false, tentative = false;
};
struct RouteFact {
  std::string type, dst, dev;
};

/// The real server's kernel as one sampler pass read it.
struct KernelFacts {
  double start = 0, end = 0;  ///< wall-clock seconds when the reading began and ended
  std::string read_error;     ///< non-empty: a reading failed; no verdict
  std::vector<AddrFact> addresses;
  std::vector<RouteFact> local_routes;
  nlohmann::json nft = nlohmann::json::array();  ///< the "nftables" array
  std::map<std::string, int> sysctls;            ///< "all/arp_ignore", "eth0/arp_announce", ...

  /// REQUIRES: the three texts are the commands' JSON outputs.
  static KernelFacts parse(const std::string& addr_json, const std::string& route_json, const std::string& nft_json,
                           std::map<std::string, int> sysctls);
};

/// Why the kernel does not meet a policy; categories let the analysis tell
/// one persisting gap from a gap repaired and caused again.
enum class Gap {
  kSysctl,        ///< arp_ignore / arp_announce not as the policy says on eth0
  kVip,           ///< a VIP missing on lo, or with wrong attributes
  kRoute,         ///< a prefix VIP's local route missing
  kMisplaced,     ///< a VIP on another device than lo
  kNftArp,        ///< table arp arpguard incomplete
  kNftIp6,        ///< table ip6 arpguard incomplete
  kNftNat,        ///< table ip arpguard_nat incomplete
  kRedirectConf,  ///< a redirected VIP configured locally
  kUnsuppressed,  ///< an address of some policy's VIP configured but not in its nft set
};
constexpr int kGapKinds = 9;
const char* to_string(Gap gap);

struct Verdict {
  bool met = false;
  std::vector<std::pair<Gap, std::string>> gaps;
  bool has(Gap g) const;
};

/// Whether `facts` meet `policy` (every VIP where it belongs, sysctls as the
/// policy says, each VIP in its nft set, the rules present), and the I1 check
/// over `universe` (no configured VIP address without its set element).
Verdict evaluate(const KernelFacts& facts, const ExpectedPolicy& policy, const Universe& universe);

/// The two suppression layers, for deciding which drift may run next: the
/// chaos never takes both away at once (that would expose a VIP whatever
/// arpguard does).
struct Layers {
  bool sysctl_ok = false;  ///< effective sysctls right and no VIP on a non-lo device
  bool nft_ok = false;     ///< arp and ip6 tables complete, covering every configured VIP address
  bool misplaced = false;  ///< some VIP address on a device other than lo
};
Layers layers(const KernelFacts& facts, const Universe& universe);

/// An nft set element written back in nft syntax ("192.0.2.10/31", "a . tcp . 80").
std::string nft_element_text(const nlohmann::json& element);

}  // namespace arpguard::chaos
