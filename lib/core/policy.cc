#include "core/policy.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <toml++/toml.h>

#include "core/policy_bounds.h"

namespace arpguard {

std::string Diagnostic::str() const {
  return fmt::format("{}:{}:{}: {}", file, where.line, where.column, message);
}

std::string_view to_string(Method method) {
  switch (method) {
    case Method::kSysctl: return "sysctl";
    case Method::kNftables: return "nftables";
    case Method::kBoth: return "both";
    case Method::kRedirect: return "redirect";
  }
  return "?";
}

std::string_view to_string(OnStop on_stop) { return on_stop == OnStop::kKeep ? "keep" : "remove"; }

std::string_view to_string(VipKind kind) { return kind == VipKind::kAddress ? "address" : "route"; }

std::string PortMapping::str() const {
  std::string out = fmt::format("{}:{}", protocol == kProtoTcp ? "tcp" : "udp", first);
  if (last != first) out += fmt::format("-{}", last);
  if (to) out += fmt::format("->{}", *to);
  return out;
}

std::string Endpoint::str() const {
  return address.family == Family::kV4 ? fmt::format("{}:{}", address.str(), port)
                                       : fmt::format("[{}]:{}", address.str(), port);
}

const VipPolicy* Policy::vip_containing(const IpAddress& address) const {
  // vips is sorted and non-overlapping: the candidate is the last one starting at or before it.
  auto it = std::upper_bound(vips.begin(), vips.end(), address,
                             [](const IpAddress& a, const VipPolicy& v) { return a < v.prefix.first(); });
  if (it == vips.begin()) return nullptr;
  --it;
  return it->prefix.contains(address) ? &*it : nullptr;
}

namespace {

constexpr size_t kMaxInterfaceName = 15;  // IFNAMSIZ - 1
constexpr size_t kMaxSocketPath = 107;    // sizeof(sockaddr_un::sun_path) - 1
constexpr size_t kMaxPortsPerVip = 64;

std::string_view type_name(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    default: return "a date or time";
  }
}

bool all_digits(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

/// "1" to "65535", no leading zeros.
std::optional<uint16_t> parse_port(std::string_view text) {
  if (!all_digits(text) || text.size() > 5 || text[0] == '0') return std::nullopt;
  const int port = std::stoi(std::string(text));
  if (port < 1 || port > 65535) return std::nullopt;
  return static_cast<uint16_t>(port);
}

/// Ranges no VIP may touch, and why.
struct Unusable {
  const char* prefix;
  const char* why;
};
constexpr Unusable kUnusable[] = {
    {"0.0.0.0/8", "in 0.0.0.0/8 (this network)"},
    {"127.0.0.0/8", "in the loopback range 127.0.0.0/8"},
    {"169.254.0.0/16", "in the link-local range 169.254.0.0/16"},
    {"224.0.0.0/4", "in the multicast range 224.0.0.0/4"},
    {"240.0.0.0/4", "in the reserved range 240.0.0.0/4"},
    {"::/128", "the unspecified address"},
    {"::1/128", "the loopback address"},
    {"::ffff:0:0/96", "in the IPv4-mapped range ::ffff:0:0/96"},
    {"fe80::/10", "in the link-local range fe80::/10"},
    {"ff00::/8", "in the multicast range ff00::/8"},
};

/// Why a prefix cannot be a VIP (it holds an address no VIP may be); nullptr when it can.
const char* unusable_range(const IpPrefix& prefix) {
  for (const Unusable& u : kUnusable) {
    if (IpPrefix::parse(u.prefix)->overlaps(prefix)) return u.why;
  }
  return nullptr;
}

/// Why an address cannot be a VIP; nullptr when it can.
const char* unusable_vip_address(const IpAddress& ip) {
  if (ip.is_unspecified()) return "the unspecified address";
  if (ip.is_loopback()) return ip.family == Family::kV4 ? "in the loopback range 127.0.0.0/8" : "the loopback address";
  if (ip.is_multicast()) return "a multicast address";
  if (ip.is_link_local()) return "a link-local address";
  if (ip.family == Family::kV4 && ip.value == 0xffffffffu) return "the broadcast address";
  if (ip.is_reserved()) return "in the reserved range 240.0.0.0/4";
  if (ip.is_v4_mapped()) return "an IPv4-mapped address (write the IPv4 address)";
  return nullptr;
}

// Walks the parsed document, filling a Policy and collecting located errors.
class PolicyReader {
 public:
  explicit PolicyReader(std::string file) : file_(std::move(file)) { policy_.file = file_; }

  PolicyResult read(const toml::table& root) {
    const toml::node* vips = nullptr;
    for (auto&& [key, node] : root) {
      const std::string name(key.str());
      if (name == "agent") {
        if (auto* table = expect_table(node, name)) read_agent(*table);
      } else if (name == "arp") {
        if (auto* table = expect_table(node, name)) read_arp(*table);
      } else if (name == "vip") {
        vips = &node;
      } else if (name == "readiness") {
        if (auto* table = expect_table(node, name)) read_readiness(*table);
      } else if (name == "watch") {
        if (auto* table = expect_table(node, name)) read_watch(*table);
      } else {
        error(key.source(), fmt::format("unknown key '{}' (expected agent, arp, vip, readiness or watch)", name));
      }
    }
    // VIPs last: their defaults (method) come from [arp], wherever it is in the file.
    if (vips) read_vips(*vips);
    check_overlaps();
    check_real_ip();
    check_listeners();
    if (source_routing_where_ && !policy_.arp.arp_filter) {
      warning_at(*source_routing_where_,
                 "arp.source_routing: without arp.arp_filter = true the routing tables change nothing ARP does");
    }

    PolicyResult result;
    auto by_place = [](const Diagnostic& a, const Diagnostic& b) {
      return std::tie(a.where.line, a.where.column) < std::tie(b.where.line, b.where.column);
    };
    std::stable_sort(errors_.begin(), errors_.end(), by_place);
    std::stable_sort(warnings_.begin(), warnings_.end(), by_place);
    result.errors = std::move(errors_);
    result.warnings = std::move(warnings_);
    if (result.errors.empty()) result.policy = std::move(policy_);
    return result;
  }

 private:
  SourceLocation at(const toml::source_region& region) const {
    return {static_cast<int>(region.begin.line), static_cast<int>(region.begin.column)};
  }
  void error(const toml::source_region& region, std::string message) {
    errors_.push_back({file_, at(region), std::move(message)});
  }
  void error_at(SourceLocation where, std::string message) { errors_.push_back({file_, where, std::move(message)}); }
  void warning_at(SourceLocation where, std::string message) {
    warnings_.push_back({file_, where, std::move(message)});
  }
  void wrong_type(const toml::node& node, const std::string& path, std::string_view expected) {
    error(node.source(), fmt::format("{}: expected {}, found {}", path, expected, type_name(node)));
  }

  const toml::table* expect_table(const toml::node& node, const std::string& path) {
    if (auto* table = node.as_table()) return table;
    wrong_type(node, path, "a table");
    return nullptr;
  }
  std::optional<std::string> string_of(const toml::node& node, const std::string& path) {
    if (auto* value = node.as_string()) return value->get();
    wrong_type(node, path, "a string");
    return std::nullopt;
  }
  std::optional<int64_t> integer_of(const toml::node& node, const std::string& path) {
    if (auto* value = node.as_integer()) return value->get();
    wrong_type(node, path, "an integer");
    return std::nullopt;
  }
  std::optional<int> integer_in(const toml::node& node, const std::string& path, int low, int high) {
    auto value = integer_of(node, path);
    if (!value) return std::nullopt;
    if (*value < low || *value > high) {
      error(node.source(), fmt::format("{}: {} is out of range ({} to {})", path, *value, low, high));
      return std::nullopt;
    }
    return static_cast<int>(*value);
  }
  std::optional<bool> boolean_of(const toml::node& node, const std::string& path) {
    if (auto* value = node.as_boolean()) return value->get();
    wrong_type(node, path, "a boolean");
    return std::nullopt;
  }
  // An array of strings; each element paired with its node for located errors.
  std::vector<std::pair<std::string, const toml::node*>> strings_of(const toml::node& node,
                                                                      const std::string& path) {
    std::vector<std::pair<std::string, const toml::node*>> out;
    auto* array = node.as_array();
    if (!array) {
      wrong_type(node, path, "an array of strings");
      return out;
    }
    for (const toml::node& element : *array) {
      if (auto* s = element.as_string()) {
        out.emplace_back(s->get(), &element);
      } else {
        wrong_type(element, path + "[]", "a string");
      }
    }
    return out;
  }

  bool check_interface_name(const std::string& name, const toml::node& node, const std::string& path) {
    if (name.empty()) {
      error(node.source(), path + ": interface name is empty");
    } else if (name.size() > kMaxInterfaceName) {
      error(node.source(), fmt::format("{}: interface name '{}' is longer than {} characters", path, name,
                                       kMaxInterfaceName));
    } else if (name == "." || name == ".." ||
               std::any_of(name.begin(), name.end(), [](char c) { return c <= ' ' || c == '/' || c == ':' || c > '~'; })) {
      error(node.source(), fmt::format("{}: '{}' is not a valid interface name", path, name));
    } else {
      return true;
    }
    return false;
  }

  std::optional<std::string> absolute_path(const toml::node& node, const std::string& path) {
    auto value = string_of(node, path);
    if (!value) return std::nullopt;
    if (value->empty() || (*value)[0] != '/') {
      error(node.source(), fmt::format("{}: '{}' is not an absolute path", path, *value));
      return std::nullopt;
    }
    if (value->find('\0') != std::string::npos || value->find("/../") != std::string::npos ||
        value->ends_with("/..")) {
      error(node.source(), fmt::format("{}: '{}' is not a plain absolute path", path, *value));
      return std::nullopt;
    }
    return value;
  }

  void read_agent(const toml::table& table) {
    AgentPolicy& agent = policy_.agent;
    for (auto&& [key, node] : table) {
      const std::string name(key.str());
      const std::string path = "agent." + name;
      if (name == "control_socket") {
        if (auto value = absolute_path(node, path)) {
          if (value->size() > kMaxSocketPath) {
            error(node.source(), fmt::format("{}: longer than {} characters (a unix socket path limit)",
                                             path, kMaxSocketPath));
          } else {
            agent.control_socket = *value;
          }
        }
      } else if (name == "sysctl_poll_ms") {
        if (auto value = integer_in(node, path, 50, 60000)) agent.sysctl_poll_ms = *value;
      } else if (name == "on_stop") {
        if (auto value = string_of(node, path)) {
          if (*value == "keep") {
            agent.on_stop = OnStop::kKeep;
          } else if (*value == "remove") {
            agent.on_stop = OnStop::kRemove;
          } else {
            error(node.source(), fmt::format("{}: '{}' is not one of \"keep\", \"remove\"", path, *value));
          }
        }
      } else if (name == "state_dir") {
        if (auto value = absolute_path(node, path)) agent.state_dir = *value;
      } else if (name == "contested_repairs") {
        if (auto value = integer_in(node, path, 1, 1000000)) agent.contested_repairs = *value;
      } else if (name == "check_interval_ms") {
        if (auto value = integer_in(node, path, 100, 600000)) agent.check_interval_ms = *value;
      } else if (name == "contested_window_ms") {
        if (auto value = integer_in(node, path, 100, 3600000)) agent.contested_window_ms = *value;
      } else if (name == "audit_interval_ms") {
        if (auto value = integer_of(node, path)) {
          if (*value != 0 && (*value < 1000 || *value > 86400000)) {
            error(node.source(), fmt::format("{}: {} is out of range (0 for never, or 1000 to 86400000)", path, *value));
          } else {
            agent.audit_interval_ms = static_cast<int>(*value);
          }
        }
      } else if (name == "event_buffer_kb") {
        if (auto value = integer_in(node, path, 64, 1048576)) agent.event_buffer_kb = *value;
      } else if (name == "own_nft_table") {
        if (auto value = boolean_of(node, path)) agent.own_nft_table = *value;
      } else {
        error(key.source(), fmt::format("unknown key '{}'", path));
      }
    }
  }

  std::optional<Method> method_of(const toml::node& node, const std::string& path) {
    auto value = string_of(node, path);
    if (!value) return std::nullopt;
    for (Method m : {Method::kSysctl, Method::kNftables, Method::kBoth, Method::kRedirect}) {
      if (*value == to_string(m)) return m;
    }
    error(node.source(),
          fmt::format("{}: '{}' is not one of \"sysctl\", \"nftables\", \"both\", \"redirect\"", path, *value));
    return std::nullopt;
  }

  void read_arp(const toml::table& table) {
    ArpPolicy& arp = policy_.arp;
    for (auto&& [key, node] : table) {
      const std::string name(key.str());
      const std::string path = "arp." + name;
      if (name == "method") {
        if (auto method = method_of(node, path)) arp.method = *method;
      } else if (name == "interfaces") {
        read_interfaces(node, path);
      } else if (name == "arp_ignore") {
        if (auto value = integer_of(node, path)) {
          if (*value == 1 || *value == 2 || *value == 3 || *value == 8) {
            arp.arp_ignore = static_cast<int>(*value);
          } else if (*value == 0 || (*value >= 4 && *value <= 7)) {
            error(node.source(),
                  fmt::format("{}: {} would not protect VIPs (allowed: 1, 2, 3, 8)", path, *value));
          } else {
            error(node.source(), fmt::format("{}: {} is not a valid value (allowed: 1, 2, 3, 8)", path, *value));
          }
        }
      } else if (name == "arp_announce") {
        if (auto value = integer_of(node, path)) {
          if (*value == 1 || *value == 2) {
            arp.arp_announce = static_cast<int>(*value);
          } else if (*value == 0) {
            error(node.source(), fmt::format("{}: 0 would not protect VIPs (allowed: 1, 2)", path));
          } else {
            error(node.source(), fmt::format("{}: {} is not a valid value (allowed: 1, 2)", path, *value));
          }
        }
      } else if (name == "arp_filter") {
        if (auto value = boolean_of(node, path)) arp.arp_filter = *value;
      } else if (name == "source_routing") {
        if (auto value = boolean_of(node, path)) arp.source_routing = *value;
        if (arp.source_routing) source_routing_where_ = at(node.source());
      } else if (name == "source_routing_table") {
        // Table ids 253-255 are the kernel's default, main and local; ifindexes are added to the base.
        if (auto value = integer_in(node, path, 256, 1000000000)) arp.source_routing_table = static_cast<uint32_t>(*value);
      } else if (name == "source_routing_priority") {
        // Below the main table's rule (32766), above the local one (0).
        if (auto value = integer_in(node, path, 1, 32765)) arp.source_routing_priority = static_cast<uint32_t>(*value);
      } else if (name == "real_ip") {
        read_real_ip(node, path);
      } else {
        error(key.source(), fmt::format("unknown key '{}'", path));
      }
    }
  }

  void read_interfaces(const toml::node& node, const std::string& path) {
    auto names = strings_of(node, path);
    if (node.is_array() && node.as_array()->empty()) {
      error(node.source(), path + ": must name at least one interface (\"*\" for all but lo)");
      return;
    }
    std::set<std::string> seen;
    std::vector<std::string> interfaces;
    for (auto& [name, element] : names) {
      // Globs may hold * ? [ ]; check the name rules on the rest.
      check_interface_name(name, *element, path);
      if (name == "lo") {
        error(element->source(), path + ": lo is not ARP-facing; VIPs live there");
      } else if (!seen.insert(name).second) {
        error(element->source(), fmt::format("{}: '{}' is listed twice", path, name));
      }
      interfaces.push_back(name);
    }
    if (seen.count("*") && interfaces.size() > 1) {
      error(node.source(), path + ": \"*\" already means every interface but lo; list it alone");
    }
    policy_.arp.interfaces = std::move(interfaces);
  }

  void read_real_ip(const toml::node& node, const std::string& path) {
    auto* table = expect_table(node, path);
    if (!table) return;
    for (auto&& [key, value_node] : *table) {
      const std::string name(key.str());
      const std::string item = path + "." + name;
      check_interface_name(name, value_node, item);
      auto text = string_of(value_node, item);
      if (!text) continue;
      auto ip = IpAddress::parse(*text);
      if (!ip || ip->family != Family::kV4 || ip->is_unspecified() || ip->is_multicast() || ip->is_loopback() ||
          ip->is_reserved() || ip->value == 0xffffffffu) {
        error(value_node.source(), fmt::format("{}: '{}' is not a usable IPv4 address", item, *text));
        continue;
      }
      policy_.arp.real_ip[name] = *ip;
      policy_.arp.real_ip_where[name] = at(value_node.source());
    }
  }

  // A real_ip inside a VIP would make the rewrite rule announce that VIP.
  void check_real_ip() {
    for (const auto& [name, ip] : policy_.arp.real_ip) {
      if (const VipPolicy* vip = policy_.vip_containing(ip)) {
        error_at(policy_.arp.real_ip_where.at(name),
                 fmt::format("arp.real_ip.{}: {} is in VIP {} (line {}): the sender rewrite would announce it",
                             name, ip.str(), vip->prefix.str(), vip->where.line));
      }
    }
  }

  // Two listeners on one address and port: the second bind would fail at start.
  void check_listeners() {
    std::stable_sort(listeners_.begin(), listeners_.end(), [](const auto& a, const auto& b) {
      return std::tie(a.second.line, a.second.column) < std::tie(b.second.line, b.second.column);
    });
    std::vector<std::pair<const Endpoint*, SourceLocation>> seen;
    for (const auto& [endpoint, where] : listeners_) {
      for (const auto& [other, other_where] : seen) {
        const bool clash = other->port == endpoint.port && other->address.family == endpoint.address.family &&
                           (other->address == endpoint.address || other->address.is_unspecified() ||
                            endpoint.address.is_unspecified());
        if (clash) {
          error_at(where, fmt::format("readiness: {} clashes with {} (line {}): one address and port, one listener",
                                      endpoint.str(), other->str(), other_where.line));
          break;
        }
      }
      seen.emplace_back(&endpoint, where);
    }
  }

  void read_vips(const toml::node& node) {
    auto* array = node.as_array();
    if (!array || !array->is_array_of_tables()) {
      error(node.source(), "vip: expected an array of tables ([[vip]])");
      return;
    }
    policy_.vips.reserve(array->size());
    for (const toml::node& element : *array) read_vip(*element.as_table());
  }

  // The VIP's keys, gathered before they are checked against each other.
  struct VipKeys {
    const toml::node* address = nullptr;
    const toml::node* device = nullptr;
    const toml::node* as = nullptr;
    const toml::node* method = nullptr;
    const toml::node* ports = nullptr;
    const toml::node* check = nullptr;
  };

  void read_vip(const toml::table& table) {
    VipKeys keys;
    for (auto&& [key, node] : table) {
      const std::string name(key.str());
      const toml::node** slot = name == "address"  ? &keys.address
                                : name == "device" ? &keys.device
                                : name == "as"     ? &keys.as
                                : name == "method" ? &keys.method
                                : name == "ports"  ? &keys.ports
                                : name == "check"  ? &keys.check
                                                   : nullptr;
      if (slot) {
        *slot = &node;
      } else {
        error(key.source(), fmt::format("unknown key 'vip.{}'", name));
      }
    }
    if (!keys.address) {
      error(table.source(), "vip: missing required key 'address'");
      return;
    }
    VipPolicy vip;
    vip.method = policy_.arp.method;
    bool ok = read_vip_address(*keys.address, vip);
    if (!ok) {
      // Its other keys are checked on their own; checks against the address would name a VIP that is not.
      if (keys.method) method_of(*keys.method, "vip.method");
      if (keys.device) {
        if (auto value = string_of(*keys.device, "vip.device")) check_interface_name(*value, *keys.device, "vip.device");
      }
      return;
    }
    if (keys.method) {
      if (auto method = method_of(*keys.method, "vip.method")) {
        vip.method = *method;
      } else {
        ok = false;
      }
    }
    if (keys.device) {
      if (auto value = string_of(*keys.device, "vip.device")) {
        ok &= check_interface_name(*value, *keys.device, "vip.device");
        vip.device = *value;
      } else {
        ok = false;
      }
    }
    ok &= read_vip_kind(keys, vip);
    ok &= read_vip_ports(keys, vip);
    if (keys.check) ok &= read_vip_check(*keys.check, vip);
    if (ok) policy_.vips.push_back(std::move(vip));
  }

  bool read_vip_address(const toml::node& node, VipPolicy& vip) {
    auto text = string_of(node, "vip.address");
    if (!text) return false;
    auto prefix = IpPrefix::parse(*text);
    if (!prefix) {
      error(node.source(), fmt::format("vip.address: '{}' is not an IP address or prefix", *text));
      return false;
    }
    if (!prefix->is_canonical()) {
      const IpPrefix canonical{prefix->first(), prefix->length};
      error(node.source(), fmt::format("vip.address: '{}' has host bits set (the prefix is {})", *text,
                                       canonical.str()));
      return false;
    }
    if (std::optional<std::string> why = unusable_vip(*prefix)) {
      error(node.source(), fmt::format("vip.address: {}", *why));
      return false;
    }
    vip.prefix = *prefix;
    vip.kind = prefix->is_host() ? VipKind::kAddress : VipKind::kRoute;
    vip.where = at(node.source());
    return true;
  }

  bool read_vip_kind(const VipKeys& keys, VipPolicy& vip) {
    if (keys.as) {
      auto value = string_of(*keys.as, "vip.as");
      if (!value) return false;
      if (*value == "route") {
        vip.kind = VipKind::kRoute;
      } else if (*value == "address") {
        if (vip.kind == VipKind::kRoute) {
          error(keys.as->source(), fmt::format("vip.as: a prefix VIP ({}) is a local route; as = \"address\" "
                                                "takes one address (/32 or /128)", vip.prefix.str()));
          return false;
        }
      } else {
        error(keys.as->source(), fmt::format("vip.as: '{}' is not one of \"address\", \"route\"", *value));
        return false;
      }
    }
    if (vip.method == Method::kRedirect) {
      // A redirected VIP is configured nowhere: where and how to configure it makes no sense.
      for (const toml::node* node : {keys.as, keys.device}) {
        if (!node) continue;
        error(node->source(), fmt::format("vip.{}: {} uses method \"redirect\", which never configures the VIP "
                                          "(remove this key, or choose another method)",
                                          node == keys.as ? "as" : "device", vip.prefix.str()));
        return false;
      }
      return true;
    }
    if (vip.kind == VipKind::kRoute && vip.device != "lo") {
      error(keys.device->source(), fmt::format("vip.device: a route VIP ({}) is a local route on lo, not on {}",
                                               vip.prefix.str(), vip.device));
      return false;
    }
    if (vip.device != "lo" && vip.prefix.family() == Family::kV6) {
      // Sent from an address of the outgoing device, a neighbour solicitation
      // carries its source and this host's MAC: every neighbour asked learns it.
      error(keys.device->source(),
            fmt::format("vip.device: an IPv6 VIP on {} is revealed by the neighbour solicitations this host sends "
                        "from it; IPv6 VIPs go on lo",
                        vip.device));
      return false;
    }
    if (vip.device != "lo" && vip.method == Method::kSysctl) {
      // arp_ignore answers for an address on the interface a request comes in on,
      // and NDP answers for any address on the receiving device.
      error(keys.device->source(),
            fmt::format("vip.device: no layer of method \"sysctl\" hides a VIP on {}: the kernel answers ARP "
                        "and NDP for addresses on the interface asked; put the VIP on lo, or use method "
                        "\"nftables\" or \"both\"",
                        vip.device));
      return false;
    }
    if (vip.device != "lo" && vip.method == Method::kBoth) {
      warning_at(at(keys.device->source()),
                 fmt::format("vip.device: {} on {} is protected by the nftables layer alone (sysctls do not hide "
                             "an address on the interface asked); lo is safer",
                             vip.prefix.str(), vip.device));
    }
    return true;
  }

  bool read_vip_ports(const VipKeys& keys, VipPolicy& vip) {
    if (!keys.ports) return true;
    if (vip.method != Method::kRedirect) {
      error(keys.ports->source(), fmt::format("vip.ports: only a VIP with method \"redirect\" takes ports ({} uses "
                                              "\"{}\")", vip.prefix.str(), to_string(vip.method)));
      return false;
    }
    auto entries = strings_of(*keys.ports, "vip.ports");
    if (keys.ports->is_array() && keys.ports->as_array()->empty()) {
      error(keys.ports->source(), "vip.ports: empty (leave it out to redirect every TCP and UDP port)");
      return false;
    }
    if (entries.size() > kMaxPortsPerVip) {
      error(keys.ports->source(), fmt::format("vip.ports: {} entries (at most {})", entries.size(), kMaxPortsPerVip));
      return false;
    }
    bool ok = true;
    for (auto& [text, element] : entries) {
      auto mapping = parse_port_mapping(text, *element);
      if (!mapping) {
        ok = false;
        continue;
      }
      for (const PortMapping& other : vip.ports) {
        if (other.protocol == mapping->protocol && other.first <= mapping->last && mapping->first <= other.last) {
          error(element->source(), fmt::format("vip.ports: '{}' overlaps '{}'", text, other.str()));
          ok = false;
        }
      }
      vip.ports.push_back(*mapping);
    }
    std::sort(vip.ports.begin(), vip.ports.end());
    return ok;
  }

  // "tcp:80", "udp:1000-2000", "tcp:8080->18080", "tcp:1000-1010->3000".
  std::optional<PortMapping> parse_port_mapping(const std::string& text, const toml::node& node) {
    auto bad = [&](const std::string& why) {
      error(node.source(), fmt::format("vip.ports: '{}' {}", text, why));
      return std::nullopt;
    };
    const size_t colon = text.find(':');
    if (colon == std::string::npos) return bad("is not PROTOCOL:PORT (e.g. \"tcp:80\", \"udp:53\", \"tcp:80->8080\")");
    PortMapping mapping;
    const std::string protocol = text.substr(0, colon);
    if (protocol == "tcp") {
      mapping.protocol = kProtoTcp;
    } else if (protocol == "udp") {
      mapping.protocol = kProtoUdp;
    } else {
      return bad(fmt::format("has protocol '{}' (tcp or udp)", protocol));
    }
    std::string_view rest = std::string_view(text).substr(colon + 1);
    if (const size_t arrow = rest.find("->"); arrow != std::string_view::npos) {
      auto to = parse_port(rest.substr(arrow + 2));
      if (!to) return bad("has a target port that is not 1 to 65535");
      mapping.to = *to;
      rest = rest.substr(0, arrow);
    }
    const size_t dash = rest.find('-');
    auto first = parse_port(rest.substr(0, dash));
    auto last = dash == std::string_view::npos ? first : parse_port(rest.substr(dash + 1));
    if (!first || !last) return bad("has a port that is not 1 to 65535");
    if (*last < *first) return bad("is a range that ends before it starts");
    mapping.first = *first;
    mapping.last = *last;
    return mapping;
  }

  bool read_vip_check(const toml::node& node, VipPolicy& vip) {
    auto value = string_of(node, "vip.check");
    if (!value) return false;
    auto port = value->rfind("tcp:", 0) == 0 ? parse_port(std::string_view(*value).substr(4)) : std::nullopt;
    if (!port) {
      error(node.source(), fmt::format("vip.check: '{}' is not tcp:PORT (port 1 to 65535)", *value));
      return false;
    }
    vip.check_port = *port;
    return true;
  }

  // Duplicates and overlaps, in O(n log n): sorted by first address, a VIP can
  // only overlap the one reaching furthest among those before it.
  void check_overlaps() {
    std::vector<VipPolicy>& vips = policy_.vips;
    auto by_first = [](const VipPolicy& a, const VipPolicy& b) {
      return std::tie(a.prefix.address.family, a.prefix.address.value, b.prefix.length) <
             std::tie(b.prefix.address.family, b.prefix.address.value, a.prefix.length);
    };
    // Large policies are mostly written in order: moving 100,000 VIPs costs more than looking.
    if (!std::is_sorted(vips.begin(), vips.end(), by_first)) std::stable_sort(vips.begin(), vips.end(), by_first);
    size_t widest = 0;
    for (size_t i = 1; i < vips.size(); ++i) {
      const VipPolicy& earlier = vips[widest];
      const VipPolicy& vip = vips[i];
      if (earlier.prefix.overlaps(vip.prefix)) {
        const bool same = earlier.prefix == vip.prefix;
        const VipPolicy& first = earlier.where.line <= vip.where.line ? earlier : vip;
        const VipPolicy& second = &first == &earlier ? vip : earlier;
        error_at(second.where, same ? fmt::format("vip.address: duplicate VIP {} (first at line {})",
                                                  vip.prefix.is_host() ? vip.prefix.address.str() : vip.prefix.str(),
                                                  first.where.line)
                                    : fmt::format("vip.address: {} overlaps {} (line {})", second.prefix.str(),
                                                  first.prefix.str(), first.where.line));
      }
      if (vip.prefix.family() != earlier.prefix.family() || vip.prefix.last() > earlier.prefix.last()) widest = i;
    }
  }

  void read_readiness(const toml::table& table) {
    ReadinessPolicy& readiness = policy_.readiness;
    for (auto&& [key, node] : table) {
      const std::string name(key.str());
      const std::string path = "readiness." + name;
      if (name == "listen") {
        read_endpoints(node, path, readiness.listen);
      } else if (name == "agent_check_listen") {
        read_endpoints(node, path, readiness.agent_check_listen);
      } else if (name == "director_macs") {
        read_macs(node, path, readiness.director_macs);
      } else if (name == "metrics_vip_limit") {
        if (auto value = integer_in(node, path, 0, 1000000)) readiness.metrics_vip_limit = *value;
      } else if (name == "conntrack_warn_percent") {
        if (auto value = integer_in(node, path, 1, 100)) readiness.conntrack_warn_percent = *value;
      } else {
        error(key.source(), fmt::format("unknown key '{}'", path));
      }
    }
  }

  std::optional<Endpoint> parse_endpoint(const std::string& text) {
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos) return std::nullopt;
    std::string_view host = std::string_view(text).substr(0, colon);
    const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
    if (bracketed) host = host.substr(1, host.size() - 2);
    auto address = IpAddress::parse(host);
    auto port = parse_port(std::string_view(text).substr(colon + 1));
    if (!address || !port || (address->family == Family::kV6) != bracketed) return std::nullopt;
    return Endpoint{*address, *port};
  }

  void read_endpoints(const toml::node& node, const std::string& path, std::vector<Endpoint>& out) {
    for (auto& [text, element] : strings_of(node, path)) {
      if (auto endpoint = parse_endpoint(text)) {
        out.push_back(*endpoint);
        listeners_.emplace_back(*endpoint, at(element->source()));
      } else {
        error(element->source(),
              fmt::format("{}: '{}' is not IPV4:PORT or [IPV6]:PORT (port 1 to 65535)", path, text));
      }
    }
  }

  void read_watch(const toml::table& table) {
    WatchPolicy& watch = policy_.watch;
    for (auto&& [key, node] : table) {
      const std::string name(key.str());
      const std::string path = "watch." + name;
      if (name == "enabled") {
        if (auto value = boolean_of(node, path)) watch.enabled = *value;
      } else if (name == "log_group") {
        if (auto value = integer_in(node, path, 1, 65535)) watch.log_group = static_cast<uint16_t>(*value);
      } else if (name == "probe_interval_s") {
        if (auto value = integer_in(node, path, 0, 86400)) watch.probe_interval_s = *value;
      } else {
        error(key.source(), fmt::format("unknown key '{}'", path));
      }
    }
  }

  void read_macs(const toml::node& node, const std::string& path, std::vector<std::string>& out) {
    for (auto& [text, element] : strings_of(node, path)) {
      std::string mac;
      bool ok = text.size() == 17;
      for (size_t i = 0; ok && i < text.size(); ++i) {
        const char c = text[i];
        if (i % 3 == 2) {
          ok = c == ':' || c == '-';
          mac += ':';
        } else {
          ok = std::isxdigit(static_cast<unsigned char>(c)) != 0;
          mac += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
      }
      if (!ok) {
        error(element->source(), fmt::format("{}: '{}' is not a MAC address (like 02:00:00:00:00:02)", path, text));
      } else {
        out.push_back(mac);
      }
    }
  }

  std::string file_;
  Policy policy_;
  std::vector<Diagnostic> errors_;
  std::vector<Diagnostic> warnings_;
  std::vector<std::pair<Endpoint, SourceLocation>> listeners_;  ///< HTTP and agent-check listeners
  std::optional<SourceLocation> source_routing_where_;
};

}  // namespace

std::optional<std::string> unusable_vip(const IpPrefix& prefix) {
  if (const char* why = unusable_vip_address(prefix.address)) {
    return fmt::format("{} is {}, not a usable VIP", prefix.address.str(), why);
  }
  // A prefix that reaches into an unusable range (0.0.0.0/1, fe00::/8) is as bad.
  if (!prefix.is_host()) {
    if (const char* why = unusable_range(prefix)) {
      return fmt::format("{} holds addresses {}, not usable as VIPs", prefix.str(), why);
    }
  }
  return std::nullopt;
}

PolicyResult parse_policy(std::string_view text, const std::string& file) {
  PolicyResult result;
  // Bounded before the parser sees it: toml++ recurses on nesting.
  if (auto violation = check_policy_bounds(text)) {
    result.errors.push_back({file, {violation->line, violation->column}, violation->message});
    return result;
  }
  toml::table root;
  try {
    root = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    const auto& begin = e.source().begin;
    result.errors.push_back(
        {file, {static_cast<int>(begin.line), static_cast<int>(begin.column)}, std::string(e.description())});
    return result;
  } catch (const std::exception& e) {
    result.errors.push_back({file, {0, 0}, fmt::format("cannot parse policy: {}", e.what())});
    return result;
  }
  return PolicyReader(file).read(root);
}

}  // namespace arpguard
