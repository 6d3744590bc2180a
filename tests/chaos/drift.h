// The drift half of the chaos: from inside the real server's namespace, one
// thread undoes what arpguardd keeps (addresses, routes, nft tables, sets,
// rules, sysctls), misplaces VIPs, makes /proc/sys read-only for the daemon,
// and reloads it with either of two valid policies or an invalid one, with
// random pauses. Seeded: the same seed makes the same sequence of choices.
//
// It never takes both suppression layers away at once: a drift that breaks
// the nft layer runs only while the sampler has just seen the sysctl layer
// whole, and the reverse. Two layers broken by hand expose a VIP whatever
// arpguard does; one layer broken must never.
//
// Thread-safety: run() on one thread; in_force() from any after it returned.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "tests/chaos/records.h"

namespace arpguard::chaos {

struct DriftSetup {
  std::string rs_netns;
  pid_t daemon_pid = -1;
  std::string arpguard;     ///< the CLI
  std::string socket;       ///< the control socket
  std::string policy_path;  ///< the file arpguardd reloads
  std::vector<ExpectedPolicy> policies;
  std::vector<std::string> policy_texts;   ///< whole files, by policy index
  std::vector<std::string> invalid_texts;  ///< files a reload must reject
  bool proc_sys_flippable = false;         ///< /proc/sys is a bind mount of the daemon's own
};

class DriftMaker {
 public:
  DriftMaker(DriftSetup setup, Records& records, const DaemonLog& log, const LatestSample& latest, uint64_t seed);

  /// Drifts until `stop`, then settles: /proc/sys writable again, no
  /// redirected VIP left on lo, the policy in force back in the file.
  void run(const std::atomic<bool>& stop);
  /// The index of the policy in force (valid after run()).
  int in_force() const { return in_force_; }
  /// When the last drift (or settling step) ended.
  double last_end() const { return last_end_; }

 private:
  enum class Kind {
    kVip4Del, kVip6Del, kRouteDel, kLoFlush,
    kNftDelArpTable, kNftDelIp6Table, kNftDelNatTable, kNftFlushRuleset, kNftDelElement, kNftDelRule,
    kSysctlIgnore, kSysctlAnnounce, kVipOnEth0, kRedirectOnLo,
    kReloadHup, kReloadCtl, kReloadInvalid, kProcSysRo,
  };
  static const char* name(Kind kind);

  Kind pick();
  Kind fallback();
  bool allowed(Kind kind);
  void perform(Kind kind);
  void settle();

  DriftRecord exec(const std::string& kind, const std::string& command, std::bitset<kGapKinds> causes);
  void nft_delete_element();
  void nft_delete_rule();
  void reload(Kind kind);
  void write_policy(const std::string& text) const;
  double uniform(double lo, double hi);

  DriftSetup setup_;
  Records& records_;
  const DaemonLog& log_;
  const LatestSample& latest_;
  std::mt19937_64 rng_;
  int in_force_ = 0;
  int reloads_ = 0;
  bool ro_ = false;
  double ro_until_ = 0;
  bool redirect_on_lo_ = false;
  double redirect_until_ = 0;
  double last_end_ = 0;
};

}  // namespace arpguard::chaos
