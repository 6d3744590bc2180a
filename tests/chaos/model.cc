#include "tests/chaos/model.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace arpguard::chaos {

using nlohmann::json;

namespace {

constexpr int kWantArpIgnore = 1;
constexpr int kWantArpAnnounce = 2;
constexpr const char* kArpFacing = "eth0";
constexpr const char* kRealIp = "192.0.2.1";

Uint128 host_mask(int family, int length) {
  const int bits = family == 4 ? 32 : 128;
  if (length >= bits) return 0;
  const int host_bits = bits - length;
  return host_bits == 128 ? ~static_cast<Uint128>(0) : (static_cast<Uint128>(1) << host_bits) - 1;
}

std::vector<Range> ranges_of(const json& element) {
  if (element.is_string()) {
    if (auto r = Range::parse(element.get<std::string>())) return {*r};
    return {};
  }
  if (!element.is_object()) return {};
  if (element.contains("elem")) return ranges_of(element["elem"].value("val", json()));
  if (element.contains("prefix")) {
    const json& p = element["prefix"];
    if (!p.contains("addr") || !p.contains("len")) return {};
    if (auto r = Range::parse(p["addr"].get<std::string>() + "/" + std::to_string(p["len"].get<int>()))) return {*r};
    return {};
  }
  if (element.contains("range") && element["range"].is_array() && element["range"].size() == 2 &&
      element["range"][0].is_string()) {
    if (auto r = Range::parse(element["range"][0].get<std::string>() + "-" + element["range"][1].get<std::string>())) {
      return {*r};
    }
  }
  return {};
}

// Whether the union of `have` covers `want` (all of one family).
bool union_covers(std::vector<Range> have, const Range& want) {
  std::erase_if(have, [&](const Range& r) { return r.first.family != want.first.family; });
  std::sort(have.begin(), have.end(), [](const Range& a, const Range& b) { return a.first.value < b.first.value; });
  Uint128 next = want.first.value;  // the first address not yet covered
  for (const Range& r : have) {
    if (r.first.value > next) break;
    if (r.last.value >= next) {
      if (r.last.value >= want.last.value) return true;
      next = r.last.value + 1;
    }
  }
  return false;
}

bool port_matches(const json& part, int port) {
  if (part.is_number_integer()) return part.get<int>() == port;
  if (part.is_object() && part.contains("range") && part["range"].is_array() && part["range"].size() == 2) {
    return part["range"][0].get<int>() <= port && port <= part["range"][1].get<int>();
  }
  return false;
}

bool address_matches(const json& part, const Addr& address) {
  for (const Range& r : ranges_of(part)) {
    if (r.contains(address)) return true;
  }
  return false;
}

// The nft objects of one listing, looked up by family, table and name.
class NftView {
 public:
  explicit NftView(const json& items) : items_(items) {}

  bool table(const std::string& family, const std::string& name) const {
    for (const json& item : items_) {
      if (item.contains("table") && item["table"].value("family", "") == family &&
          item["table"].value("name", "") == name) {
        return true;
      }
    }
    return false;
  }
  // A set or a map.
  const json* set(const std::string& family, const std::string& table, const std::string& name) const {
    for (const json& item : items_) {
      for (const char* kind : {"set", "map"}) {
        if (!item.contains(kind)) continue;
        const json& s = item[kind];
        if (s.value("family", "") == family && s.value("table", "") == table && s.value("name", "") == name) return &s;
      }
    }
    return nullptr;
  }
  bool chain_hooked(const std::string& family, const std::string& table, const std::string& name,
                    const std::string& hook) const {
    for (const json& item : items_) {
      if (!item.contains("chain")) continue;
      const json& c = item["chain"];
      if (c.value("family", "") == family && c.value("table", "") == table && c.value("name", "") == name &&
          c.value("hook", "") == hook) {
        return true;
      }
    }
    return false;
  }
  // Each rule's expressions as compact JSON text.
  std::vector<std::string> rules(const std::string& family, const std::string& table, const std::string& chain) const {
    std::vector<std::string> out;
    for (const json& item : items_) {
      if (!item.contains("rule")) continue;
      const json& r = item["rule"];
      if (r.value("family", "") == family && r.value("table", "") == table && r.value("chain", "") == chain) {
        out.push_back(r.value("expr", json::array()).dump());
      }
    }
    return out;
  }
  bool rule_with(const std::string& family, const std::string& table, const std::string& chain,
                 const std::vector<std::string>& fragments) const {
    for (const std::string& text : rules(family, table, chain)) {
      if (std::all_of(fragments.begin(), fragments.end(),
                      [&](const std::string& f) { return text.find(f) != std::string::npos; })) {
        return true;
      }
    }
    return false;
  }
  std::vector<Range> elements(const std::string& family, const std::string& table, const std::string& set_name) const {
    std::vector<Range> out;
    if (const json* s = set(family, table, set_name)) {
      for (const json& e : s->value("elem", json::array())) {
        for (const Range& r : ranges_of(e)) out.push_back(r);
      }
    }
    return out;
  }

