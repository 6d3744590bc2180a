// The rulesets as text and as expressions: render_nft of each table spec is
// its golden file (each golden file is what nft 1.0.6 listed after the spec
// was put into a kernel, see rules/golden/README.md); the specs Desired
// makes from a policy render the same; and the expression IR arpguard
// compares rules by is exactly what the kernel dumps back.
#include <doctest/doctest.h>

#include <cstdio>  // libnftnl/expr.h needs FILE
#include <fstream>
#include <sstream>

#include <libnftnl/expr.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>

#include "core/desired.h"
#include "rules/expr.h"
#include "rules/nft_spec.h"
#include "rules/tables.h"
#include "world.h"

using namespace arpguard;
using namespace arpguard::world;

namespace {

std::string golden(const std::string& name) {
  std::ifstream in(std::string(ARPGUARD_GOLDEN_DIR) + "/" + name);
  REQUIRE_MESSAGE(in.good(), name);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

nft::Element one(std::string_view address) { return rules::vip_element(range(address, address)); }
nft::Element span(std::string_view first, std::string_view last) { return rules::vip_element(range(first, last)); }
nft::Element of_prefix(std::string_view text) { return rules::vip_element(IpRange::of(prefix(text))); }
nft::Element port(std::string_view address, uint8_t protocol, uint16_t first, uint16_t last, uint16_t to = 0) {
  return {IpRange::of(prefix(address)), protocol, first, last, to};
}

// The spec Desired makes for `policy` on the machine, with the set elements Diff would add.
nft::TableSpec desired_spec(const Policy& policy, const Observed& observed, const nft::TableId& id) {
  const Desired desired = desired_of(policy, observed);
  const nft::TableSpec* spec = desired.host.table(id);
  REQUIRE(spec != nullptr);
  nft::TableSpec out = *spec;
  for (nft::SetSpec& set : out.sets) {
    auto it = desired.vips.elements.find(SetRef{id, set.name});
    if (it != desired.vips.elements.end()) set.elements = it->second;
  }
  return out;
}

nft::TableSpec two_vips() { return rules::arp_table({span("192.0.2.10", "192.0.2.11")}, {{"eth0", ip("192.0.2.1")}}); }

nft::TableSpec five_vips() {
  return rules::arp_table({span("192.0.2.10", "192.0.2.12"), one("192.0.2.20"), one("198.51.100.7")},
                          {{"eth0", ip("192.0.2.1")}, {"eth1", std::nullopt}});
}

nft::TableSpec ndp() { return rules::ndp_table({of_prefix("2001:db8::/64"), one("2001:db8:1::10"), one("2001:db8:1::12")}); }

nft::TableSpec nat_ip() {
  return rules::nat_table(Family::kV4,
                          {port("192.0.2.30", kProtoTcp, 0, 65535), port("192.0.2.30", kProtoUdp, 0, 65535),
                           port("192.0.2.31", kProtoTcp, 80, 80), port("192.0.2.31", kProtoTcp, 443, 443),
                           port("198.51.100.0/28", kProtoUdp, 1000, 2000)},
                          {port("192.0.2.31", kProtoTcp, 8080, 8080, 18080), port("192.0.2.31", kProtoUdp, 5353, 5353, 53)});
}

nft::TableSpec nat_ip6() {
  return rules::nat_table(Family::kV6,
                          {port("2001:db8::30", kProtoTcp, 0, 65535), port("2001:db8::30", kProtoUdp, 0, 65535),
                           port("2001:db8::31", kProtoTcp, 80, 80)},
                          {port("2001:db8::31", kProtoTcp, 8080, 8080, 18080)});
}

}  // namespace

TEST_CASE("each table spec renders as its golden file") {
  CHECK(nft::render_nft(two_vips()) == golden("two-vips.nft"));
  CHECK(nft::render_nft(five_vips()) == golden("five-vips-two-interfaces.nft"));
  CHECK(nft::render_nft(ndp()) == golden("ip6-two-vips-one-prefix.nft"));
  CHECK(nft::render_nft(nat_ip()) == golden("nat-ip-keep-and-to.nft"));
  CHECK(nft::render_nft(nat_ip6()) == golden("nat-ip6-keep-and-to.nft"));
}

TEST_CASE("the tables Desired makes from a policy render as the same golden files") {
  Observed observed = fresh_machine();
  // The golden files of suppression alone; the watch's own follow.
  const std::string no_watch = "[watch]\nenabled = false\n";
  SUBCASE("two adjacent VIPs: one /31 element, eth0 rewriting to its primary address") {
    const Policy policy = policy_of(no_watch + vip("192.0.2.11") + vip("192.0.2.10"));
    CHECK(nft::render_nft(desired_spec(policy, observed, rules::arp_table_id())) == golden("two-vips.nft"));
  }
  SUBCASE("five VIPs, and eth1 without IPv4 dropping ARP sent from a VIP") {
    observed.links[3] = Link{3, "eth1", false, false, true, {}};
    std::string text;
    for (const char* a : {"192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.20", "198.51.100.7"}) text += vip(a);
    CHECK(nft::render_nft(desired_spec(policy_of(no_watch + text), observed, rules::arp_table_id())) ==
          golden("five-vips-two-interfaces.nft"));
  }
  SUBCASE("two IPv6 VIPs and an IPv6 prefix") {
    const Policy policy = policy_of(no_watch + vip("2001:db8:1::12") + vip("2001:db8::/64") + vip("2001:db8:1::10"));
    CHECK(nft::render_nft(desired_spec(policy, observed, rules::ndp_table_id())) == golden("ip6-two-vips-one-prefix.nft"));
  }
  SUBCASE("redirected IPv4 VIPs: every port, single ports, a range and port mappings") {
    const Policy policy = policy_of(
        vip("192.0.2.30", "method = \"redirect\"\n") +
        vip("192.0.2.31", "method = \"redirect\"\nports = [\"tcp:443\", \"udp:5353->53\", \"tcp:80\", \"tcp:8080->18080\"]\n") +
        vip("198.51.100.0/28", "method = \"redirect\"\nports = [\"udp:1000-2000\"]\n"));
    CHECK(nft::render_nft(desired_spec(policy, observed, rules::nat_table_id(Family::kV4))) ==
          golden("nat-ip-keep-and-to.nft"));
  }
  SUBCASE("redirected IPv6 VIPs") {
    const Policy policy = policy_of(vip("2001:db8::30", "method = \"redirect\"\n") +
                                    vip("2001:db8::31", "method = \"redirect\"\nports = [\"tcp:8080->18080\", \"tcp:80\"]\n"));
    CHECK(nft::render_nft(desired_spec(policy, observed, rules::nat_table_id(Family::kV6))) ==
          golden("nat-ip6-keep-and-to.nft"));
  }
}

// ---- the expression IR ----

namespace {

nft::ExprAttr attr(uint16_t type, std::string bytes) { return {type, std::move(bytes)}; }
std::string u64_bytes(uint64_t value) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>(value >> (8 * i));
  return out;
}

// One expression as the adapter decoded it from a kernel dump, written
// "name type=hexbytes ...": what tests/unit_diff captured on Linux 6.18.
nft::Expr parse_dumped(std::string_view text) {
  std::istringstream in{std::string(text)};
  nft::Expr e;
  in >> e.name;
  std::string field;
  while (in >> field) {
    const size_t eq = field.find('=');
    REQUIRE(eq != std::string::npos);
    nft::ExprAttr a;
    a.type = static_cast<uint16_t>(std::stoi(field.substr(0, eq)));
    for (size_t i = eq + 1; i + 1 < field.size(); i += 2) {
      a.bytes.push_back(static_cast<char>(std::stoi(field.substr(i, 2), nullptr, 16)));
    }
    e.attrs.push_back(a);
  }
  return e;
}

std::vector<nft::Expr> dumped(std::initializer_list<std::string_view> exprs) {
  std::vector<nft::Expr> out;
  for (std::string_view e : exprs) out.push_back(parse_dumped(e));
  return out;
}

struct CapturedRule {
  std::string what;
  nft::TableSpec (*table)();
  size_t index;
  std::vector<nft::Expr> kernel;  ///< decoded from the kernel's dump of the rule
};

// Captured by putting each spec into a scratch namespace with NftTables and
// reading it back with NftTables::observe (rules/golden/README.md).
std::vector<CapturedRule> captured() {
  return {
    {"arp input drop", two_vips, 0,
     dumped({"payload 1=01000000 2=01000000 3=06000000 4=02000000", "cmp 1=01000000 3=0001",
             "payload 1=01000000 2=01000000 3=18000000 4=04000000", "lookup 1=01000000 3=7669707300", "counter",
             "immediate"})},
    {"arp output rewrite on eth0", two_vips, 1,
     dumped({"meta 1=07000000 2=01000000", "cmp 1=01000000 3=65746830000000000000000000000000",
             "payload 1=01000000 2=01000000 3=0e000000 4=04000000", "lookup 1=01000000 3=7669707300", "counter",
             "immediate 1=01000000 2=c0000201", "payload 2=01000000 3=0e000000 4=04000000 5=01000000"})},
    {"ndp input drop", ndp, 0,
     dumped({"meta 1=10000000 2=01000000", "cmp 1=01000000 3=3a", "payload 1=01000000 2=02000000 4=01000000",
             "cmp 1=01000000 3=87", "payload 1=01000000 2=02000000 3=08000000 4=10000000",
             "lookup 1=01000000 3=7669707300", "counter", "immediate"})},
    {"ndp output drop", ndp, 1,
     dumped({"meta 1=10000000 2=01000000", "cmp 1=01000000 3=3a", "payload 1=01000000 2=02000000 4=01000000",
             "cmp 1=01000000 3=88", "payload 1=01000000 2=02000000 3=08000000 4=10000000",
             "lookup 1=01000000 3=7669707300", "counter", "immediate"})},
    {"ip nat keep", nat_ip, 0,
     dumped({"payload 1=01000000 2=01000000 3=10000000 4=04000000", "meta 1=10000000 2=09000000",
             "byteorder 1=09000000 2=09000000 3=01000000 4=01000000 5=02000000",
             "payload 1=0a000000 2=02000000 3=02000000 4=02000000", "lookup 1=01000000 3=6b65657000", "counter", "redir"})},
    {"ip nat to, tcp", nat_ip, 1,
     dumped({"meta 1=10000000 2=01000000", "cmp 1=01000000 3=06", "counter",
             "payload 1=01000000 2=01000000 3=10000000 4=04000000", "meta 1=10000000 2=09000000",
             "byteorder 1=09000000 2=09000000 3=01000000 4=01000000 5=02000000",
             "payload 1=0a000000 2=02000000 3=02000000 4=02000000", "lookup 1=01000000 2=01000000 3=746f00",
             "redir 1=01000000 2=01000000 3=02000000"})},
    {"ip6 nat keep", nat_ip6, 0,
     dumped({"payload 1=01000000 2=01000000 3=18000000 4=10000000", "meta 1=10000000 2=02000000",
             "byteorder 1=02000000 2=02000000 3=01000000 4=01000000 5=02000000",
             "payload 1=0d000000 2=02000000 3=02000000 4=02000000", "lookup 1=01000000 3=6b65657000", "counter", "redir"})},
    {"ip6 nat to, udp", nat_ip6, 2,
     dumped({"meta 1=10000000 2=01000000", "cmp 1=01000000 3=11", "counter",
             "payload 1=01000000 2=01000000 3=18000000 4=10000000", "meta 1=10000000 2=02000000",
             "byteorder 1=02000000 2=02000000 3=01000000 4=01000000 5=02000000",
             "payload 1=0d000000 2=02000000 3=02000000 4=02000000", "lookup 1=01000000 2=01000000 3=746f00",
             "redir 1=01000000 2=01000000 3=02000000"})},
  };
}

}  // namespace

