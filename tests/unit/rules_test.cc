// The ruleset: rendered text equals the golden files; libnftnl encoding and
// decoding agree, and decoding recognises only arpguard's exact rules.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>  // libnftnl/expr.h needs FILE

#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <linux/netfilter/nf_tables.h>

#include <fstream>
#include <sstream>

#include "arpguard_config.h"
#include "rules/arp_table.h"
#include "rules/arp_table_nftnl.h"

using namespace arpguard;
using namespace arpguard::rules;

namespace {

std::string golden(const std::string& name) {
  std::ifstream in(std::string(ARPGUARD_SOURCE_ROOT) + "/rules/golden/" + name);
  REQUIRE(in);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

Ipv4 ip(const char* text) { return *Ipv4::parse(text); }
Ipv4Range one(const char* text) { return {ip(text), ip(text)}; }

}  // namespace

TEST_CASE("two VIPs on eth0 render as the golden two-vips.nft") {
  ArpTableSpec spec{{one("192.0.2.10"), one("192.0.2.11")},
                    {ArpRule::input_drop(), ArpRule::output_mangle("eth0", ip("192.0.2.1"))}};
  CHECK(render_nft(spec) == golden("two-vips.nft"));
}

TEST_CASE("five VIPs and an interface without IPv4 render as the golden file, two elements a line") {
  ArpTableSpec spec{{one("192.0.2.10"), one("192.0.2.11"), one("192.0.2.12"), one("192.0.2.20"), one("198.51.100.7")},
                    {ArpRule::input_drop(), ArpRule::output_mangle("eth0", ip("192.0.2.1")),
                     ArpRule::output_drop("eth1")}};
  CHECK(render_nft(spec) == golden("five-vips-two-interfaces.nft"));
}

TEST_CASE("every rule kind survives encode then decode") {
  for (const ArpRule& rule : {ArpRule::input_drop(), ArpRule::output_mangle("eth0", ip("192.0.2.1")),
                              ArpRule::output_drop("bond0.100"), ArpRule::output_mangle("abcdefghijklmno", ip("10.1.2.3"))}) {
    CAPTURE(rule.nft_text());
    RulePtr encoded = encode_rule(rule);
    std::optional<ArpRule> decoded = decode_rule(encoded.get());
    REQUIRE(decoded);
    CHECK(*decoded == rule);
  }
}

TEST_CASE("a rule that differs in any expression decodes as foreign") {
  SUBCASE("accept instead of drop") {
    RulePtr rule = encode_rule(ArpRule::input_drop());
    nftnl_expr* accept = nftnl_expr_alloc("immediate");
    nftnl_expr_set_u32(accept, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
    nftnl_expr_set_u32(accept, NFTNL_EXPR_IMM_VERDICT, 1);  // NF_ACCEPT
    // Rebuild the rule with the last expression swapped.
    RulePtr changed(nftnl_rule_alloc());
    nftnl_rule_set_str(changed.get(), NFTNL_RULE_CHAIN, "input");
    nftnl_expr_iter* it = nftnl_expr_iter_create(rule.get());
    std::vector<nftnl_expr*> exprs;
    for (nftnl_expr* e = nftnl_expr_iter_next(it); e; e = nftnl_expr_iter_next(it)) exprs.push_back(e);
    nftnl_expr_iter_destroy(it);
    REQUIRE(exprs.size() == 6);
    RulePtr source = encode_rule(ArpRule::input_drop());  // fresh copies to move into `changed`
    it = nftnl_expr_iter_create(source.get());
    std::vector<nftnl_expr*> fresh;
    for (nftnl_expr* e = nftnl_expr_iter_next(it); e; e = nftnl_expr_iter_next(it)) fresh.push_back(e);
    nftnl_expr_iter_destroy(it);
    for (size_t i = 0; i < 5; ++i) {
      nftnl_rule_del_expr(fresh[i]);
      nftnl_rule_add_expr(changed.get(), fresh[i]);
    }
    nftnl_rule_add_expr(changed.get(), accept);
    CHECK_FALSE(decode_rule(changed.get()).has_value());
  }
  SUBCASE("an input rule found in the output chain") {
    RulePtr rule = encode_rule(ArpRule::input_drop());
    nftnl_rule_set_str(rule.get(), NFTNL_RULE_CHAIN, "output");
    CHECK_FALSE(decode_rule(rule.get()).has_value());
  }
  SUBCASE("a rule with no expressions") {
    RulePtr rule(nftnl_rule_alloc());
    nftnl_rule_set_str(rule.get(), NFTNL_RULE_CHAIN, "output");
    CHECK_FALSE(decode_rule(rule.get()).has_value());
  }
}

TEST_CASE("interval elements decode back to the ranges they encode, adjacent ones too") {
  const std::vector<Ipv4Range> vips{one("192.0.2.10"), one("192.0.2.11"), {ip("10.0.0.0"), ip("10.0.0.255")},
                                    one("255.255.255.254"), {ip("255.255.255.255"), ip("255.255.255.255")}};
  SetPtr set = encode_elements(vips);
  std::vector<Ipv4Range> sorted = vips;
  std::sort(sorted.begin(), sorted.end());
  CHECK(decode_elements(set.get()) == sorted);
}

TEST_CASE("nft's leading 0.0.0.0 end marker is not a range") {
  SetPtr set = encode_elements({one("192.0.2.10")});
  nftnl_set_elem* marker = nftnl_set_elem_alloc();
  const uint32_t zero = 0;
  nftnl_set_elem_set(marker, NFTNL_SET_ELEM_KEY, &zero, sizeof(zero));
  nftnl_set_elem_set_u32(marker, NFTNL_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
  nftnl_set_elem_add(set.get(), marker);
  CHECK(decode_elements(set.get()) == std::vector<Ipv4Range>{one("192.0.2.10")});
}

TEST_CASE("ranges print as nft prints them") {
  CHECK(one("192.0.2.10").str() == "192.0.2.10");
  CHECK(Ipv4Range{ip("10.0.0.0"), ip("10.0.0.255")}.str() == "10.0.0.0/24");
  CHECK(Ipv4Range{ip("10.0.0.1"), ip("10.0.0.5")}.str() == "10.0.0.1-10.0.0.5");
}
