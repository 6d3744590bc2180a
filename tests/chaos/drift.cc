#include "tests/chaos/drift.h"

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include "tests/chaos/net_clients.h"
#include "tests/support/netlab.h"

namespace arpguard::chaos {

using testing::quote;

namespace {

std::bitset<kGapKinds> gaps(std::initializer_list<Gap> list) {
  std::bitset<kGapKinds> out;
  for (Gap g : list) out.set(static_cast<size_t>(g));
  return out;
}

std::bitset<kGapKinds> all_gaps() { return std::bitset<kGapKinds>().set(); }

std::bitset<kGapKinds> nft_causes(const std::string& family, const std::string& table) {
  if (table == "arpguard_nat") return gaps({Gap::kNftNat});
  return family == "arp" ? gaps({Gap::kNftArp, Gap::kUnsuppressed}) : gaps({Gap::kNftIp6, Gap::kUnsuppressed});
}

bool suppression_table(const std::string& table) { return table == "arpguard"; }

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (text.size() > 300) text = text.substr(0, 300) + "...";
  return text;
}

}  // namespace

const char* DriftMaker::name(Kind kind) {
  switch (kind) {
    case Kind::kVip4Del: return "ip addr del (IPv4 VIP)";
    case Kind::kVip6Del: return "ip -6 addr del (IPv6 VIP)";
    case Kind::kRouteDel: return "ip route del local (prefix VIP)";
    case Kind::kLoFlush: return "ip addr flush dev lo";
    case Kind::kNftDelArpTable: return "nft delete table arp arpguard";
    case Kind::kNftDelIp6Table: return "nft delete table ip6 arpguard";
    case Kind::kNftDelNatTable: return "nft delete table ip arpguard_nat";
    case Kind::kNftFlushRuleset: return "nft flush ruleset";
    case Kind::kNftDelElement: return "nft delete element";
    case Kind::kNftDelRule: return "nft delete rule (by handle)";
    case Kind::kSysctlIgnore: return "sysctl all.arp_ignore=0";
    case Kind::kSysctlAnnounce: return "sysctl all.arp_announce=0";
    case Kind::kVipOnEth0: return "VIP put on eth0";
    case Kind::kRedirectOnLo: return "redirected VIP put on lo";
    case Kind::kReloadHup: return "reload: SIGHUP";
    case Kind::kReloadCtl: return "reload: arpguard reload";
    case Kind::kReloadInvalid: return "reload: invalid policy";
    case Kind::kProcSysRo: return "/proc/sys read-only for the daemon";
  }
  return "?";
}

DriftMaker::DriftMaker(DriftSetup setup, Records& records, const DaemonLog& log, const LatestSample& latest,
                       uint64_t seed)
    : setup_(std::move(setup)), records_(records), log_(log), latest_(latest), rng_(seed) {}

double DriftMaker::uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng_); }

DriftMaker::Kind DriftMaker::pick() {
  static const std::vector<std::pair<Kind, int>> weights = {
      {Kind::kVip4Del, 8},         {Kind::kVip6Del, 5},         {Kind::kRouteDel, 5},        {Kind::kLoFlush, 4},
      {Kind::kNftDelArpTable, 4},  {Kind::kNftDelIp6Table, 3},  {Kind::kNftDelNatTable, 2},  {Kind::kNftFlushRuleset, 4},
      {Kind::kNftDelElement, 6},   {Kind::kNftDelRule, 6},      {Kind::kSysctlIgnore, 5},    {Kind::kSysctlAnnounce, 5},
      {Kind::kVipOnEth0, 5},       {Kind::kRedirectOnLo, 2},    {Kind::kReloadHup, 3},       {Kind::kReloadCtl, 3},
      {Kind::kReloadInvalid, 2},   {Kind::kProcSysRo, 3},
  };
  int total = 0;
  for (const auto& [kind, weight] : weights) total += weight;
  int r = std::uniform_int_distribution<int>(0, total - 1)(rng_);
  for (const auto& [kind, weight] : weights) {
    if (r < weight) return kind;
    r -= weight;
  }
  return Kind::kVip4Del;
}

DriftMaker::Kind DriftMaker::fallback() {
  static const Kind harmless[] = {Kind::kVip4Del, Kind::kVip6Del, Kind::kRouteDel, Kind::kLoFlush, Kind::kNftDelNatTable};
  return harmless[std::uniform_int_distribution<size_t>(0, std::size(harmless) - 1)(rng_)];
}

