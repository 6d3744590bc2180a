// A plan is a value: every action kind describes itself in the one line that
// logs, dry runs and status show, names the resource it changes, and a long
// plan is cut short per run of one kind.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "core/plan.h"
#include "printing.h"

using namespace arpguard;

namespace {

IpAddress ip(const char* text) { return *IpAddress::parse(text); }
IpPrefix prefix(const char* text) { return *IpPrefix::parse(text); }

AddressKey address_key(const char* text, int link_index) {
  const IpPrefix p = prefix(text);
  return {p.address, p.length, link_index};
}

const nft::TableId kArpTable{nft::TableFamily::kArp, "arpguard"};
const nft::TableId kNdpTable{nft::TableFamily::kIp6, "arpguard"};
const nft::TableId kNatTable{nft::TableFamily::kIp, "arpguard_nat"};

nft::Element element(const char* first, const char* last) { return nft::Element{IpRange{ip(first), ip(last)}}; }

AddAddress add_vip(const char* text) { return AddAddress{address_key(text, 1), "lo"}; }

}  // namespace

TEST_CASE("a deleted VIP says why, from a typed reason") {
  struct Case {
    DelReason why;
    const char* belongs_on;
    const char* line;
  };
  const Case cases[] = {
      {DelReason::kNotInPolicy, "", "del vip 10.0.0.5/32 dev eth0 (no longer in policy)"},
      {DelReason::kMisplaced, "lo", "del vip 10.0.0.5/32 dev eth0 (misplaced: belongs on lo)"},
      {DelReason::kWrongAttributes, "", "del vip 10.0.0.5/32 dev eth0 (wrong attributes, re-added)"},
      {DelReason::kRedirected, "", "del vip 10.0.0.5/32 dev eth0 (redirected VIPs are configured nowhere)"},
      {DelReason::kRemoving, "", "del vip 10.0.0.5/32 dev eth0 (removing arpguard)"},
  };
  for (const Case& c : cases) {
    CAPTURE(std::string(c.line));
    const Action action = DelAddress{address_key("10.0.0.5/32", 2), "eth0", c.why, c.belongs_on};
    CHECK(describe(action) == c.line);
    CHECK(resource_of(action) == Resource{Resource::Kind::kVip, "10.0.0.5/32"});
  }
  CHECK(describe(Action{DelAddress{address_key("2001:db8::5/128", 1), "lo", DelReason::kRemoving, ""}}) ==
        "del vip 2001:db8::5/128 dev lo (removing arpguard)");
}

TEST_CASE("routes, sysctls and addresses describe themselves") {
  struct Case {
    Action action;
    const char* line;
    Resource resource;
  };
  const Case cases[] = {
      {DelRoute{RouteKey{prefix("10.100.0.0/24"), 0}, 1, "lo", DelReason::kNotInPolicy},
       "del route local 10.100.0.0/24 table local (no longer in policy)", {Resource::Kind::kVip, "10.100.0.0/24"}},
      {DelRoute{RouteKey{prefix("2001:db8::/64"), 0}, 1, "lo", DelReason::kRemoving},
       "del route local 2001:db8::/64 table local (removing arpguard)", {Resource::Kind::kVip, "2001:db8::/64"}},
      {SetSysctl{SysctlKey{"all", kArpIgnore}, 0, 1}, "set net.ipv4.conf.all.arp_ignore 0 -> 1",
       {Resource::Kind::kSysctl, "net.ipv4.conf.all.arp_ignore"}},
      {SetSysctl{SysctlKey{"eth0", kArpAnnounce}, 2, 0}, "set net.ipv4.conf.eth0.arp_announce 2 -> 0",
       {Resource::Kind::kSysctl, "net.ipv4.conf.eth0.arp_announce"}},
      {AddAddress{address_key("10.0.0.5/32", 1), "lo"}, "add vip 10.0.0.5/32 dev lo",
       {Resource::Kind::kVip, "10.0.0.5/32"}},
      {AddAddress{address_key("10.0.0.5/32", 1), "lo", kScopeHost}, "add vip 10.0.0.5/32 dev lo scope host",
       {Resource::Kind::kVip, "10.0.0.5/32"}},
      {AddAddress{address_key("2001:db8::5/128", 1), "lo", kScopeGlobal, true},
       "add vip 2001:db8::5/128 dev lo nodad preferred_lft 0", {Resource::Kind::kVip, "2001:db8::5/128"}},
      {AddAddress{address_key("2001:db8::5/128", 3), "dummy0", kScopeGlobal, true, true},
       "change vip 2001:db8::5/128 dev dummy0 nodad preferred_lft 0", {Resource::Kind::kVip, "2001:db8::5/128"}},
      {AddAddress{address_key("10.0.0.5/32", 1), "lo", kScopeHost, false, true}, "change vip 10.0.0.5/32 dev lo scope host",
       {Resource::Kind::kVip, "10.0.0.5/32"}},
      {AddRoute{RouteKey{prefix("10.100.0.0/24"), 0}, 1, "lo"}, "add route local 10.100.0.0/24 dev lo table local",
       {Resource::Kind::kVip, "10.100.0.0/24"}},
      {AddRoute{RouteKey{prefix("2001:db8:1::/48"), 0}, 1, "lo"}, "add route local 2001:db8:1::/48 dev lo table local",
       {Resource::Kind::kVip, "2001:db8:1::/48"}},
  };
  for (const Case& c : cases) {
    CAPTURE(std::string(c.line));
    CHECK(describe(c.action) == c.line);
    CHECK(resource_of(c.action) == c.resource);
  }
}