 private:
  const json& items_;
};

int effective(const KernelFacts& facts, const std::string& name) {
  auto all = facts.sysctls.find("all/" + name);
  auto dev = facts.sysctls.find(std::string(kArpFacing) + "/" + name);
  if (all == facts.sysctls.end() || dev == facts.sysctls.end()) return -1;
  return std::max(all->second, dev->second);
}

// Devices on which `address` is configured (any prefix length).
std::vector<const AddrFact*> configured(const KernelFacts& facts, const std::string& address) {
  std::vector<const AddrFact*> out;
  const auto want = Addr::parse(address);
  for (const AddrFact& a : facts.addresses) {
    const auto have = Addr::parse(a.local);
    if (want && have && *want == *have) out.push_back(&a);
  }
  return out;
}

bool local_route(const KernelFacts& facts, const std::string& prefix) {
  return std::any_of(facts.local_routes.begin(), facts.local_routes.end(), [&](const RouteFact& r) {
    return r.type == "local" && r.dst == prefix && r.dev == "lo";
  });
}

struct ArpTable {
  bool rules_ok = false;
  std::vector<Range> elements;
};

ArpTable arp_table(const NftView& nft, std::vector<std::pair<Gap, std::string>>* gaps) {
  ArpTable t;
  auto gap = [&](std::string text) {
    if (gaps) gaps->emplace_back(Gap::kNftArp, std::move(text));
  };
  if (!nft.table("arp", "arpguard")) {
    gap("table arp arpguard missing");
    return t;
  }
  if (!nft.set("arp", "arpguard", "vips")) gap("arp arpguard: set vips missing");
  const bool input = nft.chain_hooked("arp", "arpguard", "input", "input") &&
                     nft.rule_with("arp", "arpguard", "input", {"\"operation\"", "\"request\"", "\"@vips\"", "\"drop\""});
  const bool output = nft.chain_hooked("arp", "arpguard", "output", "output") &&
                      nft.rule_with("arp", "arpguard", "output",
                                    {"\"oifname\"", std::string("\"") + kArpFacing + "\"", "\"@vips\"", "\"mangle\"",
                                     std::string("\"") + kRealIp + "\""});
  if (!input) gap("arp arpguard: input drop rule for @vips missing");
  if (!output) gap("arp arpguard: output sender-rewrite rule for eth0 missing");
  t.rules_ok = input && output;
  t.elements = nft.elements("arp", "arpguard", "vips");
  return t;
}

ArpTable ip6_table(const NftView& nft, std::vector<std::pair<Gap, std::string>>* gaps) {
  ArpTable t;
  auto gap = [&](std::string text) {
    if (gaps) gaps->emplace_back(Gap::kNftIp6, std::move(text));
  };
  if (!nft.table("ip6", "arpguard")) {
    gap("table ip6 arpguard missing");
    return t;
  }
  if (!nft.set("ip6", "arpguard", "vips")) gap("ip6 arpguard: set vips missing");
  const bool input = nft.chain_hooked("ip6", "arpguard", "input", "input") &&
                     nft.rule_with("ip6", "arpguard", "input", {"nd-neighbor-solicit", "\"@vips\"", "\"drop\""});
  const bool output = nft.chain_hooked("ip6", "arpguard", "output", "output") &&
                      nft.rule_with("ip6", "arpguard", "output", {"nd-neighbor-advert", "\"@vips\"", "\"drop\""});
  if (!input) gap("ip6 arpguard: input NS drop rule missing");
  if (!output) gap("ip6 arpguard: output NA drop rule missing");
  t.rules_ok = input && output;
  t.elements = nft.elements("ip6", "arpguard", "vips");
  return t;
}

void nat_gaps(const NftView& nft, const ExpectedPolicy& policy, Verdict& v) {
  auto gap = [&](std::string text) { v.gaps.emplace_back(Gap::kNftNat, std::move(text)); };
  if (!nft.table("ip", "arpguard_nat")) {
    gap("table ip arpguard_nat missing");
    return;
  }
  const auto vip = Addr::parse(policy.redirect);
  const json* keep = nft.set("ip", "arpguard_nat", "keep");
  for (int port : policy.redirect_tcp_ports) {
    bool found = false;
    if (keep) {
      for (const json& e : keep->value("elem", json::array())) {
        const json& c = e.is_object() && e.contains("elem") ? e["elem"]["val"] : e;
        if (!c.is_object() || !c.contains("concat") || c["concat"].size() != 3) continue;
        const json& parts = c["concat"];
        found |= address_matches(parts[0], *vip) && parts[1] == "tcp" && port_matches(parts[2], port);
      }
    }
    if (!found) gap("ip arpguard_nat @keep lacks " + policy.redirect + " . tcp . " + std::to_string(port));
  }
  const json* to = nft.set("ip", "arpguard_nat", "to");
  for (const auto& [from, target] : policy.redirect_tcp_maps) {
    bool found = false;
    if (to) {
      for (const json& e : to->value("elem", json::array())) {
        if (!e.is_array() || e.size() != 2 || !e[0].is_object() || !e[0].contains("concat")) continue;
        const json& parts = e[0]["concat"];
        found |= parts.size() == 3 && address_matches(parts[0], *vip) && parts[1] == "tcp" &&
                 port_matches(parts[2], from) && e[1].is_number_integer() && e[1].get<int>() == target;
      }
    }
    if (!found) {
      gap("ip arpguard_nat @to lacks " + policy.redirect + " . tcp . " + std::to_string(from) + " : " +
          std::to_string(target));
    }
  }
  if (!nft.chain_hooked("ip", "arpguard_nat", "prerouting", "prerouting")) gap("ip arpguard_nat: chain prerouting missing");
  if (!nft.rule_with("ip", "arpguard_nat", "prerouting", {"\"@keep\"", "\"redirect\""})) {
    gap("ip arpguard_nat: redirect rule for @keep missing");
  }
  for (const char* proto : {"tcp", "udp"}) {
    if (!nft.rule_with("ip", "arpguard_nat", "prerouting",
                       {"\"@to\"", "\"redirect\"", std::string("\"right\":\"") + proto + "\""})) {
      gap(std::string("ip arpguard_nat: ") + proto + " redirect rule through @to missing");
    }
  }
}

}  // namespace

