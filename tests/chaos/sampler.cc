#include "tests/chaos/sampler.h"

#include <chrono>
#include <fstream>
#include <thread>

#include "tests/chaos/net_clients.h"
#include "tests/support/netlab.h"

namespace arpguard::chaos {

KernelFacts read_kernel() {
  const double start = wall_now();
  const testing::CommandResult addr = testing::run("exec ip -j addr show");
  const testing::CommandResult route = testing::run("exec ip -j route show table local");
  const testing::CommandResult nft = testing::run("exec nft -j list ruleset");
  // /proc/sys/net follows the reading thread's network namespace.
  std::map<std::string, int> sysctls;
  std::string error;
  for (const char* scope : {"all", "eth0"}) {
    for (const char* name : {"arp_ignore", "arp_announce"}) {
      std::ifstream in(std::string("/proc/sys/net/ipv4/conf/") + scope + "/" + name);
      int value = -1;
      if (in >> value) {
        sysctls[std::string(scope) + "/" + name] = value;
      } else {
        error = std::string("cannot read conf/") + scope + "/" + name;
      }
    }
  }
  KernelFacts facts = KernelFacts::parse(addr.out, route.out, nft.out, std::move(sysctls));
  facts.start = start;
  facts.end = wall_now();
  for (const auto* r : {&addr, &route, &nft}) {
    if (r->exit_code != 0) error = "a reading command failed: " + r->err;
  }
  if (!error.empty()) facts.read_error = error;
  return facts;
}

KernelSample judge(const KernelFacts& facts, const std::vector<ExpectedPolicy>& policies, const Universe& universe) {
  KernelSample s;
  s.start = facts.start;
  s.end = facts.end;
  s.ok = facts.read_error.empty();
  s.error = facts.read_error;
  if (!s.ok) return s;
  for (const ExpectedPolicy& p : policies) s.verdicts.push_back(evaluate(facts, p, universe));
  s.layers = layers(facts, universe);
  return s;
}

void sample_kernel(const std::string& rs_netns, const std::vector<ExpectedPolicy>& policies, const Universe& universe,
                   Records& records, LatestSample& latest, const std::atomic<bool>& stop) {
  enter_netns(rs_netns);
  while (!stop) {
    KernelSample s = judge(read_kernel(), policies, universe);
    latest.publish(s.start, s.ok, s.layers);
    const double next = s.start + 0.02;
    records.sample(std::move(s));
    while (!stop && wall_now() < next) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

}  // namespace arpguard::chaos
