#include "core/status_snapshot.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace arpguard {

using nlohmann::json;

namespace {

struct KindName {
  ReasonKind kind;
  std::string_view name;
};

constexpr KindName kKindNames[] = {
    {ReasonKind::kDraining, "draining"},
    {ReasonKind::kNoVips, "no_vips"},
    {ReasonKind::kStale, "stale"},
    {ReasonKind::kObserveFailed, "observe_failed"},
    {ReasonKind::kSysctlWrong, "sysctl_wrong"},
    {ReasonKind::kArpIgnoreExposes, "arp_ignore_exposes"},
    {ReasonKind::kArpAnnounceLow, "arp_announce_low"},
    {ReasonKind::kTableMissing, "table_missing"},
    {ReasonKind::kTableMismatch, "table_mismatch"},
    {ReasonKind::kRepairFailing, "repair_failing"},
    {ReasonKind::kContested, "contested"},
    {ReasonKind::kConntrackHigh, "conntrack_high"},
    {ReasonKind::kOrphanGuarded, "orphan_guarded"},
    {ReasonKind::kAddressUnanswered, "address_unanswered"},
    {ReasonKind::kVipClaimed, "vip_claimed"},
    {ReasonKind::kVipLeaked, "vip_leaked"},
    {ReasonKind::kStateUnrecorded, "state_unrecorded"},
    {ReasonKind::kVipMissing, "vip_missing"},
    {ReasonKind::kVipDeviceMissing, "vip_device_missing"},
    {ReasonKind::kVipDeviceDown, "vip_device_down"},
    {ReasonKind::kVipWrongAttributes, "vip_wrong_attributes"},
    {ReasonKind::kVipNotSuppressed, "vip_not_suppressed"},
    {ReasonKind::kVipMisplaced, "vip_misplaced"},
    {ReasonKind::kVipForeignRoute, "vip_foreign_route"},
    {ReasonKind::kRedirectConfigured, "redirect_configured"},
    {ReasonKind::kCheckFailed, "check_failed"},
};

// Decodes one UTF-8 sequence at text[i]; its length, or 0 when invalid.
size_t utf8_length(const std::string& text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = byte(i);
  size_t n = 0;
  uint32_t min = 0;
  if (c < 0x80) return 1;
  if ((c & 0xe0) == 0xc0) { n = 2; min = 0x80; }
  else if ((c & 0xf0) == 0xe0) { n = 3; min = 0x800; }
  else if ((c & 0xf8) == 0xf0) { n = 4; min = 0x10000; }
  else return 0;
  if (i + n > text.size()) return 0;
  uint32_t cp = c & (0x7f >> n);
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

template <class T>
T get_or(const json& j, const char* key, T fallback) {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  if (it == j.end()) return fallback;
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    return fallback;
  }
}

const json& array_at(const json& j, const char* key) {
  static const json kEmpty = json::array();
  if (!j.is_object()) return kEmpty;
  auto it = j.find(key);
  return it != j.end() && it->is_array() ? *it : kEmpty;
}

json reasons_json(const std::vector<Reason>& reasons) {
  json out = json::array();
  for (const Reason& r : reasons) {
    out.push_back({{"kind", to_string(r.kind)},
                   {"severity", r.severity == Severity::kNotReady ? "not_ready" : "warning"},
                   {"text", printable(r.text)}});
  }
  return out;
}

std::vector<Reason> reasons_from(const json& array) {
  std::vector<Reason> out;
  if (!array.is_array()) return out;
  for (const json& r : array) {
    Reason reason;
    reason.kind = reason_kind_from(get_or<std::string>(r, "kind", ""));
    reason.severity = get_or<std::string>(r, "severity", "") == "warning" ? Severity::kWarning : Severity::kNotReady;
    reason.text = get_or<std::string>(r, "text", "?");
    out.push_back(std::move(reason));
  }
  return out;
}

}  // namespace

std::string_view to_string(ReasonKind kind) {
  for (const KindName& k : kKindNames) {
    if (k.kind == kind) return k.name;
  }
  return "stale";
}

ReasonKind reason_kind_from(std::string_view text) {
  for (const KindName& k : kKindNames) {
    if (k.name == text) return k.kind;
  }
  return ReasonKind::kStale;
}

