// arpguard probe: asks the wire who answers for the VIPs (ARP who-has, NDP
// neighbour solicitation) from each ARP-facing interface, and says who did:
// this host, a director, or someone unknown. Monitoring-plugin exit codes.
#include <poll.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "agent/arpguard/commands.h"
#include "core/desired.h"
#include "core/model.h"
#include "core/status_snapshot.h"
#include "kernel/policy_file.h"
#include "kernel/prober.h"
#include "kernel/rtnl.h"

namespace arpguard::cli {

namespace {

constexpr int kOk = 0;
constexpr int kWarning = 1;
constexpr int kCritical = 2;
constexpr int kUnknown = 3;

constexpr const char* kDefaultPolicy = "/etc/arpguard/policy.toml";
/// Questions per second, all interfaces together, and how many may go at once:
/// 100,000 VIPs take 100 s, and never flood the segment.
constexpr double kAsksPerSecond = 1000;
constexpr double kAskBurst = 20;
/// A send refused for lack of room (EAGAIN, ENOBUFS) is tried again for this long.
constexpr double kRetrySeconds = 1.0;
constexpr size_t kDrainBatch = 256;
constexpr int kListenBuffer = 1 << 20;

constexpr uint32_t kAddrFlagDadFailed = 0x08;
constexpr uint32_t kAddrFlagTentative = 0x40;

double now() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

enum class Responder { kThisHost, kDirector, kUnknown };

std::string_view to_string(Responder who) {
  switch (who) {
    case Responder::kThisHost: return "this host";
    case Responder::kDirector: return "director";
    case Responder::kUnknown: return "unknown";
  }
  return "unknown";
}

struct Interface {
  std::string name;
  int index = 0;
  MacAddress mac;
  std::optional<IpAddress> ipv4;        ///< ARP's sender address
  std::optional<IpAddress> link_local;  ///< NDP's source (the kernel picks it; we only check there is one)
  bool failed = false;                  ///< a send failed: nothing more is asked here
};

struct Answer {
  IpAddress vip;
  std::string interface;
  MacAddress mac;
  FrameKind kind = FrameKind::kArpReply;
  Responder who = Responder::kUnknown;