TEST_CASE("the test kernel renumbers registers exactly as the real kernel dumped them") {
  // world::as_dumped stands in for the kernel in the Diff tests: it must agree with every capture.
  for (const CapturedRule& c : captured()) {
    CAPTURE(c.what);
    CHECK(as_dumped(c.table().rules.at(c.index).exprs) == c.kernel);
  }
}

TEST_CASE("every rule is recognised in the kernel's dump of it") {
  // The ip6 NAT rules are the ones at risk: meta l4proto after a whole IPv6
  // address lands in NFT_REG32_04, which the kernel dumps as NFT_REG_2.
  for (const CapturedRule& c : captured()) {
    CAPTURE(c.what);
    const nft::RuleSpec rule = c.table().rules.at(c.index);
    CHECK(rule.match == c.kernel);
    CHECK(rule.same_as(rule.chain, c.kernel));
  }
}

TEST_CASE("normalized drops counter values, set ids and zero numbers") {
  const std::vector<nft::Expr> raw{
      nft::Expr{"counter", {attr(NFTNL_EXPR_CTR_BYTES, u64_bytes(1500)), attr(NFTNL_EXPR_CTR_PACKETS, u64_bytes(3))}},
      nft::Expr{"lookup",
                {attr(NFTNL_EXPR_LOOKUP_SREG, nft::u32_bytes(NFT_REG_1)), attr(NFTNL_EXPR_LOOKUP_SET, std::string("vips\0", 5)),
                 attr(NFTNL_EXPR_LOOKUP_SET_ID, nft::u32_bytes(7))}},
      nft::payload_load(NFT_PAYLOAD_LL_HEADER, 0, 6, NFT_REG_1),
      nft::cmp_eq(std::string("\x01\x02", 2), NFT_REG_1),
  };
  const std::vector<nft::Expr> expected{
      nft::Expr{"counter", {}},
      nft::Expr{"lookup",
                {attr(NFTNL_EXPR_LOOKUP_SREG, nft::u32_bytes(NFT_REG_1)), attr(NFTNL_EXPR_LOOKUP_SET, std::string("vips\0", 5))}},
      // base 0 (link layer) and offset 0 go; length and register stay.
      nft::Expr{"payload",
                {attr(NFTNL_EXPR_PAYLOAD_DREG, nft::u32_bytes(NFT_REG_1)), attr(NFTNL_EXPR_PAYLOAD_LEN, nft::u32_bytes(6))}},
      // op eq (0) goes; the data stays.
      nft::Expr{"cmp", {attr(NFTNL_EXPR_CMP_SREG, nft::u32_bytes(NFT_REG_1)), attr(NFTNL_EXPR_CMP_DATA, std::string("\x01\x02", 2))}},
  };
  CHECK(nft::normalized(raw) == expected);
  // Normalizing twice changes nothing more.
  CHECK(nft::normalized(nft::normalized(raw)) == expected);
}