std::string printable(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    const size_t n = utf8_length(text, i);
    if (n == 0) {
      out += fmt::format("\\x{:02x}", c);
      ++i;
    } else if (n == 1 && (c < 0x20 || c == 0x7f)) {
      out += fmt::format("\\x{:02x}", c);
      ++i;
    } else {
      out.append(text, i, n);
      i += n;
    }
  }
  return out;
}

std::string dump_json(const json& j, int indent) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

json to_json(const StatusSnapshot& s) {
  json out;
  out["version"] = printable(s.version);
  out["policy"] = printable(s.policy);
  out["method"] = s.method;
  out["ready"] = s.ready;
  out["draining"] = s.draining;
  out["reasons"] = reasons_json(s.reasons);
  out["state_age_seconds"] = std::round(s.state_age_seconds * 1000) / 1000;
  out["uptime_seconds"] = std::round(s.uptime_seconds * 10) / 10;
  out["now"] = s.now;
  out["vips_total"] = s.vips_total;
  out["vips_ready"] = s.vips_ready;
  out["vips_complete"] = s.vips_complete;
  out["vips"] = json::array();
  for (const VipStatus& v : s.vips) {
    json vip = {{"address", v.vip},    {"device", printable(v.device)}, {"kind", v.kind}, {"method", v.method},
                {"present", v.present}, {"ready", v.ready},             {"reasons", reasons_json(v.reasons)}};
    if (v.check_ok) vip["check_ok"] = *v.check_ok;
    out["vips"].push_back(std::move(vip));
  }
  out["interfaces"] = json::array();
  for (const InterfaceStatus& i : s.interfaces) {
    out["interfaces"].push_back({{"name", printable(i.name)},
                                 {"arp_ignore", i.arp_ignore},
                                 {"arp_announce", i.arp_announce},
                                 {"arp_filter", i.arp_filter},
                                 {"real_ip", i.real_ip}});
  }
  out["addresses"] = json::array();
  for (const AddressAnswerStatus& a : s.addresses) {
    json answered = json::array();
    for (const std::string& name : a.answered_by) answered.push_back(printable(name));
    out["addresses"].push_back({{"address", a.address},
                                {"device", printable(a.device)},
                                {"answered_by", answered},
                                {"right", a.why.empty()},
                                {"why", printable(a.why)}});
  }
  out["tables"] = json::array();
  for (const TableStatus& t : s.tables) {
    out["tables"].push_back({{"table", t.table}, {"present", t.present}, {"owned", t.owned}, {"elements", t.elements}});
  }
  out["rules"] = json::array();
  for (const RuleStatus& r : s.rules) {
    out["rules"].push_back({{"table", r.table},
                            {"chain", printable(r.chain)},
                            {"role", r.role},
                            {"interface", printable(r.interface)},
                            {"text", printable(r.text)},
                            {"packets", r.packets}});
  }
  json recent = json::array();
  for (const RepairRecord& r : s.recent_repairs) {
    std::vector<std::string> actions;
    for (const std::string& a : r.actions) actions.push_back(printable(a));
    recent.push_back({{"at", r.at}, {"cause", printable(r.cause)}, {"actions", actions}});
  }
  out["repairs"] = {{"total", s.repairs_total},
                    {"failures_total", s.repair_failures_total},
                    {"recent", recent}};
  out["cache_divergence_total"] = s.cache_divergence_total;
  out["audits_total"] = s.audits_total;
  out["audits_inconclusive_total"] = s.audits_inconclusive_total;
  out["contested"] = json::array();
  for (const ContestedStatus& c : s.contested) out["contested"].push_back({{"resource", printable(c.resource)}, {"repairs", c.repairs}});
  if (s.conntrack) out["conntrack"] = {{"entries", s.conntrack->entries}, {"max", s.conntrack->max}};
  out["claims"] = json::array();
  for (const ClaimStatus& c : s.claims) {
    out["claims"].push_back({{"vip", c.vip}, {"mac", c.mac}, {"origin", c.origin}, {"frames", c.frames},
                             {"last_seen", c.last_seen}});
  }
  out["watch"] = {{"learned_directors", s.learned_directors},
                  {"probes_total", s.watch_probes_total},
                  {"frames_total", s.watch_frames_total}};
  out["metrics_vip_limit"] = s.metrics_vip_limit;
  return out;
}