  auto key() const { return std::tie(vip, interface, mac); }
};

struct Probe {
  std::vector<IpAddress> vips;  ///< sorted, unique
  std::vector<Interface> interfaces;
  std::set<MacAddress> host_macs;
  std::set<MacAddress> director_macs;
  std::vector<std::string> problems;  ///< what could not be asked: the answer is UNKNOWN
  bool asked = false;                 ///< the questions went out (else setting up failed)
  std::map<std::tuple<IpAddress, std::string, MacAddress>, Answer> answers;
  size_t sent = 0;
};

// The policy named, else the default one when it exists; none is fine when
// VIPs and interfaces are given.
Result<std::optional<Policy>> read_policy(const std::string& file) {
  std::string path = file;
  if (path.empty()) {
    struct stat st {};
    if (stat(kDefaultPolicy, &st) != 0) return std::optional<Policy>();
    path = kDefaultPolicy;
  }
  PolicyResult result = load_policy(path);
  if (!result.errors.empty()) return Error{result.errors.front().str()};
  return std::optional<Policy>(std::move(*result.policy));
}

// The VIPs given (an address, or a prefix: its first address), else the policy's.
std::optional<std::string> choose_vips(const std::vector<std::string>& given, const std::optional<Policy>& policy,
                                       std::vector<IpAddress>& vips) {
  for (const std::string& text : given) {
    std::optional<IpPrefix> prefix = IpPrefix::parse(text);
    if (!prefix) return fmt::format("{} is not an IP address", printable(text));
    if (std::optional<std::string> why = unusable_vip(*prefix)) return *why;
    vips.push_back(prefix->first());
  }
  if (given.empty() && policy) {
    for (const VipPolicy& vip : policy->vips) vips.push_back(vip.prefix.first());
  }
  if (vips.empty()) return std::string("no VIPs to ask for: name some, or a policy with [[vip]] (--policy)");
  std::sort(vips.begin(), vips.end());
  vips.erase(std::unique(vips.begin(), vips.end()), vips.end());
  return std::nullopt;
}

// The interface's primary IPv4 (the daemon's choice: of its non-secondary
// global addresses that are no VIP, the widest subnet, then the lowest),
// unless the policy names its real_ip; and a usable link-local address.
void find_sources(Interface& interface, const Observed& observed, const std::optional<Policy>& policy,
                  const std::set<IpAddress>& vips) {
  if (policy) {
    if (auto it = policy->arp.real_ip.find(interface.name); it != policy->arp.real_ip.end()) interface.ipv4 = it->second;
  }
  auto on_link = observed.addresses_by_link.find(interface.index);
  if (on_link == observed.addresses_by_link.end()) return;
  for (const AddressKey& key : on_link->second) {
    const AddressInfo& info = observed.addresses.at(key);
    const bool is_vip = vips.count(key.address) != 0 || (policy && policy->vip_containing(key.address));
    if (key.address.family == Family::kV4) {
      if (!interface.ipv4 && !info.secondary() && info.scope == kScopeGlobal && !is_vip) interface.ipv4 = key.address;
    } else if (!interface.link_local && key.address.is_link_local() &&
               (info.flags & (kAddrFlagTentative | kAddrFlagDadFailed)) == 0) {
      interface.link_local = key.address;
    }
  }
}

// The interfaces named, else the policy's ARP-facing ones that are up.
void choose_interfaces(const std::vector<std::string>& given, const std::optional<Policy>& policy,
                       const Observed& observed, Probe& probe) {
  const std::set<IpAddress> vips(probe.vips.begin(), probe.vips.end());
  auto add = [&](const Link& link) {
    Interface interface{link.name, link.index, link.mac, {}, {}, false};
    find_sources(interface, observed, policy, vips);
    probe.interfaces.push_back(std::move(interface));
  };
  for (const std::string& name : given) {
    const Link* link = observed.link_named(name);
    if (!link) {
      probe.problems.push_back(fmt::format("no such interface {}", printable(name)));
    } else if (link->loopback || link->noarp) {
      probe.problems.push_back(fmt::format("{} has no ARP or NDP to ask with", printable(name)));
    } else if (!link->up) {
      probe.problems.push_back(fmt::format("{} is down", printable(name)));
    } else {
      add(*link);
    }
  }
  if (!given.empty()) return;
  const std::vector<std::string> patterns = policy ? policy->arp.interfaces : ArpPolicy{}.interfaces;
  for (const auto& [index, link] : observed.links) {
    if (link.up && is_arp_facing(link, patterns)) add(link);
  }
  if (probe.interfaces.empty()) probe.problems.push_back("no ARP-facing interface is up");
}

Responder classify(const Probe& probe, const MacAddress& mac) {
  if (probe.host_macs.count(mac)) return Responder::kThisHost;
  if (probe.director_macs.count(mac)) return Responder::kDirector;
  return Responder::kUnknown;
}

class Asker {
 public:
  Asker(Probe& probe, Prober& prober, std::vector<AnswerListener>& listeners)
      : probe_(probe), prober_(prober), listeners_(listeners) {}

  void run(int wait_ms) {
    const bool v6 = std::any_of(probe_.vips.begin(), probe_.vips.end(), [](auto& v) { return v.family == Family::kV6; });
    for (const Interface& interface : probe_.interfaces) {
      const std::string name = printable(interface.name);
      if (v6 && !interface.link_local) {
        probe_.problems.push_back(fmt::format("{} has no link-local address to send NDP from", name));
      }
    }
    double tokens = kAskBurst;
    double last = now();
    size_t vip = 0;
    size_t on = 0;
    double refused_since = -1;
    while (vip < probe_.vips.size()) {
      const double t = now();
      tokens = std::min(kAskBurst, tokens + (t - last) * kAsksPerSecond);
      last = t;
      while (tokens >= 1 && vip < probe_.vips.size()) {
        Interface& interface = probe_.interfaces[on];
        if (std::optional<Status> sent = ask(interface, probe_.vips[vip])) {
          const int error = sent->ok() ? 0 : sent->error().errno_value;
          if (error == EAGAIN || error == ENOBUFS) {
            if (refused_since < 0) refused_since = t;
            if (t - refused_since < kRetrySeconds) break;  // the queue is full: listen, then try again
          }
          refused_since = -1;
          if (!sent->ok()) {
            probe_.problems.push_back(printable(sent->message()));
            interface.failed = true;
          }
          tokens -= 1;
        }
        if (++on == probe_.interfaces.size()) {
          on = 0;
          ++vip;
        }
      }
      listen(std::max(1, static_cast<int>(std::ceil((1 - tokens) / kAsksPerSecond * 1000))));
    }
    const double deadline = now() + wait_ms / 1000.0;
    for (double t = now(); t < deadline; t = now()) listen(std::max(1, static_cast<int>((deadline - t) * 1000)));
    listen(0);
  }

