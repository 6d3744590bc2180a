// The rules of rules/arp_table.h as libnftnl objects, both ways.
//
// encode_*() build what arpguard sends; decode_*() read what the kernel dumps
// back and recognise arpguard's own rules exactly (anything else decodes as
// nullopt: a foreign rule). Pure: no sockets; tested with built objects.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "core/ipv4.h"
#include "rules/arp_table.h"

struct nftnl_rule;
struct nftnl_set;
struct nftnl_chain;
struct nftnl_table;

namespace arpguard::rules {

struct NftnlFree {
  void operator()(nftnl_rule* p) const;
  void operator()(nftnl_set* p) const;
  void operator()(nftnl_chain* p) const;
  void operator()(nftnl_table* p) const;
};
using RulePtr = std::unique_ptr<nftnl_rule, NftnlFree>;
using SetPtr = std::unique_ptr<nftnl_set, NftnlFree>;
using ChainPtr = std::unique_ptr<nftnl_chain, NftnlFree>;
using TablePtr = std::unique_ptr<nftnl_table, NftnlFree>;

/// ID by which rules refer to the set created in the same batch.
inline constexpr uint32_t kSetId = 1;

TablePtr encode_table(uint32_t flags);
/// The set `vips`: type ipv4_addr, flags interval.
SetPtr encode_set();
/// The set `vips` holding `vips` as interval elements (start, end+1 marked END).
SetPtr encode_elements(const std::vector<Ipv4Range>& vips);
/// Base chain `input` or `output` (kInputChain / kOutputChain), filter, priority 0, policy accept.
ChainPtr encode_chain(std::string_view name);
RulePtr encode_rule(const ArpRule& rule);

/// The rule, when it is exactly one of arpguard's; nullopt for anything else.
std::optional<ArpRule> decode_rule(const nftnl_rule* rule);
/// Counter values of a rule (0 when it has no counter).
std::pair<uint64_t, uint64_t> decode_counter(const nftnl_rule* rule);
/// True when the set is arpguard's shape: ipv4_addr keys, interval, no data.
bool set_has_expected_shape(const nftnl_set* set);
/// True when `chain` is the base chain arpguard makes under that name.
bool chain_has_expected_shape(const nftnl_chain* chain);
/// The address ranges held by an interval set's elements.
std::vector<Ipv4Range> decode_elements(nftnl_set* set);

}  // namespace arpguard::rules
