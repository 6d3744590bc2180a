// The event-fed cache against the real kernel: in a fresh network namespace
// with arpguard's tables applied by the real CLI, random sequences of kernel
// changes made with ip and nft, their notifications drained and folded in the
// way arpguardd does it, and then the cache compared with a fresh full dump.
// Needs root; every namespace is removed, even when a check fails.
//
// The daemon's path, reproduced here step for step (it is not reachable from
// outside the Supervisor, whose cache is private):
//   Daemon::drain_events()   EventSocket::drain() of the rtnetlink socket, then
//                            of the nftables one, into one input::Events
//   Supervisor::on_events()  a full resync on an error or lost events, else
//                            apply_delta() of each event in order, and a full
//                            resync when one says `resync`
//   command::ObserveAll      Engine::observe() over SystemKernel::apis()
// The subscriptions are made before the first dump, as Daemon::open_loop()
// does.
//
// Environment: ARPGUARD_BIN (the CLI, set by meson), ARPGUARD_CACHE_SEED,
// ARPGUARD_CACHE_FIRST (0: the first sequence's number), ARPGUARD_CACHE_SEQUENCES
// (200), ARPGUARD_CACHE_STEPS (20),
// ARPGUARD_CACHE_SECONDS (60: no sequence starts after that).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/engine.h"
#include "core/supervisor.h"
#include "kernel/events.h"
#include "kernel/system_kernel.h"
#include "tests/decode/fixtures.h"
#include "tests/support/netlab.h"

using namespace arpguard;
using namespace arpguard::decode_test;
using arpguard::testing::CommandResult;
using arpguard::testing::run;

namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

long env_number(const char* name, long fallback) {
  const char* text = std::getenv(name);
  return text && *text ? std::strtol(text, nullptr, 10) : fallback;
}

// ---- a namespace this thread (and every command it runs) lives in ----

// The namespace the program started in: no command of a test may run there.
ino_t netns_inode() {
  struct stat st {};
  return ::stat("/proc/thread-self/ns/net", &st) == 0 ? st.st_ino : 0;
}
const ino_t g_host_netns = netns_inode();

// Throws unless this thread is in a namespace of its own: a guard against
// ever changing the host's links, addresses, routes, sysctls or tables.
void require_private_netns() {
  const ino_t now = netns_inode();
  if (now == 0 || now == g_host_netns) throw std::logic_error("refusing to change the host's network namespace");
}

// Runs `command` in this thread's namespace; REQUIRES: a private one.
CommandResult run_here(const std::string& command) {
  require_private_netns();
  return run(command);
}

class EnteredNetns {
 public:
  EnteredNetns() : name_(fmt::format("agt-{}-c{}-cache", getpid(), counter_++)) {
    CommandResult made = run("ip netns add " + name_);
    if (made.exit_code != 0) throw std::runtime_error("ip netns add " + name_ + ": " + made.err);
    original_ = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    const int fd = ::open(("/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC);
    const bool entered = original_ >= 0 && fd >= 0 && ::setns(fd, CLONE_NEWNET) == 0;
    if (fd >= 0) ::close(fd);
    if (!entered) {
      leave();
      throw std::runtime_error("cannot enter " + name_);
    }
  }
  ~EnteredNetns() { leave(); }
  EnteredNetns(const EnteredNetns&) = delete;
  EnteredNetns& operator=(const EnteredNetns&) = delete;

 private:
  void leave() {
    if (original_ >= 0) {
      ::setns(original_, CLONE_NEWNET);
      ::close(original_);
      original_ = -1;
    }
    run("ip netns del " + name_ + " 2>/dev/null");
  }

  static inline int counter_ = 0;
  std::string name_;
  int original_ = -1;
};

// ---- the policy and the namespace it is applied in ----

// Both families, a prefix VIP (a local route) and redirected VIPs: every table and set kind.
std::string policy_text(const std::string& dir, bool owned) {
  return fmt::format(R"([agent]
state_dir = "{0}/state"
control_socket = "{0}/arpguard.sock"
own_nft_table = {1}

[arp]
method = "both"
interfaces = ["*"]

[[vip]]
address = "192.0.2.10"

[[vip]]
address = "192.0.2.11"

[[vip]]
address = "2001:db8::10"

[[vip]]
address = "198.51.100.0/28"

[[vip]]
address = "192.0.2.30"
method = "redirect"

[[vip]]
address = "192.0.2.31"
method = "redirect"
ports = ["tcp:80", "tcp:8080->18080"]

[[vip]]
address = "2001:db8::31"
method = "redirect"
ports = ["tcp:8080->18080"]
)",
                     dir, owned ? "true" : "false");
}

// What one drain saw.
struct Drained {
  size_t events = 0;
  bool resync = false;
  std::string why;
};

// A namespace with arpguard applied, the event sockets, and the cache they feed.
class Lab {
 public:
  /// `dad`: IPv6 duplicate address detection as the kernel does it by default (else off).
  explicit Lab(bool dad = false) {
    require_private_netns();
    plain_policy_ = dir_.write("plain.toml", policy_text(dir_.path(), false));
    owned_policy_ = dir_.write("owned.toml", policy_text(dir_.path(), true));
    // No DAD: an address is final when its command returns, so fewer notifications come late.
    if (!dad) must("sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0");
    must("ip link set lo up && "
         "ip link add veth0 type veth peer name veth1 && ip link set veth0 up && ip link set veth1 up && "
         "ip addr add 192.0.2.1/24 dev veth0");
    must(apply_command(false));
    // Subscribed before the first dump (Daemon::open_loop): nothing after it goes unseen.
    const int buffer = AgentPolicy{}.event_buffer_kb * 1024;
    auto rtnl = EventSocket::open(EventSocket::Kind::kRtnetlink, buffer);
    auto nft = EventSocket::open(EventSocket::Kind::kNftables, buffer);
    if (!rtnl || !nft) throw std::runtime_error("event sockets: " + (!rtnl ? rtnl.error() : nft.error()).message());
    rtnl_ = std::move(*rtnl);
    nft_ = std::move(*nft);
    auto kernel = SystemKernel::open(dir_.path() + "/state");
    if (!kernel) throw std::runtime_error("SystemKernel: " + kernel.error().message());
    kernel_ = std::move(*kernel);
    cache_ = observe();  // command::ObserveAll at start
  }