StatusSnapshot status_from_json(const json& j) {
  StatusSnapshot s;
  s.version = get_or<std::string>(j, "version", "?");
  s.policy = get_or<std::string>(j, "policy", "?");
  s.method = get_or<std::string>(j, "method", "?");
  s.ready = get_or<bool>(j, "ready", false);
  s.draining = get_or<bool>(j, "draining", false);
  s.reasons = reasons_from(j.is_object() && j.contains("reasons") ? j["reasons"] : json());
  if (!s.ready && s.reasons.empty()) {
    s.reasons.push_back(not_ready(ReasonKind::kStale, "arpguardd did not say why it is not ready"));
  }
  s.state_age_seconds = get_or<double>(j, "state_age_seconds", 0);
  s.uptime_seconds = get_or<double>(j, "uptime_seconds", 0);
  s.now = get_or<double>(j, "now", 0);
  s.vips_total = get_or<uint64_t>(j, "vips_total", 0);
  s.vips_ready = get_or<uint64_t>(j, "vips_ready", 0);
  s.vips_complete = get_or<bool>(j, "vips_complete", true);
  for (const json& v : array_at(j, "vips")) {
    VipStatus vip;
    vip.vip = get_or<std::string>(v, "address", "?");
    vip.device = get_or<std::string>(v, "device", "");
    vip.kind = get_or<std::string>(v, "kind", "?");
    vip.method = get_or<std::string>(v, "method", "?");
    vip.present = get_or<bool>(v, "present", false);
    vip.ready = get_or<bool>(v, "ready", false);
    vip.reasons = reasons_from(v.is_object() && v.contains("reasons") ? v["reasons"] : json());
    if (v.is_object() && v.contains("check_ok")) vip.check_ok = get_or<bool>(v, "check_ok", false);
    s.vips.push_back(std::move(vip));
  }
  for (const json& i : array_at(j, "interfaces")) {
    s.interfaces.push_back({get_or<std::string>(i, "name", "?"), get_or<int>(i, "arp_ignore", 0),
                            get_or<int>(i, "arp_announce", 0), get_or<int>(i, "arp_filter", 0),
                            get_or<std::string>(i, "real_ip", "")});
  }
  for (const json& a : array_at(j, "addresses")) {
    AddressAnswerStatus status{get_or<std::string>(a, "address", "?"), get_or<std::string>(a, "device", "?"), {},
                               get_or<std::string>(a, "why", "")};
    for (const json& name : array_at(a, "answered_by")) {
      if (name.is_string()) status.answered_by.push_back(name.get<std::string>());
    }
    s.addresses.push_back(std::move(status));
  }
  for (const json& t : array_at(j, "tables")) {
    s.tables.push_back({get_or<std::string>(t, "table", "?"), get_or<bool>(t, "present", false),
                        get_or<bool>(t, "owned", false), get_or<uint64_t>(t, "elements", 0)});
  }
  for (const json& r : array_at(j, "rules")) {
    s.rules.push_back({get_or<std::string>(r, "table", "?"), get_or<std::string>(r, "chain", "?"),
                       get_or<std::string>(r, "role", "foreign"), get_or<std::string>(r, "interface", ""),
                       get_or<std::string>(r, "text", "?"), get_or<uint64_t>(r, "packets", 0)});
  }
  const json repairs = j.is_object() && j.contains("repairs") ? j["repairs"] : json::object();
  s.repairs_total = get_or<uint64_t>(repairs, "total", 0);
  s.repair_failures_total = get_or<uint64_t>(repairs, "failures_total", 0);
  for (const json& r : array_at(repairs, "recent")) {
    s.recent_repairs.push_back({get_or<double>(r, "at", 0), get_or<std::string>(r, "cause", "?"),
                                get_or<std::vector<std::string>>(r, "actions", {})});
  }
  s.cache_divergence_total = get_or<uint64_t>(j, "cache_divergence_total", 0);
  s.audits_total = get_or<uint64_t>(j, "audits_total", 0);
  s.audits_inconclusive_total = get_or<uint64_t>(j, "audits_inconclusive_total", 0);
  for (const json& c : array_at(j, "contested")) {
    s.contested.push_back({get_or<std::string>(c, "resource", "?"), get_or<int>(c, "repairs", 0)});
  }
  if (j.is_object() && j.contains("conntrack")) {
    s.conntrack = ConntrackFill{get_or<uint64_t>(j["conntrack"], "entries", 0), get_or<uint64_t>(j["conntrack"], "max", 0)};
  }
  for (const json& c : array_at(j, "claims")) {
    s.claims.push_back({get_or<std::string>(c, "vip", "?"), get_or<std::string>(c, "mac", "?"),
                        get_or<std::string>(c, "origin", "other"), get_or<uint64_t>(c, "frames", 0),
                        get_or<double>(c, "last_seen", 0)});
  }
  if (j.is_object() && j.contains("watch") && j["watch"].is_object()) {
    for (const json& mac : array_at(j["watch"], "learned_directors")) {
      if (mac.is_string()) s.learned_directors.push_back(mac.get<std::string>());
    }
    s.watch_probes_total = get_or<uint64_t>(j["watch"], "probes_total", 0);
    s.watch_frames_total = get_or<uint64_t>(j["watch"], "frames_total", 0);
  }
  s.metrics_vip_limit = get_or<int>(j, "metrics_vip_limit", 1000);
  return s;
}