TEST_CASE("every nft change describes itself and names its table") {
  using namespace nft_change;
  nft::SetSpec vips{"vips", {nft::KeyField::kIpv4}, std::nullopt, {}};
  nft::SetSpec to_map{"to", {nft::KeyField::kIpv4, nft::KeyField::kProto, nft::KeyField::kPort}, nft::KeyField::kPort, {}};
  nft::RuleSpec input_rule;
  input_rule.chain = "input";
  input_rule.text = "arp operation request arp daddr ip @vips counter packets 0 bytes 0 drop";
  struct Case {
    NftChange change;
    std::string line;
    nft::TableId table;
  };
  const Case cases[] = {
      {CreateTable{kArpTable, nft::kTableFlagOwner | nft::kTableFlagPersist, false},
       "nft create table arp arpguard (owner, persist)", kArpTable},
      {CreateTable{kNdpTable, 0, false}, "nft create table ip6 arpguard", kNdpTable},
      {CreateTable{kArpTable, nft::kTableFlagOwner, true}, "nft adopt orphaned table arp arpguard", kArpTable},
      {DeleteTable{kNatTable}, "nft delete table ip arpguard_nat", kNatTable},
      {CreateSet{kArpTable, vips}, "nft create set vips in arp arpguard", kArpTable},
      {CreateSet{kNatTable, to_map}, "nft create map to in ip arpguard_nat", kNatTable},
      {CreateChain{kArpTable, nft::ChainSpec{"input", "filter", 1, 0}}, "nft create chain input in arp arpguard",
       kArpTable},
      {AddElements{SetRef{kArpTable, "vips"}, vips, {element("10.0.0.5", "10.0.0.5"), element("10.100.0.0", "10.100.0.255")}},
       "nft add 2 element(s) to arp arpguard @vips: 10.0.0.5, 10.100.0.0/24", kArpTable},
      {DelElements{SetRef{kNdpTable, "vips"}, vips, {element("2001:db8::1", "2001:db8::3")}},
       "nft delete 1 element(s) from ip6 arpguard @vips: 2001:db8::1-2001:db8::3", kNdpTable},
      {AddElements{SetRef{kNatTable, "to"}, to_map,
                   {nft::Element{IpRange::single(ip("10.0.0.5")), 6, 8080, 8080, 18080},
                    nft::Element{IpRange::single(ip("10.0.0.5")), 17, 1000, 2000, 0}}},
       "nft add 2 element(s) to ip arpguard_nat @to: 10.0.0.5 . tcp . 8080 : 18080, 10.0.0.5 . udp . 1000-2000",
       kNatTable},
      {AddRule{kArpTable, input_rule},
       "nft add rule arp arpguard input: arp operation request arp daddr ip @vips counter packets 0 bytes 0 drop",
       kArpTable},
      {DelRule{kArpTable, "output", 7, "a rule arpguard did not write"},
       "nft delete rule arp arpguard output handle 7: a rule arpguard did not write", kArpTable},
  };
  for (const Case& c : cases) {
    CAPTURE(std::string(c.line));
    CHECK(describe(c.change) == c.line);
    const Action action = c.change;
    CHECK(describe(action) == c.line);
    CHECK(resource_of(action) == Resource{Resource::Kind::kTable, c.table.str()});
  }
}

