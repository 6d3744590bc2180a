// A recording fake of the four kernel interfaces, over an in-memory Observed.
// For unit tests of the pure core and the Engine's ordering only: the real
// kernel is exercised by tests/integration.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/kernel_api.h"
#include "core/plan.h"

namespace arpguard::testing {

class FakeKernel : public AddressApi, public SysctlApi, public NftApi, public StateApi {
 public:
  Observed world;                    ///< what the fake kernel holds
  std::vector<std::string> calls;    ///< every mutating call, in order
  bool fail_nft = false;             ///< nft apply fails with EPERM
  bool nft_ignores_rules = false;    ///< nft apply "succeeds" but drops rules (to fail verification)

  KernelApis apis() { return {*this, *this, *this, *this}; }

  /// A machine with lo (1) and eth0 (2, 192.0.2.1/24), ARP sysctls at kernel defaults.
  static FakeKernel machine() {
    FakeKernel k;
    k.world.links = {{1, "lo", true, false, true}, {2, "eth0", false, false, true}};
    k.world.addresses = {{1, *Ipv4Prefix::parse("127.0.0.1/8"), false, kScopeHost},
                         {2, *Ipv4Prefix::parse("192.0.2.1/24")}};
    for (const char* scope : {"all", "default", "lo", "eth0"}) {
      for (const char* name : {kArpIgnore, kArpAnnounce, kArpFilter}) k.world.sysctls[{scope, name}] = 0;
    }
    k.world.nft.persist_supported = true;
    return k;
  }

  Result<std::vector<Link>> links() override { return world.links; }
  Result<std::vector<Address>> addresses() override { return world.addresses; }
  Status add(const std::vector<AddVip>& vips) override {
    for (const AddVip& vip : vips) {
      calls.push_back("add " + vip.vip.str());
      world.addresses.push_back({vip.link_index, vip.vip.prefix, false, vip.scope});
    }
    return Status();
  }
  Status remove(const std::vector<DelVip>& vips) override {
    for (const DelVip& vip : vips) {
      calls.push_back("del " + vip.vip.str());
      std::erase_if(world.addresses, [&](const Address& a) {
        return a.link_index == vip.link_index && a.prefix == vip.vip.prefix;
      });
    }
    return Status();
  }

  Result<SysctlValues> read(const std::vector<std::string>&) override { return world.sysctls; }
  Status write(const SysctlKey& key, int value) override {
    calls.push_back(fmt::format("sysctl {}={}", key.str(), value));
    world.sysctls[key] = value;
    return Status();
  }

  Result<ObservedArpTable> observe() override { return world.nft; }
  Status apply(const std::vector<NftChange>& changes) override {
    calls.push_back(fmt::format("nft batch of {}", changes.size()));
    if (fail_nft) return Status::failure("nft: batch", EPERM);
    ObservedArpTable& t = world.nft;
    for (const NftChange& change : changes) {
      if (auto* c = std::get_if<NftCreateTable>(&change)) {
        t.exists = true;
        t.set_ok |= c->set;
        t.input_chain |= c->input_chain;
        t.output_chain |= c->output_chain;
        if (c->table) {
          t.owned_by_us = c->owned;
          t.flags = c->owned ? rules::kTableFlagOwner | rules::kTableFlagPersist : 0;
        }
      } else if (std::holds_alternative<NftAdoptTable>(change)) {
        t.owned_by_us = true;
      } else if (std::holds_alternative<NftDeleteTable>(change)) {
        t = ObservedArpTable{};
        t.persist_supported = true;
      } else if (auto* add = std::get_if<NftAddElements>(&change)) {
        t.vips.insert(t.vips.end(), add->vips.begin(), add->vips.end());
        std::sort(t.vips.begin(), t.vips.end());
      } else if (auto* del = std::get_if<NftDelElements>(&change)) {
        for (const Ipv4Range& r : del->vips) std::erase(t.vips, r);
      } else if (auto* rule = std::get_if<NftAddRule>(&change)) {
        if (!nft_ignores_rules) t.rules.push_back({next_handle_++, std::string(rule->rule.chain()), rule->rule});
      } else if (auto* gone = std::get_if<NftDelRule>(&change)) {
        std::erase_if(t.rules, [&](const ObservedRule& r) { return r.handle == gone->handle; });
      }
    }
    return Status();
  }

  Result<ManagedState> load() override { return world.state; }
  Status save(const ManagedState& state) override {
    calls.push_back("save state");
    world.state = state;
    return Status();
  }

 private:
  uint64_t next_handle_ = 10;
};

}  // namespace arpguard::testing
