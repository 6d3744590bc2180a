// Readiness and every view of the status snapshot.
#include <doctest/doctest.h>

#include "core/desired.h"
#include "core/engine.h"
#include "core/readiness.h"
#include "core/status_report.h"
#include "fake_kernel.h"
#include "printing.h"

using namespace arpguard;
using arpguard::testing::FakeKernel;
using Lines = std::vector<std::string>;

namespace {

constexpr double kNow = 1'800'000'000;

Policy policy_of(const std::string& text) {
  PolicyResult result = parse_policy(text, "p.toml");
  REQUIRE(result.errors.empty());
  return *result.policy;
}

// A converged machine guarding two VIPs, and the status built from it.
struct Scene {
  explicit Scene(const std::string& text = "[[vip]]\naddress = \"192.0.2.10\"\n[[vip]]\naddress = \"192.0.2.11\"\n")
      : policy(policy_of(text)) {
    Engine engine(kernel.apis(), true);
    REQUIRE(engine.converge(policy, false));
  }
  Policy policy;
  FakeKernel kernel = FakeKernel::machine();
  ReadinessInputs inputs;
  std::vector<RepairRecord> repairs;

  Readiness readiness() const {
    return assess_readiness(make_desired(policy, kernel.world, true), kernel.world, inputs);
  }
  nlohmann::json status() const {
    const Desired desired = make_desired(policy, kernel.world, true);
    const Readiness r = readiness();
    return build_status({policy, desired, kernel.world, r, repairs, repairs.size(), inputs.contested,
                         inputs.service_checks, kNow, kNow - 60});
  }
  std::string first_line() const {
    const std::string text = render_status_text(status(), kNow);
    return text.substr(0, text.find('\n'));
  }
};

}  // namespace

TEST_CASE("a converged server is ready for every VIP") {
  Scene s;
  const Readiness r = s.readiness();
  CHECK(r.ready);
  CHECK(r.all_reasons() == Lines{});
  CHECK(status_exit_code(s.status(), kNow) == 0);
  CHECK(s.first_line() ==
        "ARPGUARD OK - 2/2 VIPs ready, method both | vips=2;;;0 ready_vips=2;;;0 repairs=0c dropped_requests=0c "
        "contested=0;;;0");
  CHECK(agent_check_line(s.status()) == "up ready 100%\n");
}

TEST_CASE("a missing VIP makes that VIP and the server not ready, with the reason named") {
  Scene s;
  std::erase_if(s.kernel.world.addresses, [](const Address& a) { return a.prefix.str() == "192.0.2.11/32"; });
  const Readiness r = s.readiness();
  CHECK_FALSE(r.ready);
  CHECK(r.vip(*Ipv4::parse("192.0.2.10"))->ready);
  CHECK(r.vip(*Ipv4::parse("192.0.2.11"))->reasons == Lines{"vip 192.0.2.11/32 missing on lo"});
  CHECK(status_exit_code(s.status(), kNow) == 2);
  CHECK(s.first_line().rfind("ARPGUARD CRITICAL - not ready: vip 192.0.2.11/32 missing on lo | vips=2;;;0 ready_vips=1;;;0", 0) == 0);
  CHECK(agent_check_line(s.status()) == "down #vip 192.0.2.11/32 missing on lo\n");
}

TEST_CASE("lost suppression makes every VIP not ready") {
  Scene s;
  s.kernel.world.sysctls[{"all", kArpIgnore}] = 0;
  const Readiness r = s.readiness();
  CHECK(r.reasons == Lines{"sysctl net.ipv4.conf.all.arp_ignore is 0, want 1",
                           "arp_ignore on eth0 is effectively 0, which answers ARP for VIPs"});
  for (const VipReadiness& v : r.vips) CHECK_FALSE(v.ready);
}

TEST_CASE("draining is a warning, says drain to HAProxy, and survives nothing else going wrong") {
  Scene s;
  s.inputs.draining = true;
  CHECK_FALSE(s.readiness().ready);
  CHECK(status_exit_code(s.status(), kNow) == 1);
  CHECK(s.first_line().rfind("ARPGUARD WARNING - draining; 2 VIP(s) held |", 0) == 0);
  CHECK(agent_check_line(s.status()) == "drain\n");
  // Draining and broken: critical, and HAProxy hears why it is down.
  std::erase_if(s.kernel.world.addresses, [](const Address& a) { return a.prefix.str() == "192.0.2.11/32"; });
  CHECK(status_exit_code(s.status(), kNow) == 2);
  CHECK(agent_check_line(s.status()) == "down #draining (arpguard drain)\n");
}

TEST_CASE("a recent repair is a warning; an old one is not") {
  Scene s;
  s.repairs.push_back({kNow - 30, "RTM_DELADDR 192.0.2.10/32 lo", {"add vip 192.0.2.10/32 dev lo"}});
  CHECK(status_exit_code(s.status(), kNow) == 1);
  CHECK(s.first_line().rfind("ARPGUARD WARNING - 2/2 VIPs ready, method both, repaired 30 s ago | ", 0) == 0);
  CHECK(render_status_text(s.status(), kNow).find("30 s ago, after RTM_DELADDR 192.0.2.10/32 lo: add vip") !=
        std::string::npos);
  s.repairs[0].at = kNow - kRecentRepairSeconds - 1;
  CHECK(status_exit_code(s.status(), kNow) == 0);
}

TEST_CASE("a contested resource is critical") {
  Scene s;
  s.inputs.contested = {{"vip 192.0.2.10/32", 7}};
  CHECK(s.readiness().vip(*Ipv4::parse("192.0.2.10"))->reasons ==
        Lines{"vip 192.0.2.10/32 is contested (7 repairs in the window)"});
  CHECK(status_exit_code(s.status(), kNow) == 2);
}

TEST_CASE("a failing service check makes its VIP not ready") {
  Scene s;
  s.inputs.service_checks[*Ipv4Prefix::parse("192.0.2.10/32")] = {false, "tcp:80 Connection refused"};
  CHECK(s.readiness().vip(*Ipv4::parse("192.0.2.10"))->reasons ==
        Lines{"service check on 192.0.2.10 failed: tcp:80 Connection refused"});
  CHECK(s.status()["vips"][0]["check"]["ok"] == false);
}

TEST_CASE("a policy without VIPs is not ready: the director must not send traffic") {
  Scene s("");
  CHECK(s.readiness().reasons == Lines{"no VIPs in the policy"});
}

TEST_CASE("metrics name every VIP and carry the counters") {
  Scene s;
  s.kernel.world.nft.rules[0].packets = 12;
  s.repairs.push_back({kNow, "x", {"y"}});
  const std::string metrics = render_metrics(s.status());
  CHECK(metrics.find("arpguard_ready 1\n") != std::string::npos);
  CHECK(metrics.find("arpguard_vip_ready{vip=\"192.0.2.11/32\",device=\"lo\"} 1\n") != std::string::npos);
  CHECK(metrics.find("arpguard_arp_requests_dropped_total 12\n") != std::string::npos);
  CHECK(metrics.find("arpguard_repairs_total 1\n") != std::string::npos);
  CHECK(metrics.find("# TYPE arpguard_repairs_total counter\n") != std::string::npos);
  CHECK(metrics.find("arpguard_interface_arp_ignore{interface=\"eth0\"} 1\n") != std::string::npos);
}
