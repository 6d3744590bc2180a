// A real server and a client on one segment, with a policy directory, and
// readers of the kernel state arpguard is responsible for.
#pragma once

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/support/netlab.h"

namespace arpguard::testing {

struct Guarded {
  Segment segment;
  TempDir dir;

  /// A policy with `body` after an [agent] table pointing state into dir.
  /// These suites count the protection's own rules, so the wire watch (its
  /// log rules; tests/lab/watch_test and tests/wire) is off unless `body`
  /// has a [watch] table.
  std::string write_policy(const std::string& body, const std::string& agent_extra = "") const {
    // Last, so that the line numbers of located errors in `body` stay put.
    const std::string watch = body.find("[watch]") == std::string::npos ? "\n[watch]\nenabled = false\n" : "";
    return dir.write("policy.toml", "[agent]\nstate_dir = \"" + dir.path() + "/state\"\ncontrol_socket = \"" +
                                        control_socket() + "\"\n" + agent_extra + body + watch);
  }
  std::string control_socket() const { return dir.path() + "/arpguard.sock"; }
  CommandResult apply(const std::string& policy_path, const std::string& flags = "") const {
    return segment.rs.exec(arpguard_bin() + " apply --policy " + policy_path + " " + flags);
  }

  /// IPv4 addresses on `device` in the real server, as "a.b.c.d/len".
  std::vector<std::string> addresses(const std::string& device) const {
    std::vector<std::string> out;
    for (const auto& link : nlohmann::json::parse(segment.rs.must("ip -j -4 addr show dev " + device))) {
      for (const auto& info : link["addr_info"]) {
        out.push_back(info["local"].get<std::string>() + "/" + std::to_string(info["prefixlen"].get<int>()));
      }
    }
    return out;
  }
  bool has_address(const std::string& device, const std::string& prefix) const {
    for (const std::string& a : addresses(device)) {
      if (a == prefix) return true;
    }
    return false;
  }
  int sysctl(const std::string& key) const {
    return std::stoi(segment.rs.must("cat /proc/sys/net/ipv4/conf/" + key));
  }
  bool table_exists() const { return segment.rs.exec("nft list table arp arpguard").exit_code == 0; }
  /// `nft -j list table arp arpguard` parsed; REQUIRES: table_exists().
  nlohmann::json table_json() const { return nlohmann::json::parse(segment.rs.must("nft -j list table arp arpguard")); }
  /// The set's elements as nft names them.
  std::vector<std::string> set_elements() const {
    std::vector<std::string> out;
    const nlohmann::json table = table_json();  // named: a temporary's member would dangle in the loop
    for (const auto& item : table["nftables"]) {
      if (item.contains("set")) {
        for (const auto& e : item["set"].value("elem", nlohmann::json::array())) out.push_back(e.get<std::string>());
      }
    }
    return out;
  }
  size_t rule_count() const {
    size_t n = 0;
    const nlohmann::json table = table_json();
    for (const auto& item : table["nftables"]) n += item.contains("rule");
    return n;
  }
  /// The table as nft lists it, with counters zeroed and the flags line dropped
  /// (nft 1.0.6 cannot name PERSIST), for comparison with rules/golden.
  std::string table_text() const {
    return segment.rs.must(
        "nft list table arp arpguard | sed -e 's/counter packets [0-9]* bytes [0-9]*/counter packets 0 bytes 0/' "
        "-e '/^\\tflags /{N;d}' -e 's/ # progname .*//'");
  }
};

inline bool any_line_contains(const std::vector<std::string>& lines, const std::string& text) {
  for (const std::string& line : lines) {
    if (line.find(text) != std::string::npos) return true;
  }
  return false;
}

}  // namespace arpguard::testing
