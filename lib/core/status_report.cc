#include "core/status_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "arpguard_config.h"
#include "core/desired.h"

namespace arpguard {

using nlohmann::json;

namespace {

std::string rule_kind(const ObservedRule& rule) {
  if (!rule.rule) return "foreign";
  switch (rule.rule->kind) {
    case rules::ArpRule::Kind::kInputDrop: return "drop_requests";
    case rules::ArpRule::Kind::kOutputMangle: return "rewrite_sender";
    case rules::ArpRule::Kind::kOutputDrop: return "drop_announcements";
  }
  return "foreign";
}

}  // namespace

json build_status(const StatusInputs& in) {
  const Readiness& r = in.readiness;
  json status;
  status["version"] = ARPGUARD_VERSION;
  status["policy"] = in.policy.file;
  status["method"] = std::string(to_string(in.policy.arp.method));
  status["ready"] = r.ready;
  status["draining"] = r.draining;
  status["reasons"] = r.all_reasons();
  status["uptime_seconds"] = std::round((in.now - in.started) * 10) / 10;

  status["vips"] = json::array();
  for (const VipReadiness& v : r.vips) {
    json vip = {{"address", v.vip.prefix.str()}, {"device", v.vip.device}, {"present", v.present},
                {"ready", v.ready}, {"reasons", v.reasons}};
    if (auto it = in.service_checks.find(v.vip.prefix); it != in.service_checks.end()) {
      vip["check"] = {{"ok", it->second.ok}, {"detail", it->second.detail}};
    }
    status["vips"].push_back(vip);
  }

  status["interfaces"] = json::array();
  for (const std::string& name : in.desired.arp_facing) {
    json iface = {{"name", name},
                  {"arp_ignore", effective_sysctl(in.observed.sysctls, name, kArpIgnore)},
                  {"arp_announce", effective_sysctl(in.observed.sysctls, name, kArpAnnounce)},
                  {"arp_filter", effective_sysctl(in.observed.sysctls, name, kArpFilter)}};
    if (in.desired.nft) {
      for (const rules::ArpRule& rule : in.desired.nft->rules) {
        if (rule.interface == name && rule.kind == rules::ArpRule::Kind::kOutputMangle) {
          iface["real_ip"] = rule.real_ip.str();
        }
      }
    }
    status["interfaces"].push_back(iface);
  }

  const ObservedArpTable& table = in.observed.nft;
  json nft = {{"table", fmt::format("arp {}", rules::kTable)}, {"present", table.exists},
              {"owned", table.owned_by_us}, {"elements", table.vips.size()}, {"rules", json::array()}};
  uint64_t dropped = 0;
  for (const ObservedRule& rule : table.rules) {
    nft["rules"].push_back({{"chain", rule.chain},
                            {"kind", rule_kind(rule)},
                            {"interface", rule.rule ? rule.rule->interface : ""},
                            {"text", rule.rule ? rule.rule->nft_text(rule.packets, rule.bytes) : "foreign rule"},
                            {"packets", rule.packets}});
    if (rule.rule && rule.rule->kind == rules::ArpRule::Kind::kInputDrop) dropped += rule.packets;
  }
  nft["dropped_requests"] = dropped;
  status["nft"] = nft;

  json recent = json::array();
  for (auto it = in.recent_repairs.rbegin(); it != in.recent_repairs.rend(); ++it) {
    recent.push_back({{"at", it->at}, {"cause", it->cause}, {"actions", it->actions}});
  }
  status["repairs"] = {{"total", in.repairs_total}, {"recent", recent}};
  status["contested"] = json::array();
  for (const auto& [resource, repairs] : in.contested) {
    status["contested"].push_back({{"resource", resource}, {"repairs", repairs}});
  }
  return status;
}

namespace {

size_t ready_vips(const json& status) {
  return static_cast<size_t>(std::count_if(status["vips"].begin(), status["vips"].end(),
                                           [](const json& v) { return v["ready"].get<bool>(); }));
}

double last_repair_age(const json& status, double now) {
  const json& recent = status["repairs"]["recent"];
  return recent.empty() ? INFINITY : now - recent[0]["at"].get<double>();
}

}  // namespace

int status_exit_code(const json& status, double now) {
  if (!status["contested"].empty()) return 2;
  const bool draining = status["draining"].get<bool>();
  // Draining alone (every other reason absent) is a warning; anything else not ready is critical.
  if (!status["ready"].get<bool>() && !(draining && status["reasons"].size() == 1)) return 2;
  if (draining || last_repair_age(status, now) < kRecentRepairSeconds) return 1;
  return 0;
}

std::string render_status_text(const json& status, double now) {
  static const char* const kNames[] = {"OK", "WARNING", "CRITICAL"};
  const int code = status_exit_code(status, now);
  const size_t vips = status["vips"].size();
  const size_t ready = ready_vips(status);
  std::string summary;
  if (code == 2) {
    summary = "not ready: " + (status["reasons"].empty() ? std::string("?") : status["reasons"][0].get<std::string>());
  } else if (status["draining"].get<bool>()) {
    summary = fmt::format("draining; {} VIP(s) held", vips);
  } else {
    summary = fmt::format("{}/{} VIPs ready, method {}", ready, vips, status["method"].get<std::string>());
    if (code == 1) summary += fmt::format(", repaired {:.0f} s ago", last_repair_age(status, now));
  }
  std::string out = fmt::format(
      "ARPGUARD {} - {} | vips={};;;0 ready_vips={};;;0 repairs={}c dropped_requests={}c contested={};;;0\n",
      kNames[code], summary, vips, ready, status["repairs"]["total"].get<uint64_t>(),
      status["nft"]["dropped_requests"].get<uint64_t>(), status["contested"].size());

  out += "VIPs:\n";
  for (const json& v : status["vips"]) {
    std::string state = v["ready"].get<bool>() ? "ready" : "NOT READY";
    std::vector<std::string> reasons = v["reasons"].get<std::vector<std::string>>();
    if (!reasons.empty()) state += ": " + fmt::format("{}", fmt::join(reasons, "; "));
    out += fmt::format("  {:<18} dev {:<6} {}\n", v["address"].get<std::string>(), v["device"].get<std::string>(), state);
  }
  if (!status["reasons"].empty()) {
    out += "Reasons:\n";
    for (const json& reason : status["reasons"]) out += "  " + reason.get<std::string>() + "\n";
  }
  out += "Interfaces (effective values):\n";
  for (const json& i : status["interfaces"]) {
    out += fmt::format("  {:<10} arp_ignore={} arp_announce={} arp_filter={}{}\n", i["name"].get<std::string>(),
                       i["arp_ignore"].get<int>(), i["arp_announce"].get<int>(), i["arp_filter"].get<int>(),
                       i.contains("real_ip") ? "  real ip " + i["real_ip"].get<std::string>() : "");
  }
  const json& nft = status["nft"];
  out += fmt::format("nft table {}: {}{}; ARP requests for VIPs dropped: {}\n", nft["table"].get<std::string>(),
                     nft["present"].get<bool>() ? "present" : "absent", nft["owned"].get<bool>() ? ", owned" : "",
                     nft["dropped_requests"].get<uint64_t>());
  for (const json& rule : nft["rules"]) {
    out += fmt::format("  {:<6} {}\n", rule["chain"].get<std::string>(), rule["text"].get<std::string>());
  }
  for (const json& c : status["contested"]) {
    out += fmt::format("Contested: {} ({} repairs in the window)\n", c["resource"].get<std::string>(),
                       c["repairs"].get<int>());
  }
  const json& recent = status["repairs"]["recent"];
  out += fmt::format("Recent repairs ({} in total):\n", status["repairs"]["total"].get<uint64_t>());
  if (recent.empty()) out += "  none\n";
  for (const json& repair : recent) {
    out += fmt::format("  {:.0f} s ago, after {}: {}\n", now - repair["at"].get<double>(),
                       repair["cause"].get<std::string>(),
                       fmt::join(repair["actions"].get<std::vector<std::string>>(), "; "));
  }
  return out;
}

namespace {

// Label values escape backslash, double quote and newline.
std::string label(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

void metric(std::string& out, const char* name, const char* type, const char* help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

}  // namespace

std::string render_metrics(const json& status) {
  std::string out;
  metric(out, "arpguard_build_info", "gauge", "Version of the running arpguardd.");
  out += fmt::format("arpguard_build_info{{version=\"{}\"}} 1\n", label(status["version"].get<std::string>()));
  metric(out, "arpguard_ready", "gauge", "1 when the server is ready for every VIP, else 0.");
  out += fmt::format("arpguard_ready {}\n", status["ready"].get<bool>() ? 1 : 0);
  metric(out, "arpguard_draining", "gauge", "1 while the operator drains the server.");
  out += fmt::format("arpguard_draining {}\n", status["draining"].get<bool>() ? 1 : 0);
  metric(out, "arpguard_vip_ready", "gauge", "1 when the server is ready for the VIP.");
  for (const json& v : status["vips"]) {
    out += fmt::format("arpguard_vip_ready{{vip=\"{}\",device=\"{}\"}} {}\n", label(v["address"].get<std::string>()),
                       label(v["device"].get<std::string>()), v["ready"].get<bool>() ? 1 : 0);
  }
  metric(out, "arpguard_vip_present", "gauge", "1 when the VIP is configured on its device.");
  for (const json& v : status["vips"]) {
    out += fmt::format("arpguard_vip_present{{vip=\"{}\",device=\"{}\"}} {}\n", label(v["address"].get<std::string>()),
                       label(v["device"].get<std::string>()), v["present"].get<bool>() ? 1 : 0);
  }
  metric(out, "arpguard_interface_arp_ignore", "gauge", "Effective arp_ignore of an ARP-facing interface.");
  for (const json& i : status["interfaces"]) {
    out += fmt::format("arpguard_interface_arp_ignore{{interface=\"{}\"}} {}\n", label(i["name"].get<std::string>()),
                       i["arp_ignore"].get<int>());
  }
  metric(out, "arpguard_interface_arp_announce", "gauge", "Effective arp_announce of an ARP-facing interface.");
  for (const json& i : status["interfaces"]) {
    out += fmt::format("arpguard_interface_arp_announce{{interface=\"{}\"}} {}\n",
                       label(i["name"].get<std::string>()), i["arp_announce"].get<int>());
  }
  metric(out, "arpguard_repairs_total", "counter", "Repairs of drift since arpguardd started.");
  out += fmt::format("arpguard_repairs_total {}\n", status["repairs"]["total"].get<uint64_t>());
  metric(out, "arpguard_arp_requests_dropped_total", "counter",
         "ARP requests for a VIP dropped by the nft input rule (resets when the table is rebuilt).");
  out += fmt::format("arpguard_arp_requests_dropped_total {}\n", status["nft"]["dropped_requests"].get<uint64_t>());
  metric(out, "arpguard_arp_sender_rewrites_total", "counter",
         "ARP packets sent from a VIP whose sender the nft output rule rewrote or dropped, per interface.");
  for (const json& rule : status["nft"]["rules"]) {
    if (rule["chain"] == "output" && rule["kind"] != "foreign") {
      out += fmt::format("arpguard_arp_sender_rewrites_total{{interface=\"{}\"}} {}\n",
                         label(rule["interface"].get<std::string>()), rule["packets"].get<uint64_t>());
    }
  }
  metric(out, "arpguard_contested_resources", "gauge", "Resources someone keeps undoing.");
  out += fmt::format("arpguard_contested_resources {}\n", status["contested"].size());
  metric(out, "arpguard_uptime_seconds", "gauge", "Seconds since arpguardd started.");
  out += fmt::format("arpguard_uptime_seconds {}\n", status["uptime_seconds"].get<double>());
  return out;
}

std::string agent_check_line(const json& status) {
  if (status["ready"].get<bool>()) return "up ready 100%\n";
  if (status["draining"].get<bool>() && status["reasons"].size() == 1) return "drain\n";
  // HAProxy 2.6 takes a description only after a space: "down #reason".
  std::string reason = status["reasons"].empty() ? "not ready" : status["reasons"][0].get<std::string>();
  std::replace(reason.begin(), reason.end(), '\n', ' ');
  return "down #" + reason + "\n";
}

}  // namespace arpguard