 private:
  // nullopt when there is nothing to ask here: no address of the VIP's family, a failed interface.
  std::optional<Status> ask(const Interface& interface, const IpAddress& vip) {
    if (interface.failed) return std::nullopt;
    if (vip.family == Family::kV6 && !interface.link_local) return std::nullopt;
    // With no address of its own to send from (none, or only the target and
    // VIPs, which must not be revealed), an RFC 5227 probe: sender 0.0.0.0.
    const IpAddress sender = interface.ipv4.value_or(IpAddress::v4(0));
    Status sent = vip.family == Family::kV4 ? prober_.ask_arp(interface.index, interface.mac, sender, vip)
                                            : prober_.ask_ndp(interface.index, interface.mac, vip);
    if (sent.ok()) ++probe_.sent;
    return sent;
  }

  void listen(int timeout_ms) {
    std::vector<pollfd> fds;
    for (const AnswerListener& listener : listeners_) fds.push_back({listener.fd(), POLLIN, 0});
    if (poll(fds.data(), fds.size(), timeout_ms) <= 0) return;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!(fds[i].revents & POLLIN)) continue;
      std::vector<HeardAnswer> heard;
      if (Status read = listeners_[i].drain(heard, kDrainBatch); !read.ok()) {
        probe_.problems.push_back(printable(read.message()));
        continue;
      }
      for (const HeardAnswer& answer : heard) record(probe_.interfaces[i].name, answer.frame);
    }
  }

  void record(const std::string& interface, const WireFrame& frame) {
    if (!std::binary_search(probe_.vips.begin(), probe_.vips.end(), frame.vip)) return;
    Answer answer{frame.vip, interface, frame.mac, frame.kind, classify(probe_, frame.mac)};
    probe_.answers.emplace(answer.key(), answer);
  }

  Probe& probe_;
  Prober& prober_;
  std::vector<AnswerListener>& listeners_;
};

struct Verdict {
  int exit_code = kOk;
  std::string summary;
  size_t answered = 0;
};

Verdict judge(const Probe& probe) {
  std::map<IpAddress, std::set<Responder>> by_vip;
  for (const auto& [key, answer] : probe.answers) by_vip[answer.vip].insert(answer.who);
  size_t this_host = 0, unknown = 0, directors_only = 0;
  for (const auto& [vip, who] : by_vip) {
    if (who.count(Responder::kThisHost)) {
      ++this_host;
    } else if (who.count(Responder::kUnknown)) {
      ++unknown;
    } else {
      ++directors_only;
    }
  }
  Verdict verdict;
  verdict.answered = by_vip.size();
  std::vector<std::string> clauses;
  if (this_host) clauses.push_back(fmt::format("{} answered by this host", this_host));
  if (unknown) {
    clauses.push_back(fmt::format("{} answered by an unknown MAC{}", unknown,
                                  probe.director_macs.empty() ? " (no readiness.director_macs to recognise the director by)" : ""));
  }
  if (directors_only) clauses.push_back(fmt::format("{} answered by the director only", directors_only));
  const size_t silent = probe.vips.size() - by_vip.size();
  if (silent) clauses.push_back(by_vip.empty() ? std::string("no answer") : fmt::format("{} no answer", silent));
  for (const std::string& problem : probe.problems) clauses.push_back("cannot ask: " + problem);

  verdict.exit_code = this_host             ? kCritical
                      : !probe.problems.empty() ? kUnknown
                      : unknown             ? kWarning
                                            : kOk;
  static const char* const kStates[] = {"OK", "WARNING", "CRITICAL", "UNKNOWN"};
  std::string joined;
  if (!probe.asked) {
    for (const std::string& problem : probe.problems) joined += (joined.empty() ? "" : "; ") + problem;
    verdict.summary = fmt::format("ARPGUARD PROBE UNKNOWN - cannot ask: {}", joined);
    verdict.exit_code = kUnknown;
    return verdict;
  }
  for (const std::string& clause : clauses) joined += (joined.empty() ? "" : ", ") + clause;
  verdict.summary = fmt::format("ARPGUARD PROBE {} - {} VIP(s) asked on {} interface(s): {}", kStates[verdict.exit_code],
                                probe.vips.size(), probe.interfaces.size(), joined);
  return verdict;
}