TEST_CASE("normalized never drops cmp or immediate data, even all zero") {
  const std::vector<nft::Expr> zeros{nft::cmp_eq(std::string(4, '\0'), NFT_REG_1),
                                     nft::immediate_data(std::string(4, '\0'), NFT_REG_1)};
  const std::vector<nft::Expr> out = nft::normalized(zeros);
  REQUIRE(out.size() == 2);
  auto has_data = [](const nft::Expr& e, uint16_t type) {
    for (const nft::ExprAttr& a : e.attrs) {
      if (a.type == type) return a.bytes == std::string(4, '\0');
    }
    return false;
  };
  CHECK(has_data(out[0], NFTNL_EXPR_CMP_DATA));
  CHECK(has_data(out[1], NFTNL_EXPR_IMM_DATA));
  // 0.0.0.0 as a rewrite target differs from no target at all.
  CHECK(nft::normalized({nft::immediate_data(std::string(4, '\0'), NFT_REG_1)}) !=
        nft::normalized({nft::Expr{"immediate", {attr(NFTNL_EXPR_IMM_DREG, nft::u32_bytes(NFT_REG_1))}}}));
}

TEST_CASE("a rule built twice is the same rule; one changed byte of its data makes it another") {
  const nft::TableSpec first = five_vips();
  const nft::TableSpec second = five_vips();
  REQUIRE(first.rules.size() == 3);
  for (size_t i = 0; i < first.rules.size(); ++i) {
    CAPTURE(first.rules[i].text);
    CHECK(first.rules[i].match == second.rules[i].match);
    CHECK(first.rules[i].same_as(second.rules[i].chain, second.rules[i].match));
    CHECK_FALSE(first.rules[i].same_as(first.rules[i].chain == "input" ? "output" : "input", second.rules[i].match));
  }

  const nft::RuleSpec& eth0 = first.rules[1];
  REQUIRE(eth0.interface == "eth0");
  auto with_changed_byte = [&](const char* name, uint16_t type, size_t at) {
    std::vector<nft::Expr> exprs = eth0.exprs;
    for (nft::Expr& e : exprs) {
      for (nft::ExprAttr& a : e.attrs) {
        if (e.name == name && a.type == type) {
          a.bytes[at] = static_cast<char>(a.bytes[at] ^ 0x01);
          return nft::normalized(exprs);
        }
      }
    }
    FAIL("no " << name << " attribute " << type);
    return exprs;
  };
  CHECK_FALSE(eth0.same_as("output", with_changed_byte("cmp", NFTNL_EXPR_CMP_DATA, 3)));        // "eth1"
  CHECK_FALSE(eth0.same_as("output", with_changed_byte("immediate", NFTNL_EXPR_IMM_DATA, 3)));  // 192.0.2.0
  // Counters that went up are the same rule.
  std::vector<nft::Expr> counted = eth0.exprs;
  for (nft::Expr& e : counted) {
    if (e.name == "counter") e.attrs = {attr(NFTNL_EXPR_CTR_PACKETS, u64_bytes(42)), attr(NFTNL_EXPR_CTR_BYTES, u64_bytes(2520))};
  }
  CHECK(eth0.same_as("output", nft::normalized(counted)));
}

TEST_CASE("the rules of different interfaces and real IPs differ, and say which interface they match") {
  const nft::TableSpec table = five_vips();
  CHECK(table.rules[1].role == nft::RuleRole::kArpRewriteSender);
  CHECK(table.rules[2].role == nft::RuleRole::kArpDropAnnouncement);
  CHECK(table.rules[2].interface == "eth1");
  CHECK(table.rules[1].match != table.rules[2].match);
  const nft::TableSpec other_ip = rules::arp_table({}, {{"eth0", ip("192.0.2.2")}});
  CHECK_FALSE(table.rules[1].same_as("output", other_ip.rules[1].match));
}