  std::string apply_command(bool owned) const {
    return arpguard::testing::arpguard_bin() + " apply --policy " + (owned ? owned_policy_ : plain_policy_) +
           " >/dev/null";
  }

  void run_step(const std::string& command) const { run_here(expand(command) + " 2>/dev/null"); }
  std::string expand(const std::string& command) const {
    if (command == "{apply}") return apply_command(false);
    if (command == "{apply-owned}") return apply_command(true);
    return command;
  }

  static void must(const std::string& command) {
    CommandResult r = run_here(command);
    if (r.exit_code != 0) throw std::runtime_error("`" + command + "` exited " + std::to_string(r.exit_code) + ": " + r.err);
  }

  Observed observe() {
    Engine engine(kernel_->apis());
    Result<Observed> observed = engine.observe();
    if (!observed) throw std::runtime_error("observe: " + observed.error().message());
    return std::move(*observed);
  }

  // Daemon::drain_events() and Supervisor::on_events(), for the cache.
  Drained drain() {
    input::Events in;
    for (EventSocket* socket : {rtnl_.get(), nft_.get()}) {
      if (Status s = socket->drain(in.events, in.lost); !s) in.error = s.error();
    }
    Drained out;
    out.events = in.events.size();
    if (in.error) out.why = "kernel events: " + in.error->message();
    if (in.lost) out.why = "kernel events were lost";
    in.unheard = nft_->take_unheard();
    if (in.unheard) out.why = "a commit unheard while muted";
    out.resync = in.error || in.lost || in.unheard;
    for (const KernelEvent& event : in.events) {
      Touched t = apply_delta(cache_, event.delta);
      if (t.resync && !out.resync) out.why = "did not fit the cache: " + show(event.delta);
      out.resync |= t.resync;
    }
    if (out.resync) {
      ++resyncs_;
      resync_causes_.push_back(out.why);
      cache_ = observe();
    }
    return out;
  }

  // Drains until the sockets have been quiet for `quiet_ms`.
  void drain_until_quiet(int quiet_ms = 20) {
    for (;;) {
      pollfd fds[2] = {{rtnl_->fd(), POLLIN, 0}, {nft_->fd(), POLLIN, 0}};
      const int n = ::poll(fds, 2, quiet_ms);
      if (n <= 0) return;
      drain();
    }
  }

  // The cache against a dump with no notification during it; nullopt when equal, else the diff.
  struct Comparison {
    std::string diff;           ///< "- cached line", "+ dumped line"
    std::vector<std::string> audit;  ///< what the daemon's own audit (divergences()) says
  };
  std::optional<Comparison> compare() {
    for (int attempt = 0;; ++attempt) {
      drain_until_quiet();
      Observed fresh = observe();
      if (drain().events != 0 && attempt < 10) continue;  // changed while dumped: again
      Comparison c{diff(view(cache_), view(fresh)), divergences(cache_, fresh)};
      if (c.diff.empty() && c.audit.empty()) return std::nullopt;
      return c;
    }
  }

  int resyncs() const { return resyncs_; }
  const std::vector<std::string>& resync_causes() const { return resync_causes_; }

  /// As arpguardd does (Daemon::open_loop): big commits of elements muted, told to its nft socket.
  void mute_own_commits() { kernel_->nft().tell_own_commits(nft_.get()); }
  Status apply_nft(const std::vector<NftChange>& changes) { return kernel_->apis().nft.apply(changes); }