std::optional<Addr> Addr::parse(const std::string& text) {
  Addr a;
  unsigned char bytes[16];
  if (inet_pton(AF_INET, text.c_str(), bytes) == 1) {
    a.family = 4;
    for (int i = 0; i < 4; ++i) a.value = (a.value << 8) | bytes[i];
    return a;
  }
  if (inet_pton(AF_INET6, text.c_str(), bytes) == 1) {
    a.family = 6;
    for (int i = 0; i < 16; ++i) a.value = (a.value << 8) | bytes[i];
    return a;
  }
  return std::nullopt;
}

std::optional<Range> Range::parse(const std::string& text) {
  if (const size_t slash = text.find('/'); slash != std::string::npos) {
    auto a = Addr::parse(text.substr(0, slash));
    if (!a) return std::nullopt;
    const int length = std::atoi(text.c_str() + slash + 1);
    const Uint128 mask = host_mask(a->family, length);
    Range r{*a, *a};
    r.first.value &= ~mask;
    r.last.value = r.first.value | mask;
    return r;
  }
  if (const size_t dash = text.find('-'); dash != std::string::npos) {
    auto a = Addr::parse(text.substr(0, dash));
    auto b = Addr::parse(text.substr(dash + 1));
    if (!a || !b || a->family != b->family) return std::nullopt;
    return Range{*a, *b};
  }
  auto a = Addr::parse(text);
  if (!a) return std::nullopt;
  return Range{*a, *a};
}

bool Range::contains(const Range& other) const {
  return first.family == other.first.family && first.value <= other.first.value && other.last.value <= last.value;
}

std::string ExpectedPolicy::vip_toml() const {
  std::string out;
  for (const auto* list : {&v4, &v6, &routes}) {
    for (const std::string& vip : *list) out += "[[vip]]\naddress = \"" + vip + "\"\n";
  }
  if (!redirect.empty()) {
    out += "[[vip]]\naddress = \"" + redirect + "\"\nmethod = \"redirect\"\nports = [";
    std::string sep;
    for (int port : redirect_tcp_ports) {
      out += sep + "\"tcp:" + std::to_string(port) + "\"";
      sep = ", ";
    }
    for (const auto& [from, to] : redirect_tcp_maps) {
      out += sep + "\"tcp:" + std::to_string(from) + "->" + std::to_string(to) + "\"";
      sep = ", ";
    }
    out += "]\n";
  }
  return out;
}

