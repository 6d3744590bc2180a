// The Engine keeps invariant I1: suppression verified before any VIP appears,
// VIPs removed before their suppression.
#include <doctest/doctest.h>

#include "core/engine.h"
#include "fake_kernel.h"
#include "printing.h"

using namespace arpguard;
using arpguard::testing::FakeKernel;
using Lines = std::vector<std::string>;

namespace {

Policy policy_of(const std::string& text) {
  PolicyResult result = parse_policy(text, "p.toml");
  REQUIRE(result.errors.empty());
  return *result.policy;
}

const char* const kPolicyText = "[agent]\non_stop = \"remove\"\n[[vip]]\naddress = \"192.0.2.10\"\n";

}  // namespace

TEST_CASE("converge records sysctl origins, then suppresses, then adds the VIP") {
  const Policy kPolicy = policy_of(kPolicyText);
  FakeKernel kernel = FakeKernel::machine();
  Engine engine(kernel.apis(), false);
  auto report = engine.converge(kPolicy, false);
  REQUIRE(report);
  CHECK(report->converged());
  CHECK(kernel.calls == Lines{"save state", "sysctl net.ipv4.conf.all.arp_ignore=1",
                              "sysctl net.ipv4.conf.all.arp_announce=2", "nft batch of 4",
                              "add 192.0.2.10/32 dev lo", "save state"});
  CHECK(kernel.world.state.sysctl_origin.at({"all", kArpIgnore}) == 0);
  REQUIRE(kernel.world.state.vips.size() == 1);
  CHECK(kernel.world.state.vips[0].str() == "192.0.2.10/32 dev lo");
}

TEST_CASE("a second converge changes nothing (I4)") {
  const Policy kPolicy = policy_of(kPolicyText);
  FakeKernel kernel = FakeKernel::machine();
  Engine engine(kernel.apis(), false);
  REQUIRE(engine.converge(kPolicy, false));
  kernel.calls.clear();
  auto report = engine.converge(kPolicy, false);
  REQUIRE(report);
  CHECK(report->plan.empty());
  CHECK(kernel.calls == Lines{});
}

TEST_CASE("a dry run plans and changes nothing") {
  const Policy kPolicy = policy_of(kPolicyText);
  FakeKernel kernel = FakeKernel::machine();
  Engine engine(kernel.apis(), false);
  auto report = engine.converge(kPolicy, true);
  REQUIRE(report);
  CHECK(report->plan.actions.size() == 7);
  CHECK(kernel.calls == Lines{});
}

TEST_CASE("no VIP is added when suppression cannot be verified") {
  const Policy kPolicy = policy_of(kPolicyText);
  FakeKernel kernel = FakeKernel::machine();
  kernel.nft_ignores_rules = true;
  Engine engine(kernel.apis(), false);
  auto report = engine.converge(kPolicy, false);
  REQUIRE(report);
  CHECK_FALSE(report->converged());
  REQUIRE(report->problems.size() == 1);
  CHECK(report->problems[0].rfind("suppression not verified, no VIP added: nft table needs: nft add rule input", 0) == 0);
  for (const std::string& call : kernel.calls) CHECK(call.rfind("add ", 0) != 0);
}

TEST_CASE("no VIP is added when the nft batch fails") {
  const Policy kPolicy = policy_of(kPolicyText);
  FakeKernel kernel = FakeKernel::machine();
  kernel.fail_nft = true;
  Engine engine(kernel.apis(), false);
  auto report = engine.converge(kPolicy, false);
  REQUIRE(report);
  CHECK(report->problems == Lines{"nft: batch: Operation not permitted"});
  CHECK(kernel.world.addresses.size() == 2);
}

TEST_CASE("remove takes VIPs away before their suppression and restores sysctls") {
  const Policy kPolicy = policy_of(kPolicyText);
  FakeKernel kernel = FakeKernel::machine();
  Engine engine(kernel.apis(), false);
  REQUIRE(engine.converge(kPolicy, false));
  kernel.calls.clear();
  auto report = engine.remove(kPolicy, false);
  REQUIRE(report);
  CHECK(report->converged());
  CHECK(kernel.calls == Lines{"del 192.0.2.10/32 dev lo", "nft batch of 1", "sysctl net.ipv4.conf.all.arp_announce=0",
                              "sysctl net.ipv4.conf.all.arp_ignore=0",
                              // crash-safe: the record loses each VIP as it goes, then is cleared
                              "save state", "save state"});
  CHECK(kernel.world.state == ManagedState{});
  CHECK_FALSE(kernel.world.nft.exists);
}

TEST_CASE("a sysctl origin is recorded once: the value before arpguard's first write") {
  const Policy kPolicy = policy_of(kPolicyText);
  FakeKernel kernel = FakeKernel::machine();
  kernel.world.sysctls[{"all", kArpIgnore}] = 5;  // the machine's own value
  Engine engine(kernel.apis(), false);
  REQUIRE(engine.converge(kPolicy, false));
  kernel.world.sysctls[{"all", kArpIgnore}] = 0;  // someone resets it; arpguard repairs
  REQUIRE(engine.converge(kPolicy, false));
  CHECK(kernel.world.sysctls.at({"all", kArpIgnore}) == 1);
  CHECK(kernel.world.state.sysctl_origin.at({"all", kArpIgnore}) == 5);
  REQUIRE(engine.remove(kPolicy, false));
  CHECK(kernel.world.sysctls.at({"all", kArpIgnore}) == 5);
}
