#include "tests/wire/lan.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>

namespace arpguard::wire_test {

using testing::Netns;

Lan::Lan() {
  sw.must("ip link add br0 type bridge mcast_snooping 0 && ip link set br0 up");
  int port = 1;
  for (const auto& [ns, host] : {std::pair<const Netns*, Host>{&rs, kRs}, {&client, kClient}, {&other, kOther}}) {
    // Created in the namespace, eth0 takes its defaults: no DAD, so every address is usable at once.
    ns->must("sysctl -qw net.ipv6.conf.default.accept_dad=0");
    const std::string peer = "p" + std::to_string(port++);
    testing::CommandResult r = testing::run("ip link add eth0 netns " + ns->name() + " address " + host.mac +
                                            " type veth peer name " + peer + " netns " + sw.name());
    if (r.exit_code != 0) throw std::runtime_error("veth: " + r.err);
    sw.must("ip link set " + peer + " master br0 && ip link set " + peer + " up");
    ns->must(std::string("ip addr add ") + host.ipv4 + "/24 dev eth0 && ip addr add " + host.ipv6 +
             "/64 dev eth0 nodad && ip link set eth0 up");
  }
  const bool up = testing::eventually([&] {
    for (const Netns* ns : {&rs, &client, &other}) {
      if (ns->exec("ip -6 addr show dev eth0 scope link").out.find("fe80::") == std::string::npos) return false;
      if (ns->exec("ip -br link show eth0").out.find(" UP ") == std::string::npos) return false;
    }
    return true;
  });
  if (!up) throw std::runtime_error("the segment did not come up");
}

int Lan::eth0_index(const Netns& ns) { return std::atoi(ns.must("cat /sys/class/net/eth0/ifindex").c_str()); }

void Lan::load_log_rules() const { rs.must(std::string("nft -f ") + WIRE_FIXTURES_DIR + "/rules.nft"); }

InNetns::InNetns(const Netns& ns) {
  home_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  const int target = open(("/run/netns/" + ns.name()).c_str(), O_RDONLY | O_CLOEXEC);
  if (home_ < 0 || target < 0 || setns(target, CLONE_NEWNET) != 0) {
    if (target >= 0) close(target);
    throw std::runtime_error("cannot enter " + ns.name());
  }
  close(target);
}

InNetns::~InNetns() {
  if (setns(home_, CLONE_NEWNET) != 0) std::abort();  // the rest of the suite would run in the wrong namespace
  close(home_);
}

}  // namespace arpguard::wire_test