bool DriftMaker::allowed(Kind kind) {
  auto fresh = [&] { return latest_.newer_than(wall_now(), 1.0); };
  switch (kind) {
    case Kind::kNftDelArpTable:
    case Kind::kNftDelIp6Table:
    case Kind::kNftFlushRuleset: {
      auto layers = fresh();
      return layers && layers->sysctl_ok;
    }
    case Kind::kSysctlIgnore:
    case Kind::kSysctlAnnounce:
    case Kind::kVipOnEth0: {
      auto layers = fresh();
      return layers && layers->nft_ok;
    }
    case Kind::kRedirectOnLo: {
      if (redirect_on_lo_) return false;
      auto layers = fresh();
      return layers && layers->sysctl_ok;
    }
    case Kind::kReloadHup:
    case Kind::kReloadCtl:
    case Kind::kReloadInvalid: {
      // A VIP left misplaced by hand would become foreign to a policy without it.
      if (redirect_on_lo_) return false;
      auto layers = fresh();
      return layers && !layers->misplaced;
    }
    case Kind::kProcSysRo: return setup_.proc_sys_flippable && !ro_;
    default: return true;
  }
}

DriftRecord DriftMaker::exec(const std::string& kind, const std::string& command, std::bitset<kGapKinds> causes) {
  DriftRecord r{kind, command, wall_now(), 0, 0, {}, causes};
  testing::CommandResult result = testing::run(command);
  r.end = wall_now();
  r.exit_code = result.exit_code;
  r.error = trimmed(result.err);
  last_end_ = r.end;
  records_.count("drift", kind);
  if (r.exit_code != 0) records_.count("drift (command failed: nothing to undo, or refused)", kind);
  records_.drift(r);
  return r;
}

void DriftMaker::write_policy(const std::string& text) const {
  const std::string tmp = setup_.policy_path + ".tmp";
  std::ofstream(tmp) << text;
  std::rename(tmp.c_str(), setup_.policy_path.c_str());
}

void DriftMaker::perform(Kind kind) {
  const ExpectedPolicy& policy = setup_.policies[static_cast<size_t>(in_force_)];
  auto any_of = [&](const std::vector<std::string>& list) {
    return list[std::uniform_int_distribution<size_t>(0, list.size() - 1)(rng_)];
  };
  const std::string what = name(kind);
  switch (kind) {
    case Kind::kVip4Del:
      exec(what, "ip addr del " + any_of(policy.v4) + "/32 dev lo", gaps({Gap::kVip}));
      break;
    case Kind::kVip6Del:
      exec(what, "ip -6 addr del " + any_of(policy.v6) + "/128 dev lo", gaps({Gap::kVip}));
      break;
    case Kind::kRouteDel:
      exec(what, "ip route del local " + any_of(policy.routes) + " dev lo table local", gaps({Gap::kRoute}));
      break;
    case Kind::kLoFlush:
      // 127.0.0.1 and ::1 are not arpguard's: put back by hand, as an operator would.
      exec(what, "ip addr flush dev lo; ip addr add 127.0.0.1/8 dev lo; ip -6 addr add ::1/128 dev lo; true",
           gaps({Gap::kVip, Gap::kRoute}));
      break;
    case Kind::kNftDelArpTable: exec(what, "nft delete table arp arpguard", nft_causes("arp", "arpguard")); break;
    case Kind::kNftDelIp6Table: exec(what, "nft delete table ip6 arpguard", nft_causes("ip6", "arpguard")); break;
    case Kind::kNftDelNatTable: exec(what, "nft delete table ip arpguard_nat", nft_causes("ip", "arpguard_nat")); break;
    case Kind::kNftFlushRuleset:
      exec(what, "nft flush ruleset", gaps({Gap::kNftArp, Gap::kNftIp6, Gap::kNftNat, Gap::kUnsuppressed}));
      break;
    case Kind::kNftDelElement: nft_delete_element(); break;
    case Kind::kNftDelRule: nft_delete_rule(); break;
    case Kind::kSysctlIgnore: exec(what, "sysctl -qw net.ipv4.conf.all.arp_ignore=0", gaps({Gap::kSysctl})); break;
    case Kind::kSysctlAnnounce: exec(what, "sysctl -qw net.ipv4.conf.all.arp_announce=0", gaps({Gap::kSysctl})); break;
    case Kind::kVipOnEth0:
      if (std::uniform_int_distribution<int>(0, 2)(rng_) < 2) {
        exec(what, "ip addr add " + any_of(policy.v4) + "/32 dev eth0", gaps({Gap::kMisplaced}));
      } else {
        exec(what, "ip -6 addr add " + any_of(policy.v6) + "/128 dev eth0", gaps({Gap::kMisplaced}));
      }
      break;
    case Kind::kRedirectOnLo:
      exec(what, "ip addr add " + policy.redirect + "/32 dev lo", gaps({Gap::kRedirectConf, Gap::kUnsuppressed}));
      redirect_on_lo_ = true;
      redirect_until_ = wall_now() + uniform(0.1, 0.8);
      break;
    case Kind::kProcSysRo:
      exec(what, "nsenter -t " + std::to_string(setup_.daemon_pid) + " -m mount -o remount,ro,bind /proc/sys", {});
      ro_ = true;
      ro_until_ = wall_now() + uniform(0.1, 1.0);
      break;
    case Kind::kReloadHup:
    case Kind::kReloadCtl:
    case Kind::kReloadInvalid: reload(kind); break;
  }
}