 private:
  EnteredNetns netns_;  // first: entered before anything runs, left after everything is gone
  arpguard::testing::TempDir dir_;
  std::string plain_policy_, owned_policy_;
  std::unique_ptr<EventSocket> rtnl_, nft_;
  std::unique_ptr<SystemKernel> kernel_;
  Observed cache_;
  int resyncs_ = 0;
  std::vector<std::string> resync_causes_;
};

// ---- steps ----

struct Step {
  std::string kind;
  std::string command;  ///< "{apply}" and "{apply-owned}" stand for the CLI with the plain or owned policy
  bool drain_after = true;
};

using Rng = std::mt19937_64;

template <class T>
const T& pick(Rng& rng, const std::vector<T>& from) {
  return from[std::uniform_int_distribution<size_t>(0, from.size() - 1)(rng)];
}

// One generator per kind of change; `kind` names it in reports and exclusions.
struct Generator {
  std::string kind;
  int weight;
  std::function<std::string(Rng&)> make;
};

const std::vector<Generator>& generators() {
  // Each device its own addresses; the "-shared" kinds put one address on both
  // (the policy's VIPs 192.0.2.10, 192.0.2.11 and 2001:db8::10 are on lo).
  struct Pool {
    std::string device;
    std::vector<std::string> v4, v6;
  };
  static const std::vector<Pool> pools = {
      {"lo", {"192.0.2.12/32", "192.0.2.13/32", "192.0.2.40/24", "198.51.100.5/32"},
       {"2001:db8::12/128", "2001:db8:1::5/64"}},
      {"veth0", {"192.0.2.20/32", "192.0.2.41/24", "192.0.2.42/24", "198.51.100.6/32"},
       {"2001:db8::14/128", "2001:db8:1::6/64"}},
  };
  static const std::vector<std::string> shared4 = {"192.0.2.10/32", "192.0.2.13/32"};
  static const std::vector<std::string> shared6 = {"2001:db8::10/128", "2001:db8::12/128"};
  static const std::vector<std::string> devices = {"lo", "veth0"};
  static const std::vector<std::string> routes4 = {"198.51.100.0/28", "198.51.100.64/26", "203.0.113.0/24"};
  static const std::vector<std::string> routes6 = {"2001:db8:f::/64", "2001:db8:e::/64", "2001:db8::/120"};
  static const std::vector<std::string> elements = {
      "arp arpguard vips { 192.0.2.50 }",
      "arp arpguard vips { 192.0.2.12 }",  // adjacent to the policy's 192.0.2.10/31
      "arp arpguard vips { 192.0.2.60-192.0.2.63 }",
      "ip6 arpguard vips { 2001:db8:5::/64 }",
      "ip6 arpguard vips { 2001:db8::11 }",
      "ip arpguard_nat keep { 192.0.2.40 . tcp . 80 }",
      "ip arpguard_nat keep { 192.0.2.41-192.0.2.42 . udp . 1000-2000 }",
      "ip arpguard_nat to { 192.0.2.40 . tcp . 8080 : 18080 }",
      "ip6 arpguard_nat keep { 2001:db8::40 . tcp . 80 }",
      "ip6 arpguard_nat to { 2001:db8::40 . tcp . 8080 : 18080 }",
  };
  static const std::vector<std::string> chains = {"arp arpguard input", "arp arpguard output", "ip6 arpguard input",
                                                  "ip6 arpguard output", "ip arpguard_nat prerouting",
                                                  "ip6 arpguard_nat prerouting"};
  static const std::vector<std::string> sets = {"arp arpguard vips", "ip6 arpguard vips", "ip arpguard_nat keep",
                                                "ip arpguard_nat to", "ip6 arpguard_nat keep"};
  static const std::vector<std::string> tables = {"arp arpguard", "ip6 arpguard", "ip arpguard_nat",
                                                  "ip6 arpguard_nat"};
  static const std::vector<Generator> all = {
      {"addr4-add", 6,
       [](Rng& r) {
         const Pool& p = pick(r, pools);
         return fmt::format("ip addr add {} dev {}{}", pick(r, p.v4), p.device,
                            pick(r, std::vector<std::string>{"", " scope host"}));
       }},
      {"addr4-del", 4,
       [](Rng& r) {
         const Pool& p = pick(r, pools);
         return fmt::format("ip addr del {} dev {}", pick(r, p.v4), p.device);
       }},
      {"addr4-shared", 2,
       [](Rng& r) {
         return fmt::format("ip addr {} {} dev {}", pick(r, std::vector<std::string>{"add", "del"}), pick(r, shared4),
                            pick(r, devices));
       }},
      {"addr4-primary", 1,
       [](Rng& r) {
         return pick(r, std::vector<std::string>{"ip addr del 192.0.2.1/24 dev veth0",
                                                 "ip addr add 192.0.2.1/24 dev veth0"});
       }},
      {"addr6-add", 5,
       [](Rng& r) {
         const Pool& p = pick(r, pools);
         return fmt::format("ip -6 addr add {} dev {} nodad{}", pick(r, p.v6), p.device,
                            pick(r, std::vector<std::string>{"", " preferred_lft 0"}));
       }},
      {"addr6-del", 3,
       [](Rng& r) {
         const Pool& p = pick(r, pools);
         return fmt::format("ip -6 addr del {} dev {}", pick(r, p.v6), p.device);
       }},
      {"addr6-shared", 2,
       [](Rng& r) {
         const bool add = std::uniform_int_distribution<int>(0, 1)(r) == 1;
         return fmt::format("ip -6 addr {} {} dev {}{}", add ? "add" : "del", pick(r, shared6), pick(r, devices),
                            add ? " nodad" : "");
       }},
      {"addr-replace", 2,
       [](Rng& r) {
         return pick(r, std::vector<std::string>{
                            "ip addr replace 192.0.2.12/32 dev lo scope host",
                            "ip addr replace 192.0.2.12/32 dev lo scope global",
                            "ip addr replace 192.0.2.10/32 dev lo scope host",
                            "ip -6 addr replace 2001:db8::12/128 dev lo nodad preferred_lft 0",
                            "ip -6 addr replace 2001:db8::12/128 dev lo nodad preferred_lft forever",
                            "ip -6 addr replace 2001:db8::10/128 dev lo nodad preferred_lft forever"});
       }},
      {"addr-lifetime", 1,
       [](Rng& r) {
         // Deprecated, then gone, by the kernel's own timers, a second or two later.
         return pick(r, std::vector<std::string>{"ip addr add 192.0.2.15/32 dev lo valid_lft 2 preferred_lft 1",
                                                 "ip -6 addr add 2001:db8::16/128 dev lo nodad valid_lft 2 preferred_lft 1",
                                                 "ip -6 addr add 2001:db8::17/128 dev veth0 nodad valid_lft 1 preferred_lft 0"});
       }},
      {"promote-secondaries", 1,
       [](Rng& r) {
         return fmt::format("sysctl -qw net.ipv4.conf.all.promote_secondaries={0} net.ipv4.conf.veth0.promote_secondaries={0} "
                            "net.ipv4.conf.lo.promote_secondaries={0}",
                            pick(r, std::vector<int>{0, 1}));
       }},
      {"addr-flush", 1,
       [](Rng& r) {
         return pick(r, std::vector<std::string>{"ip addr flush dev veth0", "ip -6 addr flush dev lo scope global",
                                                 "ip -4 addr flush dev lo scope host"});
       }},
      {"route-add", 4,
       [](Rng& r) {
         const bool v6 = std::uniform_int_distribution<int>(0, 1)(r) == 1;
         return fmt::format("ip {}route add local {} dev lo table local{}{}", v6 ? "-6 " : "",
                            v6 ? pick(r, routes6) : pick(r, routes4),
                            pick(r, std::vector<std::string>{"", " proto 247"}),
                            pick(r, std::vector<std::string>{"", "", " metric 5"}));
       }},
      {"route-replace", 1,
       [](Rng& r) {
         return fmt::format("ip {} dev lo table local proto {}",
                            pick(r, std::vector<std::string>{"route replace local 203.0.113.0/24",
                                                             "-6 route replace local 2001:db8:f::/64"}),
                            pick(r, std::vector<int>{3, 247}));
       }},
      {"route-same-prefix", 1,
       [](Rng& r) {
         // A second local route of one prefix and metric: another device, or another tos.
         return pick(r, std::vector<std::string>{"ip route append local 203.0.113.0/24 dev veth0 table local",
                                                 "ip route add local 203.0.113.0/24 dev lo table local tos 0x10",
                                                 "ip route del local 203.0.113.0/24 dev veth0 table local",
                                                 "ip route del local 203.0.113.0/24 dev lo table local tos 0x10",
                                                 "ip -6 route append local 2001:db8:f::/64 dev veth0 table local"});
       }},
      {"route-del", 3,
       [](Rng& r) {
         const bool v6 = std::uniform_int_distribution<int>(0, 1)(r) == 1;
         return fmt::format("ip {}route del local {} dev lo table local{}", v6 ? "-6 " : "",
                            v6 ? pick(r, routes6) : pick(r, routes4),
                            pick(r, std::vector<std::string>{"", " metric 5"}));
       }},
      {"elem-add", 6, [](Rng& r) { return "nft add element " + pick(r, elements); }},
      {"elem-del", 4, [](Rng& r) { return "nft delete element " + pick(r, elements); }},
      {"set-flush", 1, [](Rng& r) { return "nft flush set " + pick(r, sets); }},
      {"chain-flush", 1, [](Rng& r) { return "nft flush chain " + pick(r, chains); }},
      {"rule-add", 2,
       [](Rng& r) {
         return fmt::format("nft {} rule {} counter", pick(r, std::vector<std::string>{"add", "insert"}), pick(r, chains));
       }},
      {"rule-del", 2,
       [](Rng& r) {
         const std::string chain = pick(r, chains);
         return fmt::format("nft delete rule {} handle $(nft -a list chain {} | sed -n 's/.*# handle \\([0-9]*\\)$/\\1/p' "
                            "| tail -1)",
                            chain, chain);
       }},
      {"chain-regular", 1,
       [](Rng& r) {
         return pick(r, std::vector<std::string>{"nft add chain arp arpguard extra",
                                                 "nft delete chain arp arpguard extra",
                                                 "nft add chain ip6 arpguard extra"});
       }},
      {"set-extra", 1,
       [](Rng& r) {
         return pick(r, std::vector<std::string>{"nft add set arp arpguard extra '{ type ipv4_addr; flags interval; }'",
                                                 "nft delete set arp arpguard extra",
                                                 "nft add element arp arpguard extra '{ 10.1.0.0/16 }'"});
       }},
      {"table-dormant", 1,
       [](Rng& r) { return "nft add table " + pick(r, tables) + " '{ flags dormant; }'"; }},
      {"rule-replace", 1,
       [](Rng& r) {
         const std::string chain = pick(r, chains);
         return fmt::format("nft replace rule {} handle $(nft -a list chain {} | sed -n 's/.*# handle \\([0-9]*\\)$/\\1/p' "
                            "| head -1) counter accept",
                            chain, chain);
       }},
      {"table-del", 1, [](Rng& r) { return "nft delete table " + pick(r, tables); }},
      {"apply", 2, [](Rng&) { return std::string("{apply}"); }},
      {"apply-owned", 1, [](Rng&) { return std::string("{apply-owned}"); }},
      {"link-updown", 2,
       [](Rng& r) {
         return fmt::format("ip link set {} {}", pick(r, std::vector<std::string>{"veth0", "veth1"}),
                            pick(r, std::vector<std::string>{"down", "up"}));
       }},
      {"link-del-add", 1,
       [](Rng& r) {
         return pick(r, std::vector<std::string>{
                            "ip link del veth0",
                            "ip link add veth0 type veth peer name veth1 && ip link set veth0 up && ip link set veth1 up"});
       }},
      {"link-lo", 1,
       [](Rng& r) {
         return pick(r, std::vector<std::string>{"ip link set lo down", "ip link set lo up"});
       }},
      {"link-rename", 1,
       [](Rng& r) {
         return pick(r, std::vector<std::string>{"ip link set veth1 down && ip link set veth1 name vethr",
                                                 "ip link set vethr name veth1 && ip link set veth1 up",
                                                 "ip link set veth0 down && ip link set veth0 name vethq && ip link set vethq up",
                                                 "ip link set vethq down && ip link set vethq name veth0 && ip link set veth0 up"});
       }},
  };
  return all;
}

std::vector<Step> make_sequence(Rng& rng, size_t length, const std::set<std::string>& excluded) {
  std::vector<const Generator*> usable;
  std::vector<int> weights;
  for (const Generator& g : generators()) {
    if (excluded.count(g.kind)) continue;
    usable.push_back(&g);
    weights.push_back(g.weight);
  }
  std::discrete_distribution<size_t> which(weights.begin(), weights.end());
  std::bernoulli_distribution drain(0.6);
  std::vector<Step> steps;
  for (size_t i = 0; i < length; ++i) {
    const Generator& g = *usable[which(rng)];
    steps.push_back({g.kind, g.make(rng), drain(rng)});
  }
  return steps;
}

std::string listing(const std::vector<Step>& steps) {
  std::string out;
  for (size_t i = 0; i < steps.size(); ++i) {
    out += fmt::format("  {:2}. {}{}\n", i + 1, steps[i].command, steps[i].drain_after ? "" : "   # (no drain)");
  }
  return out;
}

// ---- running a sequence ----

struct Failure {
  size_t after = 0;  ///< steps run when the cache and the dump differed
  std::string diff;
  std::vector<std::string> audit;
};

struct Outcome {
  std::optional<Failure> failure;
  int resyncs = 0;
  std::vector<std::string> resync_causes;
};

// Runs `steps` in a fresh namespace; compares at the end, or after each step when `every_step`.
Outcome run_sequence(const std::vector<Step>& steps, bool every_step) {
  Outcome out;
  Lab lab;
  auto check = [&](size_t after) {
    if (auto c = lab.compare()) out.failure = Failure{after, c->diff, c->audit};
    return !out.failure;
  };
  if (!check(0)) return out;
  for (size_t i = 0; i < steps.size(); ++i) {
    lab.run_step(steps[i].command);  // failing commands are part of the game
    if (steps[i].drain_after || every_step) lab.drain();
    if (every_step && !check(i + 1)) break;
  }
  if (!every_step) check(steps.size());
  out.resyncs = lab.resyncs();
  out.resync_causes = lab.resync_causes();
  return out;
}

// The shortest sequence found that still fails: first the shortest failing
// prefix (comparing after every step), then each step left out in turn.
std::vector<Step> minimize(std::vector<Step> steps, double deadline) {
  Outcome stepwise = run_sequence(steps, true);
  if (stepwise.failure) steps.resize(stepwise.failure->after);
  for (size_t i = 0; i < steps.size() && now_seconds() < deadline;) {
    std::vector<Step> shorter = steps;
    shorter.erase(shorter.begin() + static_cast<long>(i));
    if (run_sequence(shorter, false).failure) {
      steps = std::move(shorter);
    } else {
      ++i;
    }
  }
  return steps;
}

// A divergence's shape, so each is minimized once: its first line without numbers.
std::string signature(const Failure& f) {
  std::string first = f.diff.empty() ? (f.audit.empty() ? "" : f.audit.front()) : f.diff.substr(0, f.diff.find('\n'));
  std::string out;
  for (char c : first) {
    if (!std::isdigit(static_cast<unsigned char>(c))) out += c;
  }
  return out;
}

struct Report {
  int sequences = 0;
  int failures = 0;
  int resyncs = 0;
  std::string text;
};

// The property: after any sequence, the cache equals a fresh dump.
Report random_sequences(const std::set<std::string>& excluded) {
  const uint64_t seed = static_cast<uint64_t>(env_number("ARPGUARD_CACHE_SEED", static_cast<long>(std::random_device{}())));
  const long first = env_number("ARPGUARD_CACHE_FIRST", 0);
  const long count = env_number("ARPGUARD_CACHE_SEQUENCES", 200);
  const size_t length = static_cast<size_t>(env_number("ARPGUARD_CACHE_STEPS", 20));
  const double budget = static_cast<double>(env_number("ARPGUARD_CACHE_SECONDS", 60));
  const double start = now_seconds();
  std::fprintf(stderr, "cache: seed %llu (ARPGUARD_CACHE_SEED=%llu repeats it)\n", static_cast<unsigned long long>(seed),
               static_cast<unsigned long long>(seed));
  Report report;
  std::set<std::string> minimized;
  for (long n = first; n < first + count && now_seconds() - start < budget; ++n) {
    Rng rng(seed + static_cast<uint64_t>(n));
    const std::vector<Step> steps = make_sequence(rng, length, excluded);
    Outcome outcome = run_sequence(steps, false);
    ++report.sequences;
    report.resyncs += outcome.resyncs;
    for (const std::string& why : outcome.resync_causes) {
      report.text += fmt::format("seed {} sequence {}: full resync: {}\n", seed, n, why);
    }
    if (!outcome.failure) continue;
    ++report.failures;
    report.text += fmt::format("seed {} sequence {} (ARPGUARD_CACHE_SEED={} ARPGUARD_CACHE_FIRST={} "
                               "ARPGUARD_CACHE_SEQUENCES=1 repeat it): the cache differs from a fresh dump after\n{}",
                               seed, n, seed, n, listing(steps));
    report.text += "  diff (- cache, + dump):\n" + outcome.failure->diff;
    for (const std::string& a : outcome.failure->audit) report.text += "  audit: " + a + "\n";
    const std::string shape = signature(*outcome.failure);
    if (minimized.size() < 4 && minimized.insert(shape).second) {
      const std::vector<Step> minimal = minimize(steps, now_seconds() + 60);
      Outcome again = run_sequence(minimal, false);
      report.text += "  minimal sequence:\n" + listing(minimal);
      report.text += again.failure ? "  its diff (- cache, + dump):\n" + again.failure->diff
                                   : std::string("  (it did not fail again: the divergence depends on timing)\n");
    }
  }
  report.text += fmt::format("{} sequence(s) of {} step(s) in {:.0f} s, seed {}: {} failed, {} full resync(s)\n",
                             report.sequences, length, now_seconds() - start, seed, report.failures, report.resyncs);
  return report;
}

}  // namespace