Universe Universe::of(const std::vector<ExpectedPolicy>& policies) {
  Universe u;
  auto add = [](std::vector<std::string>& into, const std::string& item) {
    if (!item.empty() && std::find(into.begin(), into.end(), item) == into.end()) into.push_back(item);
  };
  for (const ExpectedPolicy& p : policies) {
    for (const std::string& v : p.v4) add(u.v4, v);
    for (const std::string& v : p.v6) add(u.v6, v);
    for (const std::string& v : p.routes) add(u.routes, v);
    add(u.redirects, p.redirect);
  }
  return u;
}

KernelFacts KernelFacts::parse(const std::string& addr_json, const std::string& route_json, const std::string& nft_json,
                               std::map<std::string, int> sysctls) {
  KernelFacts f;
  f.sysctls = std::move(sysctls);
  try {
    for (const json& link : json::parse(addr_json)) {
      for (const json& info : link.value("addr_info", json::array())) {
        if (!info.contains("local")) continue;
        f.addresses.push_back(AddrFact{link.value("ifname", ""), info["local"].get<std::string>(),
                                       info.value("prefixlen", 0), info.value("deprecated", false),
                                       info.value("tentative", false)});
      }
    }
    for (const json& route : json::parse(route_json)) {
      std::string dst = route.value("dst", "");
      f.local_routes.push_back(RouteFact{route.value("type", ""), dst, route.value("dev", "")});
    }
    f.nft = json::parse(nft_json).value("nftables", json::array());
  } catch (const json::exception& e) {
    f.read_error = std::string("unparsable output: ") + e.what();
  }
  return f;
}

const char* to_string(Gap gap) {
  switch (gap) {
    case Gap::kSysctl: return "sysctl";
    case Gap::kVip: return "vip";
    case Gap::kRoute: return "route";
    case Gap::kMisplaced: return "misplaced";
    case Gap::kNftArp: return "nft-arp";
    case Gap::kNftIp6: return "nft-ip6";
    case Gap::kNftNat: return "nft-nat";
    case Gap::kRedirectConf: return "redirect-configured";
    case Gap::kUnsuppressed: return "unsuppressed";
  }
  return "?";
}

bool Verdict::has(Gap g) const {
  return std::any_of(gaps.begin(), gaps.end(), [&](const auto& gap) { return gap.first == g; });
}