void DriftMaker::nft_delete_element() {
  auto layers = latest_.newer_than(wall_now(), 1.0);
  const bool suppression_ok = layers && layers->sysctl_ok;
  struct Candidate {
    std::string family, table, set, element;
  };
  std::vector<Candidate> candidates;
  try {
    const auto listing = nlohmann::json::parse(testing::run("nft -j list ruleset").out).value("nftables", nlohmann::json::array());
    for (const auto& item : listing) {
      for (const char* kind : {"set", "map"}) {
        if (!item.contains(kind)) continue;
        const auto& s = item[kind];
        const std::string table = s.value("table", "");
        if (table != "arpguard" && table != "arpguard_nat") continue;
        if (suppression_table(table) && !suppression_ok) continue;
        for (const auto& e : s.value("elem", nlohmann::json::array())) {
          const auto& key = e.is_array() ? e[0] : e;  // a map's element is [key, value]
          candidates.push_back({s.value("family", ""), table, s.value("name", ""), nft_element_text(key)});
        }
      }
    }
  } catch (const nlohmann::json::exception&) {
  }
  if (candidates.empty()) {
    records_.count("drift-gated", name(Kind::kNftDelElement));
    perform(fallback());
    return;
  }
  const Candidate& c = candidates[std::uniform_int_distribution<size_t>(0, candidates.size() - 1)(rng_)];
  exec(name(Kind::kNftDelElement), "nft delete element " + c.family + " " + c.table + " " + c.set + " " + quote("{ " + c.element + " }"),
       nft_causes(c.family, c.table));
}

void DriftMaker::nft_delete_rule() {
  auto layers = latest_.newer_than(wall_now(), 1.0);
  const bool suppression_ok = layers && layers->sysctl_ok;
  struct Candidate {
    std::string family, table, chain;
    long long handle;
  };
  std::vector<Candidate> candidates;
  try {
    const auto listing = nlohmann::json::parse(testing::run("nft -j list ruleset").out).value("nftables", nlohmann::json::array());
    for (const auto& item : listing) {
      if (!item.contains("rule")) continue;
      const auto& r = item["rule"];
      const std::string table = r.value("table", "");
      if (table != "arpguard" && table != "arpguard_nat") continue;
      if (suppression_table(table) && !suppression_ok) continue;
      candidates.push_back({r.value("family", ""), table, r.value("chain", ""), r.value("handle", 0LL)});
    }
  } catch (const nlohmann::json::exception&) {
  }
  if (candidates.empty()) {
    records_.count("drift-gated", name(Kind::kNftDelRule));
    perform(fallback());
    return;
  }
  const Candidate& c = candidates[std::uniform_int_distribution<size_t>(0, candidates.size() - 1)(rng_)];
  exec(name(Kind::kNftDelRule),
       "nft delete rule " + c.family + " " + c.table + " " + c.chain + " handle " + std::to_string(c.handle),
       nft_causes(c.family, c.table));
}

