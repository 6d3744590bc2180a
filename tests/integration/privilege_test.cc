// Least privilege: arpguardd does its whole job as an unprivileged user that
// holds CAP_NET_ADMIN and nothing else, as the systemd unit runs it.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "guarded.h"

using namespace arpguard::testing;

namespace {

std::string proc_status(int pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field + ":", 0) == 0) return line.substr(field.size() + 1);
  }
  return "";
}

}  // namespace

TEST_CASE("as nobody with only CAP_NET_ADMIN: apply, repair and readiness all work") {
  Guarded g;
  run("chmod 0755 " + g.dir.path() + " && chown nobody " + g.dir.path());
  const std::string policy = g.write_policy(
      "[[vip]]\naddress = \"192.0.2.10\"\n[readiness]\nlisten = [\"192.0.2.1:9480\"]\n", "sysctl_poll_ms = 100\n");
  Process daemon(g.segment.rs.prefix() +
                     "setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all,+net_admin "
                     "--ambient-caps=-all,+net_admin --bounding-set=-all,+net_admin --no-new-privs " +
                     arpguardd_bin() + " --policy " + policy,
                 g.dir.path() + "/arpguardd.log");
  REQUIRE(daemon.wait_for_log("ready: guarding 1 VIP(s)", 5));

  // Who it runs as: the setpriv process exec()s arpguardd in place.
  const std::string pid = g.segment.rs.must("pgrep -n -x arpguardd");
  CHECK(proc_status(std::stoi(pid), "Uid").find("65534") != std::string::npos);
  CHECK(proc_status(std::stoi(pid), "CapEff") == "\t0000000000001000");  // CAP_NET_ADMIN alone

  // Apply: VIP, sysctls, table.
  CHECK(g.has_address("lo", "192.0.2.10/32"));
  CHECK(g.sysctl("all/arp_ignore") == 1);
  CHECK(g.set_elements() == std::vector<std::string>{"192.0.2.10"});
  // Repair: a deleted VIP and a reset sysctl come back.
  g.segment.rs.must("ip addr del 192.0.2.10/32 dev lo && sysctl -qw net.ipv4.conf.all.arp_ignore=0");
  CHECK(eventually([&] { return g.has_address("lo", "192.0.2.10/32") && g.sysctl("all/arp_ignore") == 1; }));
  // Readiness: HTTP from the client, status over the control socket it made.
  CHECK(g.segment.client.exec("curl -s http://192.0.2.1:9480/ready").out == "ready\n");
  const CommandResult status = run(arpguard_bin() + " status --socket " + g.control_socket());
  CAPTURE(status.out);
  CAPTURE(daemon.log());
  CHECK(status.exit_code == 1);  // repaired recently
  CHECK(g.segment.arp_replies("192.0.2.10").empty());
}