nlohmann::json to_json(const Probe& probe, const Verdict& verdict) {
  static const char* const kStates[] = {"OK", "WARNING", "CRITICAL", "UNKNOWN"};
  nlohmann::json interfaces = nlohmann::json::array();
  for (const Interface& interface : probe.interfaces) {
    interfaces.push_back({{"name", interface.name},
                          {"mac", interface.mac.str()},
                          {"ipv4", interface.ipv4 ? interface.ipv4->str() : ""},
                          {"link_local", interface.link_local ? interface.link_local->str() : ""}});
  }
  nlohmann::json responders = nlohmann::json::array();
  for (const auto& [key, answer] : probe.answers) {
    responders.push_back({{"vip", answer.vip.str()},
                          {"interface", answer.interface},
                          {"mac", answer.mac.str()},
                          {"is", to_string(answer.who)},
                          {"frame", to_string(answer.kind)}});
  }
  return {{"state", kStates[verdict.exit_code]},
          {"exit_code", verdict.exit_code},
          {"vips_asked", probe.vips.size()},
          {"vips_answered", verdict.answered},
          {"vips_unanswered", probe.vips.size() - verdict.answered},
          {"frames_sent", probe.sent},
          {"interfaces", interfaces},
          {"responders", responders},
          {"problems", probe.problems},
          {"summary", verdict.summary}};
}

int report(const Probe& probe, bool json) {
  const Verdict verdict = judge(probe);
  if (json) {
    fmt::print("{}\n", dump_json(to_json(probe, verdict), 2));
    return verdict.exit_code;
  }
  for (const auto& [key, answer] : probe.answers) {
    fmt::print("{} on {} answered by {} ({})\n", answer.vip.str(), printable(answer.interface), answer.mac.str(),
               to_string(answer.who));
  }
  fmt::print("{}\n", verdict.summary);
  return verdict.exit_code;
}

// Setting up failed before anything could be asked.
int cannot_ask(Probe& probe, std::string problem, bool json) {
  probe.problems.push_back(std::move(problem));
  return report(probe, json);
}

}  // namespace

int probe(const std::vector<std::string>& vips, const std::vector<std::string>& interfaces,
          const std::string& policy_file, int wait_ms, bool json) {
  Probe probe;
  auto policy = read_policy(policy_file);
  if (!policy) return cannot_ask(probe, printable(policy.error().message()), json);
  if (*policy) {
    for (const std::string& text : (*policy)->readiness.director_macs) {
      if (auto mac = MacAddress::parse(text)) probe.director_macs.insert(*mac);
    }
  }
  if (auto problem = choose_vips(vips, *policy, probe.vips)) return cannot_ask(probe, *problem, json);

  auto rtnl = Rtnl::open();
  if (!rtnl) return cannot_ask(probe, "read interfaces: " + rtnl.error().message(), json);
  Observed observed;
  auto links = (*rtnl)->links();
  auto addresses = (*rtnl)->addresses();
  if (!links || !addresses) return cannot_ask(probe, (!links ? links.error() : addresses.error()).message(), json);
  observed.links = std::move(*links);
  observed.set_addresses(std::move(*addresses));
  for (const auto& [index, link] : observed.links) {
    if (link.mac != MacAddress{}) probe.host_macs.insert(link.mac);
  }
  choose_interfaces(interfaces, *policy, observed, probe);
  if (probe.interfaces.empty()) return report(probe, json);

  auto prober = Prober::open();
  if (!prober) return cannot_ask(probe, prober.error().message(), json);
  std::vector<AnswerListener> listeners;
  for (const Interface& interface : probe.interfaces) {
    auto listener = AnswerListener::open(interface.index, kListenBuffer);
    if (!listener) return cannot_ask(probe, fmt::format("{}: {}", interface.name, listener.error().message()), json);
    listeners.push_back(std::move(*listener));
  }
  probe.asked = true;
  Asker(probe, *prober, listeners).run(wait_ms);
  return report(probe, json);
}

}  // namespace arpguard::cli