void DriftMaker::reload(Kind kind) {
  const bool invalid = kind == Kind::kReloadInvalid;
  const bool by_signal = kind == Kind::kReloadHup || (invalid && reloads_ % 2 == 0);
  ++reloads_;
  const int before = in_force_;
  const int target = invalid ? before : 1 - before;
  const std::string text =
      invalid ? setup_.invalid_texts[std::uniform_int_distribution<size_t>(0, setup_.invalid_texts.size() - 1)(rng_)]
              : setup_.policy_texts[static_cast<size_t>(target)];
  write_policy(text);
  const std::string what = std::string(name(kind)) + (invalid ? (by_signal ? " (SIGHUP)" : " (arpguard reload)") : "");
  const std::string label = invalid ? "invalid" : setup_.policies[static_cast<size_t>(target)].name;
  DriftRecord r{what, "", wall_now(), 0, 0, {}, invalid ? std::bitset<kGapKinds>() : all_gaps()};
  bool accepted = false, answered = false;
  if (by_signal) {
    r.command = "kill -HUP " + std::to_string(setup_.daemon_pid) + " (policy " + label + ")";
    ::kill(setup_.daemon_pid, SIGHUP);
    // The first line of the reload: "reloaded FILE: ..." or an error, then "reload of FILE rejected".
    auto line = log_.wait_for("reload", r.start, 3.0);
    r.end = wall_now();
    if (line) {
      answered = true;
      r.end = line->first;
      accepted = line->second.find("reloaded ") != std::string::npos;
      r.error = line->second;
    }
  } else {
    r.command = setup_.arpguard + " reload --socket " + setup_.socket + " (policy " + label + ")";
    testing::CommandResult result = testing::run(setup_.arpguard + " reload --socket " + quote(setup_.socket));
    r.end = wall_now();
    r.exit_code = result.exit_code;
    r.error = trimmed(result.out + result.err);
    answered = result.exit_code == 0 || result.err.find("reload rejected") != std::string::npos ||
               result.err.find("in force but not met") != std::string::npos;
    accepted = result.exit_code == 0 || result.err.find("in force but not met") != std::string::npos;
    if (result.exit_code != 0 && accepted) records_.count("reload", "accepted, not yet met (exit 1)");
    if (invalid && !accepted && result.err.find(setup_.policy_path + ":") == std::string::npos) {
      records_.anomaly("arpguard reload of an invalid policy did not name FILE:LINE:COL: " + r.error, true);
    }
  }
  last_end_ = r.end;
  records_.count("drift", what);
  records_.count("reload", invalid ? (accepted ? "invalid ACCEPTED" : "invalid rejected")
                                   : (accepted ? "accepted" : "valid NOT accepted"));
  if (!answered) {
    records_.anomaly("reload (" + r.command + ") got no answer within 3 s", true);
  } else if (accepted == invalid) {
    records_.anomaly(std::string(invalid ? "an invalid policy was accepted" : "a valid policy was rejected") + " by " +
                         r.command + ": " + r.error,
                     true);
  }
  if (accepted && !invalid) {
    records_.reload(ReloadEvent{r.start, r.end, before, target});
    in_force_ = target;
  } else if (!answered && !invalid) {
    // Unknown whether it took: either policy from now on.
    records_.reload(ReloadEvent{r.start, 1e18, before, target});
    in_force_ = target;
  }
  records_.drift(r);
}

void DriftMaker::settle() {
  if (ro_) {
    exec("/proc/sys read-write again",
         "nsenter -t " + std::to_string(setup_.daemon_pid) + " -m mount -o remount,rw,bind /proc/sys", {});
    ro_ = false;
  }
  if (redirect_on_lo_) {
    exec("redirected VIP taken off lo again",
         "ip addr del " + setup_.policies[static_cast<size_t>(in_force_)].redirect + "/32 dev lo", {});
    redirect_on_lo_ = false;
  }
  write_policy(setup_.policy_texts[static_cast<size_t>(in_force_)]);
}

void DriftMaker::run(const std::atomic<bool>& stop) {
  enter_netns(setup_.rs_netns);
  while (!stop) {
    const double now = wall_now();
    if (ro_ && now >= ro_until_) {
      exec("/proc/sys read-write again",
           "nsenter -t " + std::to_string(setup_.daemon_pid) + " -m mount -o remount,rw,bind /proc/sys", {});
      ro_ = false;
    }
    if (redirect_on_lo_ && now >= redirect_until_) {
      exec("redirected VIP taken off lo again",
           "ip addr del " + setup_.policies[static_cast<size_t>(in_force_)].redirect + "/32 dev lo", {});
      redirect_on_lo_ = false;
    }
    Kind kind = pick();
    if (!allowed(kind)) {
      records_.count("drift-gated", name(kind));
      kind = fallback();
    }
    perform(kind);
    const double pause_until = wall_now() + uniform(0, 0.3);
    while (!stop && wall_now() < pause_until) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  settle();
}

}  // namespace arpguard::chaos
