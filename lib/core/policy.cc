#include "core/policy.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <toml++/toml.h>

namespace arpguard {

std::string Diagnostic::str() const {
  return fmt::format("{}:{}:{}: {}", where.file, where.line, where.column, message);
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

namespace {

constexpr size_t kMaxInterfaceName = 15;  // IFNAMSIZ - 1
constexpr size_t kMaxSocketPath = 107;    // sizeof(sockaddr_un::sun_path) - 1

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

// Walks the parsed document, filling a Policy and collecting located errors.
class PolicyReader {
 public:
  explicit PolicyReader(std::string file) : file_(std::move(file)) { policy_.file = file_; }

  PolicyResult read(const toml::table& root) {
    for (auto&& [key, node] : root) {
      const std::string name(key.str());
      if (name == "agent") {
        if (auto* table = expect_table(node, name)) read_agent(*table);
      } else if (name == "arp") {
        if (auto* table = expect_table(node, name)) read_arp(*table);
      } else if (name == "vip") {
        read_vips(node);
      } else if (name == "readiness") {
        if (auto* table = expect_table(node, name)) read_readiness(*table);
      } else {
        error(key.source(), fmt::format("unknown key '{}' (expected agent, arp, vip or readiness)", name));
      }
    }
    PolicyResult result;
    std::stable_sort(errors_.begin(), errors_.end(), [](const Diagnostic& a, const Diagnostic& b) {
      return std::tie(a.where.line, a.where.column) < std::tie(b.where.line, b.where.column);
    });
    result.errors = std::move(errors_);
    if (result.errors.empty()) result.policy = std::move(policy_);
    return result;
  }

 private:
  SourceLocation at(const toml::source_region& region) const {
    return {file_, static_cast<int>(region.begin.line), static_cast<int>(region.begin.column)};
  }
  void error(const toml::source_region& region, std::string message) {
    errors_.push_back({at(region), std::move(message)});
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

  void check_interface_name(const std::string& name, const toml::node& node, const std::string& path) {
    if (name.empty()) {
      error(node.source(), path + ": interface name is empty");
    } else if (name.size() > kMaxInterfaceName) {
      error(node.source(), fmt::format("{}: interface name '{}' is longer than {} characters", path, name,
                                       kMaxInterfaceName));
    } else if (name.find_first_of("/ \t:") != std::string::npos) {
      error(node.source(), fmt::format("{}: '{}' is not a valid interface name", path, name));
    }
  }

  std::optional<std::string> absolute_path(const toml::node& node, const std::string& path) {
    auto value = string_of(node, path);
    if (!value) return std::nullopt;
    if (value->empty() || (*value)[0] != '/') {
      error(node.source(), fmt::format("{}: '{}' is not an absolute path", path, *value));
      return std::nullopt;
    }
    return value;
  }

  void read_agent(const toml::table& table) {
    for (auto&& [key, node] : table) {
      const std::string name(key.str());
      const std::string path = "agent." + name;
      if (name == "control_socket") {
        if (auto value = absolute_path(node, path)) {
          if (value->size() > kMaxSocketPath) {
            error(node.source(), fmt::format("{}: longer than {} characters (a unix socket path limit)",
                                             path, kMaxSocketPath));
          } else {
            policy_.agent.control_socket = *value;
          }
        }
      } else if (name == "sysctl_poll_ms") {
        if (auto value = integer_in(node, path, 50, 60000)) policy_.agent.sysctl_poll_ms = *value;
      } else if (name == "on_stop") {
        if (auto value = string_of(node, path)) {
          if (*value == "keep") {
            policy_.agent.on_stop = OnStop::kKeep;
          } else if (*value == "remove") {
            policy_.agent.on_stop = OnStop::kRemove;
          } else {
            error(node.source(), fmt::format("{}: '{}' is not one of \"keep\", \"remove\"", path, *value));
          }
        }
      } else if (name == "state_dir") {
        if (auto value = absolute_path(node, path)) policy_.agent.state_dir = *value;
      } else if (name == "contested_repairs") {
        if (auto value = integer_in(node, path, 1, 1000000)) policy_.agent.contested_repairs = *value;
      } else if (name == "check_interval_ms") {
        if (auto value = integer_in(node, path, 100, 600000)) policy_.agent.check_interval_ms = *value;
      } else if (name == "contested_window_ms") {
        if (auto value = integer_in(node, path, 100, 3600000)) policy_.agent.contested_window_ms = *value;
      } else if (name == "own_nft_table") {
        if (auto value = boolean_of(node, path)) policy_.agent.own_nft_table = *value;
      } else {
        error(key.source(), fmt::format("unknown key '{}'", path));
      }
    }
  }

  void read_arp(const toml::table& table) {
    for (auto&& [key, node] : table) {
      const std::string name(key.str());
      const std::string path = "arp." + name;
      if (name == "method") {
        read_method(node, path);
      } else if (name == "interfaces") {
        read_interfaces(node, path);
      } else if (name == "arp_ignore") {
        if (auto value = integer_of(node, path)) {
          if (*value == 1 || *value == 2 || *value == 3 || *value == 8) {
            policy_.arp.arp_ignore = static_cast<int>(*value);
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
            policy_.arp.arp_announce = static_cast<int>(*value);
          } else if (*value == 0) {
            error(node.source(), fmt::format("{}: 0 would not protect VIPs (allowed: 1, 2)", path));
          } else {
            error(node.source(), fmt::format("{}: {} is not a valid value (allowed: 1, 2)", path, *value));
          }
        }
      } else if (name == "arp_filter") {
        if (auto value = boolean_of(node, path)) policy_.arp.arp_filter = *value;
      } else if (name == "real_ip") {
        read_real_ip(node, path);
      } else {
        error(key.source(), fmt::format("unknown key '{}'", path));
      }
    }
  }

  void read_method(const toml::node& node, const std::string& path) {
    auto value = string_of(node, path);
    if (!value) return;
    if (*value == "sysctl") {
      policy_.arp.method = Method::kSysctl;
    } else if (*value == "nftables") {
      policy_.arp.method = Method::kNftables;
    } else if (*value == "both") {
      policy_.arp.method = Method::kBoth;
    } else if (*value == "redirect") {
      error(node.source(), path + ": \"redirect\" is not supported yet (use \"sysctl\", \"nftables\" or \"both\")");
    } else {
      error(node.source(),
            fmt::format("{}: '{}' is not one of \"sysctl\", \"nftables\", \"both\", \"redirect\"", path, *value));
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
      auto ip = Ipv4::parse(*text);
      if (!ip || ip->is_unspecified() || ip->is_multicast() || ip->is_loopback()) {
        error(value_node.source(), fmt::format("{}: '{}' is not a usable IPv4 address", item, *text));
        continue;
      }
      policy_.arp.real_ip[name] = *ip;
    }
  }

  void read_vips(const toml::node& node) {
    auto* array = node.as_array();
    if (!array || !array->is_array_of_tables()) {
      error(node.source(), "vip: expected an array of tables ([[vip]])");
      return;
    }
    for (const toml::node& element : *array) read_vip(*element.as_table());
  }

  void read_vip(const toml::table& table) {
    VipPolicy vip;
    const toml::node* address_node = nullptr;
    bool address_ok = false;
    for (auto&& [key, node] : table) {
      const std::string name(key.str());
      const std::string path = "vip." + name;
      if (name == "address") {
        address_node = &node;
        if (auto text = string_of(node, path)) address_ok = parse_vip_address(*text, node, vip);
      } else if (name == "device") {
        if (auto value = string_of(node, path)) {
          check_interface_name(*value, node, path);
          vip.device = *value;
        }
      } else if (name == "check") {
        if (auto value = string_of(node, path)) {
          const std::string port = value->rfind("tcp:", 0) == 0 ? value->substr(4) : "";
          const bool digits = !port.empty() && port.size() <= 5 && port[0] != '0' &&
                              std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
          if (!digits || std::stoi(port) > 65535) {
            error(node.source(), fmt::format("vip.check: '{}' is not tcp:PORT (port 1 to 65535)", *value));
          } else {
            vip.check_port = static_cast<uint16_t>(std::stoi(port));
          }
        }
      } else if (name == "as") {
        if (auto value = string_of(node, path)) {
          if (*value == "route") {
            error(node.source(), "vip.as: \"route\" is not supported yet (use \"address\")");
          } else if (*value != "address") {
            error(node.source(), fmt::format("vip.as: '{}' is not one of \"address\", \"route\"", *value));
          }
        }
      } else {
        error(key.source(), fmt::format("unknown key '{}'", path));
      }
    }
    if (!address_node) {
      error(table.source(), "vip: missing required key 'address'");
      return;
    }
    if (!address_ok) return;
    for (const VipPolicy& other : policy_.vips) {
      if (other.prefix == vip.prefix) {
        error(address_node->source(), fmt::format("vip.address: duplicate VIP {} (first at line {})",
                                                  vip.prefix.address.str(), other.where.line));
        return;
      }
    }
    policy_.vips.push_back(std::move(vip));
  }

  bool parse_vip_address(const std::string& text, const toml::node& node, VipPolicy& vip) {
    if (text.find(':') != std::string::npos) {
      error(node.source(), fmt::format("vip.address: IPv6 VIPs are not supported yet ('{}')", text));
      return false;
    }
    auto prefix = Ipv4Prefix::parse(text);
    if (!prefix) {
      error(node.source(), fmt::format("vip.address: '{}' is not an IPv4 address", text));
      return false;
    }
    if (prefix->length != 32) {
      error(node.source(), fmt::format("vip.address: prefix VIPs are not supported yet ('{}'; give one address)", text));
      return false;
    }
    const Ipv4 ip = prefix->address;
    const char* why = ip.is_unspecified()             ? "the unspecified address"
                      : ip.is_loopback()              ? "in the loopback range 127.0.0.0/8"
                      : ip.is_multicast()             ? "a multicast address"
                      : ip.value == 0xffffffff        ? "the broadcast address"
                      : ip.is_reserved_class_e()      ? "in the reserved range 240.0.0.0/4"
                                                      : nullptr;
    if (why) {
      error(node.source(), fmt::format("vip.address: {} is {}, not a usable VIP", ip.str(), why));
      return false;
    }
    vip.prefix = *prefix;
    vip.where = at(node.source());
    return true;
  }

  std::optional<Endpoint> parse_endpoint(const std::string& text) {
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos) return std::nullopt;
    auto address = Ipv4::parse(std::string_view(text).substr(0, colon));
    const std::string port_text = text.substr(colon + 1);
    if (!address || port_text.empty() || port_text.size() > 5 ||
        !std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::nullopt;
    }
    const int port = std::stoi(port_text);
    if (port < 1 || port > 65535) return std::nullopt;
    return Endpoint{*address, static_cast<uint16_t>(port)};
  }

  void read_endpoints(const toml::node& node, const std::string& path, std::vector<Endpoint>& out) {
    for (auto& [text, element] : strings_of(node, path)) {
      if (auto endpoint = parse_endpoint(text)) {
        out.push_back(*endpoint);
      } else {
        error(element->source(), fmt::format("{}: '{}' is not IPV4:PORT (port 1 to 65535)", path, text));
      }
    }
  }

  void read_readiness(const toml::table& table) {
    for (auto&& [key, node] : table) {
      const std::string name(key.str());
      const std::string path = "readiness." + name;
      if (name == "listen") {
        read_endpoints(node, path, policy_.readiness.listen);
      } else if (name == "agent_check_listen") {
        read_endpoints(node, path, policy_.readiness.agent_check_listen);
      } else {
        error(key.source(), fmt::format("unknown key '{}'", path));
      }
    }
  }

  std::string file_;
  Policy policy_;
  std::vector<Diagnostic> errors_;
};

}  // namespace

PolicyResult parse_policy(std::string_view text, const std::string& file) {
  toml::table root;
  try {
    root = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    const auto& begin = e.source().begin;
    PolicyResult result;
    result.errors.push_back({{file, static_cast<int>(begin.line), static_cast<int>(begin.column)},
                             std::string(e.description())});
    return result;
  }
  return PolicyReader(file).read(root);
}

PolicyResult load_policy(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    const int saved = errno;
    PolicyResult result;
    result.errors.push_back({{file, 0, 0}, std::string("cannot read policy: ") + std::strerror(saved)});
    return result;
  }
  std::ostringstream text;
  text << in.rdbuf();
  return parse_policy(text.str(), file);
}

}  // namespace arpguard