namespace {

bool only_draining(const StatusSnapshot& s) {
  return s.draining && std::all_of(s.reasons.begin(), s.reasons.end(), [](const Reason& r) {
           return r.kind == ReasonKind::kDraining || r.severity == Severity::kWarning;
         });
}

bool has_warnings(const StatusSnapshot& s) {
  return std::any_of(s.reasons.begin(), s.reasons.end(), [](const Reason& r) { return r.severity == Severity::kWarning; });
}

double last_repair_age(const StatusSnapshot& s) {
  return s.recent_repairs.empty() ? INFINITY : s.now - s.recent_repairs.front().at;
}

const Reason* first_not_ready(const StatusSnapshot& s) {
  for (const Reason& r : s.reasons) {
    if (r.severity == Severity::kNotReady && r.kind != ReasonKind::kDraining) return &r;
  }
  for (const Reason& r : s.reasons) {
    if (r.severity == Severity::kNotReady) return &r;
  }
  return nullptr;
}

}  // namespace

int status_exit_code(const StatusSnapshot& s) {
  if (!s.contested.empty()) return 2;
  if (!s.ready && !only_draining(s)) return 2;
  if (s.draining || has_warnings(s) || last_repair_age(s) < kRecentRepairSeconds) return 1;
  return 0;
}