Verdict evaluate(const KernelFacts& facts, const ExpectedPolicy& policy, const Universe& universe) {
  Verdict v;
  const NftView nft(facts.nft);
  // Sysctls: the effective value on the ARP-facing interface is max(all, eth0).
  if (const int e = effective(facts, "arp_ignore"); e != kWantArpIgnore) {
    v.gaps.emplace_back(Gap::kSysctl, "effective arp_ignore on eth0 is " + std::to_string(e) + ", want 1");
  }
  if (const int e = effective(facts, "arp_announce"); e != kWantArpAnnounce) {
    v.gaps.emplace_back(Gap::kSysctl, "effective arp_announce on eth0 is " + std::to_string(e) + ", want 2");
  }
  // Host VIPs on lo, and nowhere else.
  auto host_vips = [&](const std::vector<std::string>& vips, int length) {
    for (const std::string& vip : vips) {
      bool on_lo = false;
      for (const AddrFact* a : configured(facts, vip)) {
        if (a->prefixlen != length) continue;
        if (a->device == "lo") {
          on_lo = true;
          if (length == 128 && !a->deprecated) v.gaps.emplace_back(Gap::kVip, "vip " + vip + " on lo not deprecated");
          if (a->tentative) v.gaps.emplace_back(Gap::kVip, "vip " + vip + " on lo tentative");
        } else {
          v.gaps.emplace_back(Gap::kMisplaced, "vip " + vip + " also on " + a->device);
        }
      }
      if (!on_lo) v.gaps.emplace_back(Gap::kVip, "vip " + vip + "/" + std::to_string(length) + " missing on lo");
    }
  };
  host_vips(policy.v4, 32);
  host_vips(policy.v6, 128);
  for (const std::string& route : policy.routes) {
    if (!local_route(facts, route)) v.gaps.emplace_back(Gap::kRoute, "local route " + route + " dev lo missing");
  }
  if (!policy.redirect.empty()) {
    for (const AddrFact* a : configured(facts, policy.redirect)) {
      v.gaps.emplace_back(Gap::kRedirectConf, "redirected vip " + policy.redirect + " configured on " + a->device);
    }
    // A local route covering it (other than the one an address brings, reported above).
    const auto vip = Addr::parse(policy.redirect);
    for (const RouteFact& r : facts.local_routes) {
      const auto range = Range::parse(r.dst);
      if (r.type == "local" && range && range->contains(*vip) && configured(facts, policy.redirect).empty()) {
        v.gaps.emplace_back(Gap::kRedirectConf, "redirected vip " + policy.redirect + " local through " + r.dst);
      }
    }
    nat_gaps(nft, policy, v);
  }
  // The suppression tables, with the policy's VIPs in their sets.
  const ArpTable arp = arp_table(nft, &v.gaps);
  for (const auto* list : {&policy.v4, &policy.routes}) {
    for (const std::string& vip : *list) {
      if (!union_covers(arp.elements, *Range::parse(vip))) {
        v.gaps.emplace_back(Gap::kNftArp, "arp arpguard @vips lacks " + vip);
      }
    }
  }
  const ArpTable ip6 = ip6_table(nft, &v.gaps);
  for (const std::string& vip : policy.v6) {
    if (!union_covers(ip6.elements, *Range::parse(vip))) {
      v.gaps.emplace_back(Gap::kNftIp6, "ip6 arpguard @vips lacks " + vip);
    }
  }
  // I1 over every policy's VIPs: configured anywhere means suppressed.
  for (const auto* list : {&universe.v4, &universe.redirects}) {
    for (const std::string& vip : *list) {
      for (const AddrFact* a : configured(facts, vip)) {
        if (!union_covers(arp.elements, *Range::parse(vip))) {
          v.gaps.emplace_back(Gap::kUnsuppressed, vip + " configured on " + a->device + " but not in arp arpguard @vips");
        }
      }
    }
  }
  for (const std::string& route : universe.routes) {
    if (local_route(facts, route) && !union_covers(arp.elements, *Range::parse(route))) {
      v.gaps.emplace_back(Gap::kUnsuppressed, "local route " + route + " but not in arp arpguard @vips");
    }
  }
  for (const std::string& vip : universe.v6) {
    for (const AddrFact* a : configured(facts, vip)) {
      if (!union_covers(ip6.elements, *Range::parse(vip))) {
        v.gaps.emplace_back(Gap::kUnsuppressed, vip + " configured on " + a->device + " but not in ip6 arpguard @vips");
      }
    }
  }
  v.met = v.gaps.empty();
  return v;
}

Layers layers(const KernelFacts& facts, const Universe& universe) {
  Layers l;
  for (const auto* list : {&universe.v4, &universe.v6, &universe.redirects}) {
    for (const std::string& vip : *list) {
      for (const AddrFact* a : configured(facts, vip)) l.misplaced |= a->device != "lo";
    }
  }
  l.sysctl_ok = effective(facts, "arp_ignore") == kWantArpIgnore && effective(facts, "arp_announce") == kWantArpAnnounce &&
                !l.misplaced;
  const NftView nft(facts.nft);
  const ArpTable arp = arp_table(nft, nullptr);
  const ArpTable ip6 = ip6_table(nft, nullptr);
  bool covered = arp.rules_ok && ip6.rules_ok;
  for (const auto* list : {&universe.v4, &universe.redirects}) {
    for (const std::string& vip : *list) {
      if (!configured(facts, vip).empty()) covered &= union_covers(arp.elements, *Range::parse(vip));
    }
  }
  for (const std::string& route : universe.routes) {
    if (local_route(facts, route)) covered &= union_covers(arp.elements, *Range::parse(route));
  }
  for (const std::string& vip : universe.v6) {
    if (!configured(facts, vip).empty()) covered &= union_covers(ip6.elements, *Range::parse(vip));
  }
  l.nft_ok = covered;
  return l;
}

std::string nft_element_text(const json& element) {
  if (element.is_string()) return element.get<std::string>();
  if (element.is_number_integer()) return std::to_string(element.get<long long>());
  if (!element.is_object()) return element.dump();
  if (element.contains("elem")) return nft_element_text(element["elem"].value("val", json()));
  if (element.contains("prefix")) {
    return element["prefix"].value("addr", "") + "/" + std::to_string(element["prefix"].value("len", 0));
  }
  if (element.contains("range") && element["range"].is_array() && element["range"].size() == 2) {
    return nft_element_text(element["range"][0]) + "-" + nft_element_text(element["range"][1]);
  }
  if (element.contains("concat")) {
    std::string out;
    for (const json& part : element["concat"]) out += (out.empty() ? "" : " . ") + nft_element_text(part);
    return out;
  }
  return element.dump();
}

}  // namespace arpguard::chaos