// The kinds of change that reach the bugs below; the second property test
// leaves them out, so that everything else stays guarded while they last.
const std::set<std::string> kKnownBugKinds = {"addr4-shared", "addr6-shared", "route-same-prefix", "apply-owned"};

// BUG: fails while the bugs of the three cases below last (they are its minimal sequences).
TEST_CASE("cache: random kernel changes of every kind, drained as arpguardd drains them, equal a fresh dump" *
          doctest::may_fail()) {
  const Report report = random_sequences({});
  MESSAGE(report.text);
  CHECK(report.sequences > 0);
  CHECK(report.failures == 0);
}

TEST_CASE("cache: random kernel changes but those of known bugs, drained as arpguardd drains them, equal a fresh dump") {
  const Report report = random_sequences(kKnownBugKinds);
  MESSAGE(report.text);
  CHECK(report.sequences > 0);
  CHECK(report.failures == 0);
  CHECK(report.resyncs == 0);  // every event fitted the cache: nothing was papered over by a dump
}

namespace {

// Runs `steps` (each drained), then compares; the diff, empty when equal.
std::string after(Lab& lab, const std::vector<std::string>& steps) {
  for (const std::string& step : steps) {
    lab.run_step(step);
    lab.drain();
  }
  auto c = lab.compare();
  return c ? c->diff : std::string();
}

}  // namespace