std::string render_status_text(const StatusSnapshot& s) {
  static const char* const kNames[] = {"OK", "WARNING", "CRITICAL"};
  const int code = status_exit_code(s);
  std::string summary;
  if (code == 2) {
    const Reason* reason = first_not_ready(s);
    summary = "not ready: " + (reason ? reason->text : std::string("?"));
  } else if (s.draining) {
    summary = fmt::format("draining; {} VIP(s) held", s.vips_total);
  } else {
    summary = fmt::format("{}/{} VIPs ready, method {}", s.vips_ready, s.vips_total, s.method);
    if (code == 1 && has_warnings(s)) {
      for (const Reason& r : s.reasons) {
        if (r.severity == Severity::kWarning) {
          summary += "; " + r.text;
          break;
        }
      }
    } else if (code == 1) {
      summary += fmt::format(", repaired {:.0f} s ago", last_repair_age(s));
    }
  }
  uint64_t dropped = 0;
  for (const RuleStatus& r : s.rules) {
    if (r.role == "drop_requests") dropped += r.packets;
  }
  // '|' starts the perfdata: none may come before it.
  std::replace(summary.begin(), summary.end(), '|', '/');
  std::string out = fmt::format(
      "ARPGUARD {} - {} | vips={};;;0 ready_vips={};;;0 repairs={}c repair_failures={}c dropped_requests={}c "
      "contested={};;;0\n",
      kNames[code], printable(summary), s.vips_total, s.vips_ready, s.repairs_total, s.repair_failures_total, dropped,
      s.contested.size());

  out += s.vips_complete ? "VIPs:\n" : fmt::format("VIPs ({} of {} shown; arpguard status --vips lists all):\n", s.vips.size(), s.vips_total);
  for (const VipStatus& v : s.vips) {
    std::string state = v.ready ? "ready" : "NOT READY";
    std::vector<std::string> texts;
    for (const Reason& r : v.reasons) texts.push_back(r.text);
    if (!texts.empty()) state += ": " + fmt::format("{}", fmt::join(texts, "; "));
    const std::string where = v.kind == "redirect" ? "redirect" : "dev " + v.device;
    out += printable(fmt::format("  {:<20} {:<10} {}", v.vip, where, state)) + "\n";
  }
  if (!s.reasons.empty()) {
    out += "Reasons:\n";
    for (const Reason& r : s.reasons) {
      out += fmt::format("  {}{}\n", r.severity == Severity::kWarning ? "warning: " : "", printable(r.text));
    }
  }
  if (!s.interfaces.empty()) out += "Interfaces (effective values):\n";
  for (const InterfaceStatus& i : s.interfaces) {
    out += fmt::format("  {:<10} arp_ignore={} arp_announce={} arp_filter={}{}\n", printable(i.name), i.arp_ignore,
                       i.arp_announce, i.arp_filter, i.real_ip.empty() ? "" : "  real ip " + i.real_ip);
  }
  if (!s.addresses.empty()) out += "Host addresses (who answers ARP for each):\n";
  for (const AddressAnswerStatus& a : s.addresses) {
    out += fmt::format("  {:<16} on {:<8} {}{}\n", a.address, printable(a.device),
                       a.answered_by.empty() ? std::string("nobody") : printable(fmt::format("{}", fmt::join(a.answered_by, ", "))),
                       a.why.empty() ? "" : "  <- " + printable(a.why));
  }
  for (const TableStatus& t : s.tables) {
    out += fmt::format("nft table {}: {}{}, {} element(s)\n", t.table, t.present ? "present" : "absent",
                       t.owned ? ", owned" : "", t.elements);
    for (const RuleStatus& r : s.rules) {
      if (r.table == t.table) out += fmt::format("  {:<10} {}\n", printable(r.chain), printable(r.text));
    }
  }
  if (s.conntrack) {
    out += fmt::format("conntrack: {} of {} entries\n", s.conntrack->entries, s.conntrack->max);
  }
  for (const ContestedStatus& c : s.contested) {
    out += fmt::format("Contested: {} ({} repairs in the window)\n", printable(c.resource), c.repairs);
  }
  if (!s.claims.empty()) out += "Claims heard on the wire:\n";
  for (const ClaimStatus& c : s.claims) {
    const bool learned = std::find(s.learned_directors.begin(), s.learned_directors.end(), c.mac) != s.learned_directors.end();
    const char* who = c.origin == "this_host" ? "this host (a leak)"
                      : c.origin == "director" ? (learned ? "the director (learned)" : "the director")
                                               : "another host";
    out += fmt::format("  {:<20} {}  {}: {} frame(s), last {:.0f} s ago\n", printable(c.vip), printable(c.mac), who,
                       c.frames, std::max(0.0, s.now - c.last_seen));
  }
  out += fmt::format("Recent repairs ({} in total, {} failed):\n", s.repairs_total, s.repair_failures_total);
  if (s.recent_repairs.empty()) out += "  none\n";
  for (const RepairRecord& r : s.recent_repairs) {
    out += printable(fmt::format("  {:.0f} s ago, after {}: {}", s.now - r.at, r.cause, fmt::join(r.actions, "; "))) + "\n";
  }
  return out;
}