TEST_CASE("an element list shows eight elements and counts the rest") {
  using namespace nft_change;
  std::vector<nft::Element> elements;
  for (int i = 1; i <= 11; ++i) {
    const std::string text = "10.0.0." + std::to_string(i * 2);
    elements.push_back(nft::Element{IpRange::single(ip(text.c_str()))});
  }
  const NftChange change = AddElements{SetRef{kArpTable, "vips"}, {}, elements};
  CHECK(describe(change) ==
        "nft add 11 element(s) to arp arpguard @vips: 10.0.0.2, 10.0.0.4, 10.0.0.6, 10.0.0.8, 10.0.0.10, 10.0.0.12, "
        "10.0.0.14, 10.0.0.16, ... (3 more)");
  elements.resize(8);
  CHECK(describe(NftChange{DelElements{SetRef{kArpTable, "vips"}, {}, elements}}) ==
        "nft delete 8 element(s) from arp arpguard @vips: 10.0.0.2, 10.0.0.4, 10.0.0.6, 10.0.0.8, 10.0.0.10, "
        "10.0.0.12, 10.0.0.14, 10.0.0.16");
}

TEST_CASE("delete reasons name themselves") {
  CHECK(to_string(DelReason::kNotInPolicy) == "no longer in policy");
  CHECK(to_string(DelReason::kMisplaced) == "misplaced");
  CHECK(to_string(DelReason::kWrongAttributes) == "wrong attributes, re-added");
  CHECK(to_string(DelReason::kRedirected) == "redirected VIPs are configured nowhere");
  CHECK(to_string(DelReason::kRemoving) == "removing arpguard");
}

TEST_CASE("Plan::lines gives one line per action, in order") {
  Plan plan;
  CHECK(plan.empty());
  CHECK(plan.lines() == std::vector<std::string>{});
  plan.actions = {DelAddress{address_key("10.0.0.9/32", 1), "lo", DelReason::kNotInPolicy, ""},
                  SetSysctl{SysctlKey{"all", kArpIgnore}, 0, 1}, add_vip("10.0.0.5/32")};
  CHECK_FALSE(plan.empty());
  CHECK(plan.lines() == std::vector<std::string>{"del vip 10.0.0.9/32 dev lo (no longer in policy)",
                                                 "set net.ipv4.conf.all.arp_ignore 0 -> 1",
                                                 "add vip 10.0.0.5/32 dev lo"});
}

TEST_CASE("Plan::lines(n) cuts each run of one kind longer than n short") {
  using namespace nft_change;
  Plan plan;
  for (const char* vip : {"10.0.0.1/32", "10.0.0.2/32", "10.0.0.3/32", "10.0.0.4/32", "10.0.0.5/32"}) {
    plan.actions.push_back(add_vip(vip));
  }
  plan.actions.push_back(SetSysctl{SysctlKey{"all", kArpIgnore}, 0, 1});
  // nft changes of different sub-kinds are one kind of action: one run.
  plan.actions.push_back(NftChange{CreateTable{kArpTable, 0, false}});
  plan.actions.push_back(NftChange{DeleteTable{kNatTable}});
  plan.actions.push_back(NftChange{DelRule{kArpTable, "output", 9, "x"}});
  plan.actions.push_back(add_vip("10.0.0.6/32"));
  plan.actions.push_back(add_vip("10.0.0.7/32"));

  CHECK(plan.lines(2) == std::vector<std::string>{
                             "add vip 10.0.0.1/32 dev lo",
                             "add vip 10.0.0.2/32 dev lo",
                             "... and 3 more like it",
                             "set net.ipv4.conf.all.arp_ignore 0 -> 1",
                             "nft create table arp arpguard",
                             "nft delete table ip arpguard_nat",
                             "... and 1 more like it",
                             "add vip 10.0.0.6/32 dev lo",
                             "add vip 10.0.0.7/32 dev lo",
                         });
  CHECK(plan.lines(1) == std::vector<std::string>{
                             "add vip 10.0.0.1/32 dev lo",
                             "... and 4 more like it",
                             "set net.ipv4.conf.all.arp_ignore 0 -> 1",
                             "nft create table arp arpguard",
                             "... and 2 more like it",
                             "add vip 10.0.0.6/32 dev lo",
                             "... and 1 more like it",
                         });
  CHECK(plan.lines(0) == std::vector<std::string>{
                             "... and 5 more like it",
                             "... and 1 more like it",
                             "... and 3 more like it",
                             "... and 2 more like it",
                         });
  CHECK(plan.lines().size() == plan.actions.size());
  CHECK(plan.lines(5) == plan.lines());
}
