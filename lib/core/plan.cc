#include "core/plan.h"

#include <fmt/format.h>

#include "core/overloaded.h"

namespace arpguard {

std::string_view to_string(DelReason reason) {
  switch (reason) {
    case DelReason::kNotInPolicy: return "no longer in policy";
    case DelReason::kMisplaced: return "misplaced";
    case DelReason::kWrongAttributes: return "wrong attributes, re-added";
    case DelReason::kRedirected: return "redirected VIPs are configured nowhere";
    case DelReason::kRemoving: return "removing arpguard";
  }
  return "?";
}

std::string Resource::str() const {
  switch (kind) {
    case Kind::kVip: return "vip " + name;
    case Kind::kSysctl: return "sysctl " + name;
    case Kind::kTable: return "nft table " + name;
    case Kind::kRouting: return name;
  }
  return name;
}

namespace {

std::string element_list(const std::vector<nft::Element>& elements) {
  constexpr size_t kShown = 8;
  std::string out;
  for (size_t i = 0; i < elements.size() && i < kShown; ++i) {
    if (i > 0) out += ", ";
    out += elements[i].str();
  }
  if (elements.size() > kShown) out += fmt::format(", ... ({} more)", elements.size() - kShown);
  return out;
}

std::string scope_suffix(uint8_t scope) { return scope == kScopeHost ? " scope host" : ""; }

// "rule from 192.0.2.11 lookup 5003 priority 1000", "route 192.0.2.0/24 dev eth1 src 192.0.2.11 table 5003"
std::string routing_object(const RoutingChange& change) {
  return std::visit(Overloaded{
                        [&](const RoutingRule& r) { return "rule " + r.key.str(); },
                        [&](const PolicyRoute& r) {
                          return fmt::format("route {} dev {}{} table {}", r.key.destination.str(), change.device,
                                             r.info.source ? " src " + r.info.source->str() : std::string(),
                                             r.key.table);
                        },
                    },
                    change.object);
}

}  // namespace

std::string describe(const NftChange& change) {
  using namespace nft_change;
  return std::visit(
      Overloaded{
          [](const CreateTable& c) {
            if (c.adopt) return fmt::format("nft adopt orphaned table {}", c.table.str());
            const bool owned = (c.flags & nft::kTableFlagOwner) != 0;
            return fmt::format("nft create table {}{}", c.table.str(), owned ? " (owner, persist)" : "");
          },
          [](const DeleteTable& c) { return fmt::format("nft delete table {}", c.table.str()); },
          [](const CreateSet& c) {
            return fmt::format("nft create {} {} in {}", c.set.is_map() ? "map" : "set", c.set.name, c.table.str());
          },
          [](const CreateChain& c) { return fmt::format("nft create chain {} in {}", c.chain.name, c.table.str()); },
          [](const AddElements& c) {
            return fmt::format("nft add {} element(s) to {}: {}", c.elements.size(), c.set.str(),
                               element_list(c.elements));
          },
          [](const DelElements& c) {
            return fmt::format("nft delete {} element(s) from {}: {}", c.elements.size(), c.set.str(),
                               element_list(c.elements));
          },
          [](const AddRule& c) {
            return fmt::format("nft add rule {} {}: {}", c.table.str(), c.rule.chain, c.rule.text);
          },
          [](const DelRule& c) {
            return fmt::format("nft delete rule {} {} handle {}: {}", c.table.str(), c.chain, c.handle, c.what);
          },
      },
      change);
}

std::string describe(const Action& action) {
  return std::visit(
      Overloaded{
          [](const DelAddress& a) {
            const std::string why = a.why == DelReason::kMisplaced
                                        ? fmt::format("misplaced: belongs on {}", a.belongs_on)
                                        : std::string(to_string(a.why));
            return fmt::format("del vip {} dev {} ({})", a.key.prefix().str(), a.device, why);
          },
          [](const DelRoute& a) {
            return fmt::format("del route local {} table local ({})", a.key.destination.str(), to_string(a.why));
          },
          [](const RoutingChange& a) { return fmt::format("{} {}", a.add ? "add" : "del", routing_object(a)); },
          [](const SetSysctl& a) { return fmt::format("set {} {} -> {}", a.key.str(), a.from, a.to); },
          [](const NftChange& a) { return describe(a); },
          [](const AddAddress& a) {
            std::string extra = scope_suffix(a.scope);
            if (a.deprecated) extra += " nodad preferred_lft 0";
            if (a.adopted) extra += " (there before arpguard: not its own)";
            return fmt::format("{} vip {} dev {}{}", a.replace ? "change" : "add", a.key.prefix().str(), a.device,
                               extra);
          },
          [](const AddRoute& a) {
            return fmt::format("add route local {} dev {} table local", a.key.destination.str(), a.device);
          },
      },
      action);
}

Resource resource_of(const Action& action) {
  using Kind = Resource::Kind;
  return std::visit(
      Overloaded{
          [](const DelAddress& a) { return Resource{Kind::kVip, a.key.prefix().str()}; },
          [](const DelRoute& a) { return Resource{Kind::kVip, a.key.destination.str()}; },
          [](const RoutingChange& a) { return Resource{Kind::kRouting, routing_object(a)}; },
          [](const SetSysctl& a) { return Resource{Kind::kSysctl, a.key.str()}; },
          [](const NftChange& a) {
            return std::visit(
                Overloaded{
                    [](const nft_change::AddElements& c) { return Resource{Kind::kTable, c.set.table.str()}; },
                    [](const nft_change::DelElements& c) { return Resource{Kind::kTable, c.set.table.str()}; },
                    [](const auto& c) { return Resource{Kind::kTable, c.table.str()}; },
                },
                a);
          },
          [](const AddAddress& a) { return Resource{Kind::kVip, a.key.prefix().str()}; },
          [](const AddRoute& a) { return Resource{Kind::kVip, a.key.destination.str()}; },
      },
      action);
}

std::vector<std::string> Plan::lines(size_t shown_per_kind) const {
  std::vector<std::string> out;
  for (size_t i = 0; i < actions.size();) {
    size_t end = i;
    while (end < actions.size() && actions[end].index() == actions[i].index()) ++end;
    const size_t shown = std::min(end - i, shown_per_kind);
    for (size_t k = i; k < i + shown; ++k) out.push_back(describe(actions[k]));
    if (end - i > shown) out.push_back(fmt::format("... and {} more like it", end - i - shown));
    i = end;
  }
  return out;
}

}  // namespace arpguard