namespace {

// Label values escape backslash, double quote and newline.
std::string label(const std::string& value) {
  std::string out;
  for (char c : printable(value)) {
    if (c == '\\' || c == '"') out += '\\';
    out += c;
  }
  return out;
}

void metric(std::string& out, const char* name, const char* type, const char* help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

}  // namespace

std::string render_metrics(const StatusSnapshot& s) {
  std::string out;
  metric(out, "arpguard_build_info", "gauge", "Version of the running arpguardd.");
  out += fmt::format("arpguard_build_info{{version=\"{}\"}} 1\n", label(s.version));
  metric(out, "arpguard_ready", "gauge", "1 when the server is ready for every VIP, else 0.");
  out += fmt::format("arpguard_ready {}\n", s.ready ? 1 : 0);
  metric(out, "arpguard_draining", "gauge", "1 while the operator drains the server.");
  out += fmt::format("arpguard_draining {}\n", s.draining ? 1 : 0);
  metric(out, "arpguard_state_record_ok", "gauge",
         "0 while the state record cannot be written or read (ownership of VIPs is not kept), else 1.");
  const bool unrecorded = std::any_of(s.reasons.begin(), s.reasons.end(),
                                      [](const Reason& r) { return r.kind == ReasonKind::kStateUnrecorded; });
  out += fmt::format("arpguard_state_record_ok {}\n", unrecorded ? 0 : 1);
  metric(out, "arpguard_state_age_seconds", "gauge", "Age of the kernel state readiness was derived from.");
  out += fmt::format("arpguard_state_age_seconds {:.3f}\n", s.state_age_seconds);
  metric(out, "arpguard_vips", "gauge", "VIPs in the policy.");
  out += fmt::format("arpguard_vips {}\n", s.vips_total);
  metric(out, "arpguard_vips_ready", "gauge", "VIPs the server is ready for.");
  out += fmt::format("arpguard_vips_ready {}\n", s.vips_ready);
  // Per-VIP series up to the policy's limit; the aggregates above cover the rest.
  const bool per_vip = s.vips_total <= static_cast<uint64_t>(s.metrics_vip_limit) && s.vips_complete;
  if (per_vip) {
    metric(out, "arpguard_vip_ready", "gauge", "1 when the server is ready for the VIP.");
    for (const VipStatus& v : s.vips) {
      out += fmt::format("arpguard_vip_ready{{vip=\"{}\",device=\"{}\",method=\"{}\"}} {}\n", label(v.vip),
                         label(v.device), label(v.method), v.ready ? 1 : 0);
    }
    metric(out, "arpguard_vip_present", "gauge", "1 when the VIP is configured on its device (redirect: its rules are).");
    for (const VipStatus& v : s.vips) {
      out += fmt::format("arpguard_vip_present{{vip=\"{}\",device=\"{}\"}} {}\n", label(v.vip), label(v.device),
                         v.present ? 1 : 0);
    }
  }
  metric(out, "arpguard_repairs_total", "counter", "Repairs of drift since arpguardd started.");
  out += fmt::format("arpguard_repairs_total {}\n", s.repairs_total);
  metric(out, "arpguard_repair_failures_total", "counter", "Repairs that failed (EPERM, EROFS, ENODEV, ...).");
  out += fmt::format("arpguard_repair_failures_total {}\n", s.repair_failures_total);
  metric(out, "arpguard_contested_resources", "gauge", "Resources someone keeps undoing.");
  out += fmt::format("arpguard_contested_resources {}\n", s.contested.size());
  metric(out, "arpguard_cache_divergence_total", "counter",
         "Differences the periodic audit found between the event-fed cache and the kernel.");
  out += fmt::format("arpguard_cache_divergence_total {}\n", s.cache_divergence_total);
  metric(out, "arpguard_audits_total", "counter", "Periodic audits done (agent.audit_interval_ms).");
  out += fmt::format("arpguard_audits_total {}\n", s.audits_total);
  metric(out, "arpguard_audits_inconclusive_total", "counter",
         "Audits not compared with the cache: the kernel notified changes while they read.");
  out += fmt::format("arpguard_audits_inconclusive_total {}\n", s.audits_inconclusive_total);
  const std::pair<const char*, int InterfaceStatus::*> sysctls[] = {
      {"arp_ignore", &InterfaceStatus::arp_ignore},
      {"arp_announce", &InterfaceStatus::arp_announce},
      {"arp_filter", &InterfaceStatus::arp_filter}};
  for (const auto& [name, field] : sysctls) {
    const std::string metric_name = fmt::format("arpguard_interface_{}", name);
    const std::string help = fmt::format("Effective {} of an ARP-facing interface.", name);
    metric(out, metric_name.c_str(), "gauge", help.c_str());
    for (const InterfaceStatus& i : s.interfaces) {
      out += fmt::format("{}{{interface=\"{}\"}} {}\n", metric_name, label(i.name), i.*field);
    }
  }
  metric(out, "arpguard_host_addresses_misanswered", "gauge",
         "Host addresses on ARP-facing interfaces answered by no interface, or by another one (ARP flux).");
  out += fmt::format("arpguard_host_addresses_misanswered {}\n",
                     std::count_if(s.addresses.begin(), s.addresses.end(),
                                   [](const AddressAnswerStatus& a) { return !a.why.empty(); }));
  uint64_t dropped = 0;
  uint64_t nd_in = 0;
  uint64_t nd_out = 0;
  uint64_t redirected_v4 = 0;
  uint64_t redirected_v6 = 0;
  for (const RuleStatus& r : s.rules) {
    if (r.role == "drop_requests") dropped += r.packets;
    if (r.role == "drop_solicitations") nd_in += r.packets;
    if (r.role == "drop_advertisements" || r.role == "drop_vip_solicitations") nd_out += r.packets;
    if (r.role == "redirect" || r.role == "redirect_to_port") (r.table.rfind("ip6 ", 0) == 0 ? redirected_v6 : redirected_v4) += r.packets;
  }
  metric(out, "arpguard_arp_requests_dropped_total", "counter",
         "ARP requests for a VIP dropped by the nft input rule (resets when the table is rebuilt).");
  out += fmt::format("arpguard_arp_requests_dropped_total {}\n", dropped);
  metric(out, "arpguard_arp_sender_rewrites_total", "counter",
         "ARP packets sent from a VIP whose sender the nft output rule rewrote or dropped, per interface.");
  for (const RuleStatus& r : s.rules) {
    if (r.role == "rewrite_sender" || r.role == "drop_announcements") {
      out += fmt::format("arpguard_arp_sender_rewrites_total{{interface=\"{}\"}} {}\n", label(r.interface), r.packets);
    }
  }
  metric(out, "arpguard_nd_dropped_total", "counter", "Neighbour solicitations for a VIP (in), and advertisements for it or solicitations from it (out), dropped.");
  out += fmt::format("arpguard_nd_dropped_total{{direction=\"in\"}} {}\narpguard_nd_dropped_total{{direction=\"out\"}} {}\n",
                     nd_in, nd_out);
  if (s.conntrack) {
    metric(out, "arpguard_redirected_packets_total", "counter", "Connections to redirected VIPs, per family.");
    out += fmt::format("arpguard_redirected_packets_total{{family=\"ipv4\"}} {}\n", redirected_v4);
    out += fmt::format("arpguard_redirected_packets_total{{family=\"ipv6\"}} {}\n", redirected_v6);
    metric(out, "arpguard_conntrack_entries", "gauge", "Connection tracking entries in use.");
    out += fmt::format("arpguard_conntrack_entries {}\n", s.conntrack->entries);
    metric(out, "arpguard_conntrack_max", "gauge", "Connection tracking table size (nf_conntrack_max).");
    out += fmt::format("arpguard_conntrack_max {}\n", s.conntrack->max);
  }
  metric(out, "arpguard_vip_claims_total", "counter", "ARP/NDP frames on the segment claiming a VIP, by who sent them.");
  for (const ClaimStatus& c : s.claims) {
    out += fmt::format("arpguard_vip_claims_total{{vip=\"{}\",mac=\"{}\",origin=\"{}\"}} {}\n", label(c.vip),
                       label(c.mac), label(c.origin), c.frames);
  }
  metric(out, "arpguard_watch_frames_total", "counter", "ARP/NDP frames the wire watch's log rules handed over.");
  out += fmt::format("arpguard_watch_frames_total {}\n", s.watch_frames_total);
  metric(out, "arpguard_watch_probes_total", "counter", "Probes the wire watch sent to hear who answers for a VIP.");
  out += fmt::format("arpguard_watch_probes_total {}\n", s.watch_probes_total);
  metric(out, "arpguard_uptime_seconds", "gauge", "Seconds since arpguardd started.");
  out += fmt::format("arpguard_uptime_seconds {:.1f}\n", s.uptime_seconds);
  return out;
}

std::string agent_check_line(bool ready, bool only_draining_reason, const std::string& first_reason) {
  if (ready) return "up ready 100%\n";
  if (only_draining_reason) return "drain\n";
  // HAProxy 2.6 takes a description only after a space: "down #reason".
  std::string reason = printable(first_reason.empty() ? std::string("not ready") : first_reason);
  std::replace(reason.begin(), reason.end(), '\n', ' ');
  if (reason.size() > 200) {
    // Cut at a character boundary: never in the middle of a UTF-8 sequence.
    size_t cut = 200;
    while (cut > 0 && (static_cast<unsigned char>(reason[cut]) & 0xc0) == 0x80) --cut;
    reason.resize(cut);
  }
  return "down #" + reason + "\n";
}

}  // namespace arpguard