// BUG: the kernel keeps one type local route in table local per device for the
// same prefix and metric (an address on two devices has two), but the cache
// keys local routes by prefix and metric alone (RouteKey, lib/core/model.h):
// the second NEWROUTE overwrites the first, and the DELROUTE of either erases
// both, so the cache says no local route is left while the kernel still has
// one. The dump folds them the same way (Rtnl::local_routes, insert_or_assign),
// so it keeps only one of the two, whichever the kernel lists last.
TEST_CASE("cache: an IPv4 address on two devices, removed from one, leaves the other's local route" *
          doctest::may_fail()) {
  Lab lab;
  const std::string d = after(lab, {"ip addr add 192.0.2.13/32 dev veth0", "ip addr add 192.0.2.13/32 dev lo",
                                     "ip addr del 192.0.2.13/32 dev lo"});
  CHECK_MESSAGE(d.empty(), "diff (- cache, + dump):\n" << d);
}

// BUG: as above, for IPv6.
TEST_CASE("cache: an IPv6 address on two devices, removed from one, leaves the other's local route" *
          doctest::may_fail()) {
  Lab lab;
  const std::string d = after(lab, {"ip -6 addr add 2001:db8::12/128 dev lo nodad",
                                     "ip -6 addr add 2001:db8::12/128 dev veth0 nodad",
                                     "ip -6 addr del 2001:db8::12/128 dev veth0"});
  CHECK_MESSAGE(d.empty(), "diff (- cache, + dump):\n" << d);
}

