#include "core/plan.h"

#include <fmt/format.h>

namespace arpguard {

namespace {

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};

std::string range_list(const std::vector<Ipv4Range>& vips) {
  constexpr size_t kShown = 8;
  std::string out;
  for (size_t i = 0; i < vips.size() && i < kShown; ++i) {
    if (i > 0) out += ", ";
    out += vips[i].str();
  }
  if (vips.size() > kShown) out += fmt::format(", ... ({} more)", vips.size() - kShown);
  return out;
}

}  // namespace

std::string describe(const NftChange& change) {
  return std::visit(
      Overloaded{
          [](const NftCreateTable& c) {
            std::vector<std::string> parts;
            if (c.table) parts.emplace_back(fmt::format("table arp {}{}", rules::kTable, c.owned ? " (owner, persist)" : ""));
            if (c.set) parts.emplace_back(fmt::format("set {}", rules::kSet));
            if (c.input_chain) parts.emplace_back(fmt::format("chain {}", rules::kInputChain));
            if (c.output_chain) parts.emplace_back(fmt::format("chain {}", rules::kOutputChain));
            return fmt::format("nft create {}", fmt::join(parts, ", "));
          },
          [](const NftAdoptTable&) { return fmt::format("nft adopt orphaned table arp {}", rules::kTable); },
          [](const NftDeleteTable&) { return fmt::format("nft delete table arp {}", rules::kTable); },
          [](const NftAddElements& c) {
            return fmt::format("nft add {} element(s) to @{}: {}", c.vips.size(), rules::kSet, range_list(c.vips));
          },
          [](const NftDelElements& c) {
            return fmt::format("nft delete {} element(s) from @{}: {}", c.vips.size(), rules::kSet,
                               range_list(c.vips));
          },
          [](const NftAddRule& c) { return fmt::format("nft add rule {}: {}", c.rule.chain(), c.rule.nft_text()); },
          [](const NftDelRule& c) {
            return fmt::format("nft delete rule {} handle {}: {}", c.chain, c.handle, c.what);
          },
      },
      change);
}

std::string describe(const Action& action) {
  return std::visit(Overloaded{
                        [](const DelVip& a) { return fmt::format("del vip {} ({})", a.vip.str(), a.why); },
                        [](const SetSysctl& a) {
                          return fmt::format("set {} {} -> {}", a.key.str(), a.from, a.to);
                        },
                        [](const NftChange& a) { return describe(a); },
                        [](const AddVip& a) {
                          return fmt::format("add vip {}{}", a.vip.str(), a.scope == kScopeHost ? " scope host" : "");
                        },
                    },
                    action);
}

std::string resource_of(const Action& action) {
  return std::visit(Overloaded{
                        [](const DelVip& a) { return "vip " + a.vip.prefix.str(); },
                        [](const SetSysctl& a) { return "sysctl " + a.key.str(); },
                        [](const NftChange&) { return fmt::format("nft table arp {}", rules::kTable); },
                        [](const AddVip& a) { return "vip " + a.vip.prefix.str(); },
                    },
                    action);
}

std::vector<std::string> Plan::lines() const {
  std::vector<std::string> out;
  out.reserve(actions.size());
  for (const Action& action : actions) out.push_back(describe(action));
  return out;
}

}  // namespace arpguard