// BUG: a table made OWNER|PERSIST (`arpguard apply` with own_nft_table = true,
// the default) loses NFT_TABLE_F_OWNER when the process that made it exits,
// and the kernel sends no notification of it: the cache keeps flags 0x6 and
// the dead process's port as owner, the dump says flags 0x4 and no owner.
// Nothing in apply_delta (lib/core/observed_delta.cc, TableUpsert) or the
// decoder can know; only a dump can.
TEST_CASE("cache: a table whose owner exits" * doctest::may_fail()) {
  Lab lab;
  // The table is made again, owned, by a process that then exits.
  const std::string d = after(lab, {"nft delete table arp arpguard", "{apply-owned}"});
  CHECK_MESSAGE(d.empty(), "diff (- cache, + dump):\n" << d);
}

// A link coming up gets an IPv6 link-local address that stays tentative for
// the time of duplicate address detection (about a second). The kernel dumps
// it (flag tentative) but notifies it only when DAD completes: the cache
// lacks it meanwhile, and the audit, which knows, counts no divergence.
TEST_CASE("cache: a link coming up, with DAD: the audit counts no divergence for its tentative link-local address") {
  Lab lab(/*dad=*/true);
  for (int i = 0; i < 40 && !run_here("ip -6 addr show tentative | grep -q inet6").exit_code; ++i) usleep(100000);
  lab.drain();
  lab.run_step("ip link add veth2 type veth peer name veth3 && ip link set veth2 up && ip link set veth3 up");
  lab.drain();
  bool tentative_seen = false;
  for (int i = 0; i < 10; ++i) {
    tentative_seen |= run_here("ip -6 addr show tentative | grep -q inet6").exit_code == 0;
    auto c = lab.compare();
    CHECK_MESSAGE((!c || c->audit.empty()), "audit: " << (c ? fmt::format("{}", fmt::join(c->audit, "; ")) : ""));
    usleep(50000);
  }
  CHECK(tentative_seen);  // the window was there to be looked at
}

// BUG (the kernel's, see above): the cache itself lacks a tentative address until DAD completes.
TEST_CASE("cache: a link coming up, with DAD, during the detection of its link-local address" * doctest::may_fail()) {
  Lab lab(/*dad=*/true);
  // The setup's own link-local addresses finish their detection first.
  for (int i = 0; i < 40 && !run_here("ip -6 addr show tentative | grep -q inet6").exit_code; ++i) usleep(100000);
  lab.drain();
  const std::string d = after(lab, {"ip link add veth2 type veth peer name veth3 && ip link set veth2 up && "
                                    "ip link set veth3 up"});
  CHECK_MESSAGE(d.empty(), "diff (- cache, + dump):\n" << d);
}

namespace {

// table arp arpguard with a set "vips" of 20,000 addresses, 10.64.0.0 on in
// steps of 2 (no two adjacent: 20,000 intervals), loaded with nft -f.
void load_big_set(const std::string& dir) {
  std::string elements;
  for (int i = 0; i < 20000; ++i) elements += fmt::format("{}10.64.{}.{}", i ? ", " : "", (2 * i) / 256, (2 * i) % 256);
  const std::string file = dir + "/table.nft";
  {
    std::unique_ptr<FILE, int (*)(FILE*)> out(std::fopen(file.c_str(), "w"), std::fclose);
    REQUIRE(out);
    fmt::print(out.get(), "table arp arpguard {{ set vips {{ type ipv4_addr; flags interval; elements = {{ {} }}; }}; }}\n",
               elements);
  }
  REQUIRE(run_here("nft -f " + file).exit_code == 0);
}

// A shell loop run in this namespace in the background, killed on destruction.
class Background {
 public:
  explicit Background(const std::string& loop) {
    const CommandResult started = run_here("( " + loop + " ) >/dev/null 2>&1 & echo $!");
    REQUIRE(started.exit_code == 0);
    pid_ = started.out.substr(0, started.out.find('\n'));
  }
  ~Background() { run_here("kill " + pid_ + " 2>/dev/null; sleep 0.1"); }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;

 private:
  std::string pid_;
};

}  // namespace

// A table is read in several dumps, and a big set in many parts: a commit
// between two parts moved the kernel's place in the set, and a read once
// missed an element nobody had touched (the 20,000-VIP test's divergence).
// While someone adds and deletes elements at both ends of a set of 20,000,
// every read observe() returns holds all of them.
TEST_CASE("cache: a big set read while others commit to it is one picture") {
  EnteredNetns netns;
  arpguard::testing::TempDir dir;
  load_big_set(dir.path());
  // The churn runs in this namespace until the test kills it (and with the namespace, whatever it started).
  const std::string churn = "while :; do for e in 10.63.0.1 10.66.0.1; do nft add element arp arpguard vips { $e }; "
                            "sleep 0.02; nft delete element arp arpguard vips { $e }; sleep 0.02; done; done";
  const Background churning(churn);

  auto kernel = SystemKernel::open(dir.path() + "/state");
  REQUIRE(kernel);
  const nft::TableId table = rules::arp_table_id();
  int read = 0;
  for (int i = 0; i < 40; ++i) {
    auto tables = (*kernel)->apis().nft.observe({table});
    if (!tables) {
      CHECK_MESSAGE(tables.error().message().find("changed while it was read") != std::string::npos, tables.error().message());
      continue;
    }
    ++read;
    REQUIRE(tables->count(table) == 1);
    const ObservedSet& set = tables->at(table).sets.at("vips");
    size_t ours = 0;  // the 20,000 from the file: the churn's own two may or may not be there
    for (const nft::Element& e : set.all_elements()) {
      if (e.addresses.first.value >> 16 == (10u << 8 | 64u)) ++ours;
    }
    CHECK(ours == 20000);
  }
  CHECK(read > 0);
}

// A firewall or kube-proxy committing to tables of its own all the time
// changes the ruleset's generation under every read: that must neither fail
// arpguard's reads (a server out of the pool for as long as it lasts) nor
// spoil them.
TEST_CASE("cache: commits to other tables, without a pause, neither fail nor spoil a read of a big set") {
  EnteredNetns netns;
  arpguard::testing::TempDir dir;
  load_big_set(dir.path());
  const Background churning("while :; do nft add table inet churn; nft delete table inet churn; done");

  auto kernel = SystemKernel::open(dir.path() + "/state");
  REQUIRE(kernel);
  const nft::TableId table = rules::arp_table_id();
  for (int i = 0; i < 20; ++i) {
    auto tables = (*kernel)->apis().nft.observe({table});
    REQUIRE_MESSAGE(tables, tables.error().message());
    REQUIRE(tables->count(table) == 1);
    CHECK(tables->at(table).sets.at("vips").all_elements().size() == 20000);
  }
}

// Whether the kernel has NFT_TABLE_F_PERSIST is asked once per process, by a
// transaction made to fail: nothing may stay.
namespace {

const nft::SetSpec kVipsShape{"vips", {nft::KeyField::kIpv4}, std::nullopt, {}};

// `n` single addresses from 10.80.0.0 on, in steps of 2: n intervals.
std::vector<nft::Element> scattered(int n) {
  std::vector<nft::Element> out;
  for (int i = 0; i < n; ++i) {
    const IpAddress a{Family::kV4, (10u << 24 | 80u << 16) + 2u * static_cast<uint32_t>(i)};
    out.push_back(rules::vip_element(IpRange{a, a}));
  }
  return out;
}

// What NftTables tells its listener, and when.
struct RecordingListener final : OwnCommitListener {
  std::function<void()> while_muted;
  int mutes = 0, unmutes = 0, misses = 0;
  size_t told = 0;
  bool mute(uint32_t) override {
    ++mutes;
    if (while_muted) while_muted();
    return true;
  }
  void unmute(std::vector<KernelEvent> events) override {
    ++unmutes;
    told = events.size();
  }
  void missed() override { ++misses; }
};

}  // namespace

// The kernel builds a notification per element for every listener, in the
// committing process: arpguardd mutes its own socket for a big commit of
// elements and is told what the commit made. The cache must come out as the
// notifications would have made it, and no one else's commit go unheard.
TEST_CASE("cache: a big commit of elements, muted and told instead, leaves the cache equal to a fresh dump") {
  Lab lab;
  lab.drain_until_quiet();
  lab.mute_own_commits();
  const SetRef vips{rules::arp_table_id(), "vips"};
  // No commit heard yet since the socket joined: whether one is still being
  // notified cannot be known, so the first is heard as ever.
  const std::vector<nft::Element> elements = scattered(3000);
  REQUIRE(lab.apply_nft({nft_change::AddElements{vips, kVipsShape, {elements.begin(), elements.begin() + 1000}}}));
  CHECK(lab.drain().events >= 1000);
  auto c = lab.compare();
  CHECK_MESSAGE(!c, "diff (- cache, + dump):\n" << (c ? c->diff : ""));
  // Now the last commit is heard whole: the next big one is muted.
  REQUIRE(lab.apply_nft({nft_change::AddElements{vips, kVipsShape, {elements.begin() + 1000, elements.end()}}}));
  const Drained added = lab.drain();
  CHECK(added.events < 10);  // told as one change, not 2,000 notifications
  c = lab.compare();
  CHECK_MESSAGE(!c, "diff (- cache, + dump):\n" << (c ? c->diff : ""));
  REQUIRE(lab.apply_nft({nft_change::DelElements{vips, kVipsShape, scattered(1500)}}));
  c = lab.compare();
  CHECK_MESSAGE(!c, "diff (- cache, + dump):\n" << (c ? c->diff : ""));
  CHECK(lab.resyncs() == 0);
  // Small commits are notified as ever.
  REQUIRE(lab.apply_nft({nft_change::AddElements{vips, kVipsShape, {rules::vip_element(IpRange::of(*IpPrefix::parse("10.90.0.1/32")))}}}));
  CHECK(lab.drain().events >= 1);
  CHECK_FALSE(lab.compare());
}

TEST_CASE("cache: someone else's commit while arpguard's own is muted is missed, and said so; a failed one tells nothing") {
  EnteredNetns netns;
  arpguard::testing::TempDir dir;
  load_big_set(dir.path());
  auto kernel = SystemKernel::open(dir.path() + "/state");
  REQUIRE(kernel);
  RecordingListener listener;
  (*kernel)->nft().tell_own_commits(&listener);
  const SetRef vips{rules::arp_table_id(), "vips"};
  const std::vector<nft::Element> elements = scattered(2000);  // 10.80/16: beside the big set's 10.64/16

  REQUIRE((*kernel)->apis().nft.apply({nft_change::AddElements{vips, kVipsShape, elements}}));
  CHECK(listener.mutes == 1);
  CHECK(listener.unmutes == 1);
  CHECK(listener.told == 1);
  CHECK(listener.misses == 0);

  listener.while_muted = [] { REQUIRE(run_here("nft add table inet other").exit_code == 0); };
  REQUIRE((*kernel)->apis().nft.apply({nft_change::DelElements{vips, kVipsShape, elements}}));
  CHECK(listener.unmutes == 2);
  CHECK(listener.misses == 1);

  listener.while_muted = nullptr;
  const Status failed = (*kernel)->apis().nft.apply({nft_change::DelElements{vips, kVipsShape, elements}});  // gone already
  CHECK_FALSE(failed);
  CHECK(listener.unmutes == 3);
  CHECK(listener.told == 0);
  CHECK(listener.misses == 1);
  // Fewer elements: not muted at all.
  REQUIRE((*kernel)->apis().nft.apply({nft_change::AddElements{vips, kVipsShape, scattered(10)}}));
  CHECK(listener.mutes == 3);
}

// The kernel moves the generation before it sends a commit's notifications:
// the socket leaves the group only once it has heard, whole, every commit up
// to the generation the committer read; else not at all.
TEST_CASE("cache: the nft event socket is muted only once the generation read has been heard") {
  EnteredNetns netns;
  arpguard::testing::TempDir dir;
  auto kernel = SystemKernel::open(dir.path() + "/state");
  REQUIRE(kernel);
  auto events = EventSocket::open(EventSocket::Kind::kNftables, 1 << 20);
  REQUIRE(events);
  auto now = (*kernel)->apis().nft.generation();
  REQUIRE(now);
  CHECK_FALSE((*events)->mute(*now));  // nothing heard yet: cannot know
  REQUIRE(run_here("nft add table inet heard").exit_code == 0);
  now = (*kernel)->apis().nft.generation();
  REQUIRE(now);
  CHECK_FALSE((*events)->mute(*now + 1));  // a commit not heard (it never comes): not muted, after a short wait
  CHECK((*events)->mute(*now));
  // Muted: someone's commit is not heard...
  REQUIRE(run_here("nft add table inet unheard").exit_code == 0);
  (*events)->unmute({});
  std::vector<KernelEvent> got;
  bool lost = false;
  REQUIRE((*events)->drain(got, lost));
  CHECK_FALSE(lost);
  CHECK_FALSE((*events)->take_unheard());
  (*events)->missed();  // as NftTables says when the generation moved by more than its own commit
  CHECK((*events)->take_unheard());
  CHECK_FALSE((*events)->take_unheard());
  // ...and heard again once unmuted.
  REQUIRE(run_here("nft add table inet heard_again").exit_code == 0);
  now = (*kernel)->apis().nft.generation();
  REQUIRE(now);
  CHECK((*events)->mute(*now));
  (*events)->unmute({});
}

TEST_CASE("cache: the PERSIST probe leaves no table behind, and answers the same each time") {
  EnteredNetns netns;
  arpguard::testing::TempDir dir;
  std::optional<bool> first;
  for (int i = 0; i < 3; ++i) {
    auto kernel = SystemKernel::open(dir.path() + "/state");
    REQUIRE(kernel);
    auto supported = (*kernel)->apis().nft.persist_supported();
    REQUIRE_MESSAGE(supported, supported.error().message());
    if (!first) first = *supported;
    CHECK(*supported == *first);
    const CommandResult tables = run_here("nft list tables");
    CHECK(tables.exit_code == 0);
    CHECK_MESSAGE(tables.out.empty(), tables.out);
  }
}

int main(int argc, char** argv) {
  if (geteuid() != 0) {
    std::fprintf(stderr, "the cache suite needs root (network namespaces); skipped\n");
    return 77;  // meson: skipped
  }
  arpguard::testing::sweep_stale_namespaces();
  doctest::Context context(argc, argv);
  return context.run();
}
