// The status snapshot and its views: JSON both ways, the monitoring-plugin
// exit code and text, Prometheus metrics and the HAProxy agent-check line.
// Snapshots are built by hand; every view is a pure function of one.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/status_snapshot.h"
#include "printing.h"

using namespace arpguard;
using nlohmann::json;

namespace {

constexpr double kNow = 1'800'000'000;

const ReasonKind kAllKinds[] = {
    ReasonKind::kDraining,         ReasonKind::kNoVips,          ReasonKind::kStale,
    ReasonKind::kObserveFailed,    ReasonKind::kSysctlWrong,     ReasonKind::kArpIgnoreExposes,
    ReasonKind::kArpAnnounceLow,   ReasonKind::kTableMissing,    ReasonKind::kTableMismatch,
    ReasonKind::kRepairFailing,    ReasonKind::kContested,       ReasonKind::kConntrackHigh,
    ReasonKind::kOrphanGuarded,    ReasonKind::kAddressUnanswered, ReasonKind::kVipClaimed,
    ReasonKind::kVipLeaked,        ReasonKind::kStateUnrecorded, ReasonKind::kVipMissing,      ReasonKind::kVipDeviceMissing,
    ReasonKind::kVipWrongAttributes, ReasonKind::kVipNotSuppressed, ReasonKind::kVipMisplaced,
    ReasonKind::kVipForeignRoute,  ReasonKind::kRedirectConfigured, ReasonKind::kCheckFailed,
};

VipStatus ready_vip(const std::string& vip) {
  return VipStatus{.vip = vip, .device = "lo", .kind = "address", .method = "both", .present = true, .ready = true, .reasons = {}, .check_ok = std::nullopt};
}

// A converged server guarding two VIPs on lo.
StatusSnapshot healthy() {
  StatusSnapshot s;
  s.version = "0.1.0";
  s.policy = "/etc/arpguard/policy.toml";
  s.method = "both";
  s.ready = true;
  s.now = kNow;
  s.state_age_seconds = 0.25;
  s.uptime_seconds = 3600;
  s.vips_total = 2;
  s.vips_ready = 2;
  s.vips = {ready_vip("192.0.2.10/32"), ready_vip("192.0.2.11/32")};
  s.interfaces = {{"eth0", 1, 2, 0, "192.0.2.1"}};
  s.tables = {{"arp arpguard", true, true, 2}};
  s.rules = {
      {"arp arpguard", "input", "drop_requests", "", "arp operation request arp daddr ip @vips counter drop", 12},
      {"arp arpguard", "output", "rewrite_sender", "eth0", "oifname \"eth0\" arp saddr ip @vips ...", 3},
  };
  return s;
}

// The same server with one VIP gone from lo.
StatusSnapshot vip_missing() {
  StatusSnapshot s = healthy();
  s.ready = false;
  s.vips_ready = 1;
  s.vips[1].ready = false;
  s.vips[1].present = false;
  s.vips[1].reasons = {not_ready(ReasonKind::kVipMissing, "vip 192.0.2.11/32 missing on lo")};
  s.reasons = s.vips[1].reasons;
  return s;
}

StatusSnapshot draining() {
  StatusSnapshot s = healthy();
  s.ready = false;
  s.draining = true;
  s.vips_ready = 0;
  s.reasons = {not_ready(ReasonKind::kDraining, "draining (arpguard drain)")};
  return s;
}

// Every field away from its default.
StatusSnapshot everything() {
  StatusSnapshot s;
  s.version = "0.1.0~rc1";
  s.policy = "/etc/arpguard/policy.toml";
  s.method = "nftables";
  s.ready = false;
  s.draining = true;
  s.reasons = {not_ready(ReasonKind::kDraining, "draining (arpguard drain)"),
               warning(ReasonKind::kConntrackHigh, "conntrack 95% full (warn at 90%)"),
               not_ready(ReasonKind::kTableMismatch, "nft table arp arpguard differs")};
  s.state_age_seconds = 1.5;
  s.uptime_seconds = 86400.5;
  s.now = kNow + 0.25;
  s.vips_total = 3;
  s.vips_ready = 1;
  s.vips_complete = false;
  s.vips = {
      VipStatus{.vip = "2001:db8::5/128", .device = "dummy0", .kind = "address", .method = "nftables", .present = true,
                .ready = false, .reasons = {not_ready(ReasonKind::kCheckFailed, "service check on 2001:db8::5 failed")},
                .check_ok = false},
      VipStatus{.vip = "10.100.0.0/24", .device = "lo", .kind = "route", .method = "both", .present = true,
                .ready = true, .reasons = {}, .check_ok = true},
  };
  s.interfaces = {{"eth0", 2, 1, 1, "192.0.2.1"}, {"eth1", 8, 2, 0, ""}};
  s.tables = {{"arp arpguard", true, false, 7}, {"ip6 arpguard", false, false, 0}};
  s.rules = {{"arp arpguard", "output", "drop_announcements", "eth1", "oifname \"eth1\" ... drop", 9},
             {"ip arpguard_nat", "prerouting", "foreign", "", "a rule arpguard did not write", 4}};
  s.repairs_total = 17;
  s.repair_failures_total = 2;
  s.cache_divergence_total = 5;
  s.audits_total = 7;
  s.recent_repairs = {{kNow - 10, "RTM_DELADDR 10.0.0.5/32 lo", {"add vip 10.0.0.5/32 dev lo", "set x 0 -> 1"}},
                      {kNow - 100, "audit", {}}};
  s.contested = {{"vip 10.0.0.5/32", 9}};
  s.conntrack = ConntrackFill{950, 1000};
  s.claims = {{"10.0.0.5/32", "02:00:00:00:00:09", "other", 3, kNow - 1.5}};
  s.metrics_vip_limit = 7;
  return s;
}

void check_same_reasons(const std::vector<Reason>& got, const std::vector<Reason>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i].kind == want[i].kind);
    CHECK(got[i].severity == want[i].severity);
    CHECK(got[i].text == want[i].text);
  }
}

// Every field of two snapshots, one by one.
void check_same(const StatusSnapshot& got, const StatusSnapshot& want) {
  CHECK(got.version == want.version);
  CHECK(got.policy == want.policy);
  CHECK(got.method == want.method);
  CHECK(got.ready == want.ready);
  CHECK(got.draining == want.draining);
  check_same_reasons(got.reasons, want.reasons);
  CHECK(got.state_age_seconds == want.state_age_seconds);
  CHECK(got.uptime_seconds == want.uptime_seconds);
  CHECK(got.now == want.now);
  CHECK(got.vips_total == want.vips_total);
  CHECK(got.vips_ready == want.vips_ready);
  CHECK(got.vips_complete == want.vips_complete);
  REQUIRE(got.vips.size() == want.vips.size());
  for (size_t i = 0; i < got.vips.size(); ++i) {
    CAPTURE(i);
    CHECK(got.vips[i].vip == want.vips[i].vip);
    CHECK(got.vips[i].device == want.vips[i].device);
    CHECK(got.vips[i].kind == want.vips[i].kind);
    CHECK(got.vips[i].method == want.vips[i].method);
    CHECK(got.vips[i].present == want.vips[i].present);
    CHECK(got.vips[i].ready == want.vips[i].ready);
    check_same_reasons(got.vips[i].reasons, want.vips[i].reasons);
    CHECK(got.vips[i].check_ok == want.vips[i].check_ok);
  }
  REQUIRE(got.interfaces.size() == want.interfaces.size());
  for (size_t i = 0; i < got.interfaces.size(); ++i) {
    CAPTURE(i);
    CHECK(got.interfaces[i].name == want.interfaces[i].name);
    CHECK(got.interfaces[i].arp_ignore == want.interfaces[i].arp_ignore);
    CHECK(got.interfaces[i].arp_announce == want.interfaces[i].arp_announce);
    CHECK(got.interfaces[i].arp_filter == want.interfaces[i].arp_filter);
    CHECK(got.interfaces[i].real_ip == want.interfaces[i].real_ip);
  }
  REQUIRE(got.tables.size() == want.tables.size());
  for (size_t i = 0; i < got.tables.size(); ++i) {
    CAPTURE(i);
    CHECK(got.tables[i].table == want.tables[i].table);
    CHECK(got.tables[i].present == want.tables[i].present);
    CHECK(got.tables[i].owned == want.tables[i].owned);
    CHECK(got.tables[i].elements == want.tables[i].elements);
  }
  REQUIRE(got.rules.size() == want.rules.size());
  for (size_t i = 0; i < got.rules.size(); ++i) {
    CAPTURE(i);
    CHECK(got.rules[i].table == want.rules[i].table);
    CHECK(got.rules[i].chain == want.rules[i].chain);
    CHECK(got.rules[i].role == want.rules[i].role);
    CHECK(got.rules[i].interface == want.rules[i].interface);
    CHECK(got.rules[i].text == want.rules[i].text);
    CHECK(got.rules[i].packets == want.rules[i].packets);
  }
  CHECK(got.repairs_total == want.repairs_total);
  CHECK(got.repair_failures_total == want.repair_failures_total);
  CHECK(got.cache_divergence_total == want.cache_divergence_total);
  CHECK(got.audits_total == want.audits_total);
  REQUIRE(got.recent_repairs.size() == want.recent_repairs.size());
  for (size_t i = 0; i < got.recent_repairs.size(); ++i) {
    CAPTURE(i);
    CHECK(got.recent_repairs[i].at == want.recent_repairs[i].at);
    CHECK(got.recent_repairs[i].cause == want.recent_repairs[i].cause);
    CHECK(got.recent_repairs[i].actions == want.recent_repairs[i].actions);
  }
  REQUIRE(got.contested.size() == want.contested.size());
  for (size_t i = 0; i < got.contested.size(); ++i) {
    CHECK(got.contested[i].resource == want.contested[i].resource);
    CHECK(got.contested[i].repairs == want.contested[i].repairs);
  }
  REQUIRE(got.conntrack.has_value() == want.conntrack.has_value());
  if (got.conntrack) {
    CHECK(got.conntrack->entries == want.conntrack->entries);
    CHECK(got.conntrack->max == want.conntrack->max);
  }
  REQUIRE(got.claims.size() == want.claims.size());
  for (size_t i = 0; i < got.claims.size(); ++i) {
    CHECK(got.claims[i].vip == want.claims[i].vip);
    CHECK(got.claims[i].mac == want.claims[i].mac);
    CHECK(got.claims[i].origin == want.claims[i].origin);
    CHECK(got.claims[i].frames == want.claims[i].frames);
    CHECK(got.claims[i].last_seen == want.claims[i].last_seen);
  }
  CHECK(got.metrics_vip_limit == want.metrics_vip_limit);
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

std::vector<std::string> lines_with(const std::string& text, const std::string& prefix) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    const std::string line = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (line.rfind(prefix, 0) == 0) out.push_back(line);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

bool has_line(const std::string& text, const std::string& line) {
  return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

// promtool's verdict on a metrics text: "" when valid and lint-clean, its
// complaints otherwise; nullopt when promtool is not installed.
std::optional<std::string> promtool_complaints(const std::string& metrics) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) return std::nullopt;
  char path[] = "/tmp/unit_core_metrics_XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(write(fd, metrics.data(), metrics.size()) == static_cast<ssize_t>(metrics.size()));
  close(fd);
  const std::string command = std::string("promtool check metrics < ") + path + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string output;
  char buffer[4096];
  size_t n = 0;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
  const int status = pclose(pipe);
  unlink(path);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return "exit status " + std::to_string(status) + ": " + output;
  return output;
}

void check_promtool_accepts(const std::string& metrics) {
  const std::optional<std::string> complaints = promtool_complaints(metrics);
  if (!complaints) {
    MESSAGE("promtool is not installed: metrics text not validated");
    return;
  }
  INFO(metrics);
  CHECK(*complaints == "");
}

}  // namespace

// ---- JSON ----

TEST_CASE("every reason kind has a name and reads back from it; unknown names read as stale") {
  for (ReasonKind kind : kAllKinds) {
    CAPTURE(static_cast<int>(kind));
    CHECK(reason_kind_from(to_string(kind)) == kind);
  }
  CHECK(to_string(ReasonKind::kVipMissing) == "vip_missing");
  CHECK(to_string(ReasonKind::kDraining) == "draining");
  CHECK(reason_kind_from("") == ReasonKind::kStale);
  CHECK(reason_kind_from("vip missing") == ReasonKind::kStale);
  CHECK(reason_kind_from("VIP_MISSING") == ReasonKind::kStale);
}

TEST_CASE("to_json then status_from_json gives back every field") {
  const StatusSnapshot original = everything();
  check_same(status_from_json(to_json(original)), original);
}

TEST_CASE("the JSON text round-trips too: dump, parse, read") {
  const StatusSnapshot original = everything();
  const std::string text = dump_json(to_json(original));
  check_same(status_from_json(json::parse(text)), original);
  // Indented or not, the same document.
  CHECK(json::parse(dump_json(to_json(original), 2)) == json::parse(text));
}

TEST_CASE("a healthy snapshot round-trips, with absent optionals staying absent") {
  const StatusSnapshot original = healthy();
  const json j = to_json(original);
  CHECK_FALSE(j.contains("conntrack"));
  CHECK_FALSE(j["vips"][0].contains("check_ok"));
  const StatusSnapshot back = status_from_json(j);
  check_same(back, original);
  CHECK(back.ready);
  CHECK(back.reasons.empty());
}

TEST_CASE("to_json rounds ages: state age to the millisecond, uptime to a tenth") {
  StatusSnapshot s = healthy();
  s.state_age_seconds = 0.12345;
  s.uptime_seconds = 12.34;
  const json j = to_json(s);
  CHECK(j["state_age_seconds"].get<double>() == 0.123);
  CHECK(j["uptime_seconds"].get<double>() == 12.3);
}

TEST_CASE("status_from_json never throws and fails closed: garbage reads as not ready, with a reason") {
  const char* garbage[] = {
      "null",
      "42",
      "\"ready\"",
      "true",
      "[]",
      "[{\"ready\": true}]",
      "{}",
      "{\"ready\": \"yes\"}",
      "{\"ready\": 1}",
      "{\"ready\": null}",
      "{\"ready\": false, \"reasons\": \"all fine\"}",
      "{\"ready\": false, \"reasons\": {}}",
      "{\"vips\": 5, \"interfaces\": \"eth0\", \"tables\": {}, \"rules\": null}",
      "{\"vips\": [5, \"x\", null, [], {\"address\": 7, \"ready\": \"yes\", \"reasons\": 3, \"check_ok\": \"no\"}]}",
      "{\"repairs\": 5, \"contested\": {}, \"claims\": 1}",
      "{\"repairs\": {\"total\": \"x\", \"recent\": [1, {\"at\": \"now\", \"actions\": [1, 2]}, {\"actions\": \"x\"}]}}",
      "{\"conntrack\": 5}",
      "{\"conntrack\": {\"entries\": \"many\"}}",
      "{\"contested\": [{\"repairs\": \"x\", \"resource\": []}, 3]}",
      "{\"claims\": [{\"frames\": -1, \"last_seen\": \"x\"}, null]}",
      "{\"metrics_vip_limit\": \"x\", \"now\": \"x\", \"vips_total\": -1, \"vips_complete\": 0}",
      "{\"interfaces\": [{\"name\": 1, \"arp_ignore\": \"1\"}, 7]}",
  };
  for (const char* text : garbage) {
    CAPTURE(std::string(text));
    const json j = json::parse(text);
    StatusSnapshot s;
    CHECK_NOTHROW(s = status_from_json(j));
    CHECK_FALSE(s.ready);
    REQUIRE_FALSE(s.reasons.empty());
    CHECK(s.reasons[0].severity == Severity::kNotReady);
    CHECK(s.reasons[0].kind == ReasonKind::kStale);
    CHECK(status_exit_code(s) == 2);
    CHECK(first_line(render_status_text(s)).rfind("ARPGUARD CRITICAL - not ready: ", 0) == 0);
    CHECK_NOTHROW(render_metrics(s));
  }
}

TEST_CASE("a snapshot that is not ready and gives no reason says arpguardd did not say why") {
  const StatusSnapshot s = status_from_json(json::parse("{\"ready\": false}"));
  check_same_reasons(s.reasons, {not_ready(ReasonKind::kStale, "arpguardd did not say why it is not ready")});
  CHECK(first_line(render_status_text(s)).rfind("ARPGUARD CRITICAL - not ready: arpguardd did not say why it is not ready |", 0) == 0);
}

TEST_CASE("mistyped entries inside arrays take defaults that fail closed") {
  const StatusSnapshot s = status_from_json(json::parse(
      R"({"ready": false, "reasons": [7, {"kind": "vip_missing"}, {"kind": "no_such_kind", "severity": "warning", "text": "t"}],
          "vips": [5, {"address": "192.0.2.10/32", "ready": "yes", "check_ok": "no"}]})"));
  check_same_reasons(s.reasons, {not_ready(ReasonKind::kStale, "?"), not_ready(ReasonKind::kVipMissing, "?"),
                                 warning(ReasonKind::kStale, "t")});
  REQUIRE(s.vips.size() == 2);
  CHECK(s.vips[0].vip == "?");
  CHECK_FALSE(s.vips[0].ready);
  CHECK(s.vips[1].vip == "192.0.2.10/32");
  CHECK_FALSE(s.vips[1].ready);
  CHECK(s.vips[1].check_ok == false);
}

TEST_CASE("invalid UTF-8 and control bytes in any string still make valid JSON") {
  const std::string hostile = "eth\xff\x01";
  StatusSnapshot s = everything();
  s.version = s.policy = s.method = hostile;
  s.reasons[0].text = hostile;
  s.vips[0].vip = s.vips[0].device = s.vips[0].kind = s.vips[0].method = hostile;
  s.vips[0].reasons[0].text = hostile;
  s.interfaces[0].name = s.interfaces[0].real_ip = hostile;
  s.tables[0].table = hostile;
  s.rules[0].table = s.rules[0].chain = s.rules[0].role = s.rules[0].interface = s.rules[0].text = hostile;
  s.recent_repairs[0].cause = hostile;
  s.recent_repairs[0].actions = {hostile};
  s.contested[0].resource = hostile;
  s.claims[0].vip = s.claims[0].mac = s.claims[0].origin = hostile;

  const std::string text = dump_json(to_json(s));
  // Control bytes are escaped.
  CHECK(std::none_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; }));
  json parsed;
  REQUIRE_NOTHROW(parsed = json::parse(text));  // nlohmann refuses invalid UTF-8
  // Strings that go through printable() come out as \xNN escapes.
  CHECK(parsed["interfaces"][0]["name"] == "eth\\xff\\x01");
  CHECK(parsed["vips"][0]["device"] == "eth\\xff\\x01");
  CHECK(parsed["reasons"][0]["text"] == "eth\\xff\\x01");
  CHECK(parsed["rules"][0]["text"] == "eth\\xff\\x01");
  CHECK(parsed["repairs"]["recent"][0]["actions"][0] == "eth\\xff\\x01");
  CHECK(parsed["contested"][0]["resource"] == "eth\\xff\\x01");
  // And the snapshot read back renders valid text and metrics.
  const StatusSnapshot back = status_from_json(parsed);
  CHECK(back.interfaces[0].name == "eth\\xff\\x01");
  check_promtool_accepts(render_metrics(back));
}

TEST_CASE("printable() keeps valid UTF-8 and escapes everything else as \\xNN") {
  struct Case {
    const char* name;
    std::string in;
    std::string out;
  };
  const Case cases[] = {
      {"plain ASCII", "vip 10.0.0.5/32 missing on lo", "vip 10.0.0.5/32 missing on lo"},
      {"empty", "", ""},
      {"an interface name with a bad byte and a control byte", "eth\xff\x01", "eth\\xff\\x01"},
      {"newline and carriage return", "a\nb\r", "a\\x0ab\\x0d"},
      {"tab", "a\tb", "a\\x09b"},
      {"NUL", std::string("a\0b", 3), "a\\x00b"},
      {"DEL", "a\x7f", "a\\x7f"},
      {"two-byte UTF-8", "caf\xc3\xa9", "caf\xc3\xa9"},
      {"three-byte UTF-8", "\xe2\x82\xac", "\xe2\x82\xac"},
      {"four-byte UTF-8", "\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"},
      {"a sequence cut short at the end", "x\xc3", "x\\xc3"},
      {"a sequence cut short by ASCII", "\xe2\x82x", "\\xe2\\x82x"},
      {"an overlong slash", "\xc0\xaf", "\\xc0\\xaf"},
      {"an overlong three-byte NUL", "\xe0\x80\x80", "\\xe0\\x80\\x80"},
      {"a UTF-16 surrogate", "\xed\xa0\x80", "\\xed\\xa0\\x80"},
      {"beyond U+10FFFF", "\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"},
      {"a lone continuation byte", "\x80", "\\x80"},
      {"five-byte lead", "\xf8\x88\x80\x80\x80", "\\xf8\\x88\\x80\\x80\\x80"},
      {"a backslash stays itself", "a\\b", "a\\b"},
  };
  for (const Case& c : cases) {
    CAPTURE(std::string(c.name));
    CHECK(printable(c.in) == c.out);
  }
}

// ---- exit code ----

TEST_CASE("status_exit_code: OK, WARNING and CRITICAL decided from typed reasons, never from their text") {
  struct Case {
    const char* name;
    StatusSnapshot snapshot;
    int code;
  };
  auto with = [](StatusSnapshot s, auto change) {
    change(s);
    return s;
  };
  const Case cases[] = {
      {"converged", healthy(), 0},
      {"draining only", draining(), 1},
      {"draining with no reason given", with(draining(), [](StatusSnapshot& s) { s.reasons.clear(); }), 1},
      {"draining and a warning", with(draining(), [](StatusSnapshot& s) {
         s.reasons.push_back(warning(ReasonKind::kConntrackHigh, "conntrack 95% full"));
       }), 1},
      {"draining and a VIP missing", with(draining(), [](StatusSnapshot& s) {
         s.reasons.push_back(not_ready(ReasonKind::kVipMissing, "vip 192.0.2.11/32 missing on lo"));
       }), 2},
      {"ready with a warning", with(healthy(), [](StatusSnapshot& s) {
         s.reasons = {warning(ReasonKind::kVipClaimed, "vip 192.0.2.10/32 claimed by 02:00:00:00:00:09")};
       }), 1},
      {"a warning whose text says critical", with(healthy(), [](StatusSnapshot& s) {
         s.reasons = {warning(ReasonKind::kOrphanGuarded, "CRITICAL not ready contested")};
       }), 1},
      {"not ready, reason text says draining", with(vip_missing(), [](StatusSnapshot& s) {
         s.draining = true;
         s.reasons = {not_ready(ReasonKind::kVipMissing, "draining (arpguard drain)")};
       }), 2},
      {"draining, reason text says missing", with(draining(), [](StatusSnapshot& s) {
         s.reasons = {not_ready(ReasonKind::kDraining, "vip 192.0.2.11/32 missing on lo")};
       }), 1},
      {"not ready for a VIP missing", vip_missing(), 2},
      {"contested, even if ready", with(healthy(), [](StatusSnapshot& s) { s.contested = {{"vip 192.0.2.10/32", 7}}; }), 2},
      {"contested while draining", with(draining(), [](StatusSnapshot& s) { s.contested = {{"nft table arp arpguard", 6}}; }), 2},
      {"repaired 30 s ago", with(healthy(), [](StatusSnapshot& s) { s.recent_repairs = {{kNow - 30, "c", {"a"}}}; }), 1},
      {"repaired 299.9 s ago", with(healthy(), [](StatusSnapshot& s) { s.recent_repairs = {{kNow - 299.9, "c", {"a"}}}; }), 1},
      {"repaired exactly 300 s ago", with(healthy(), [](StatusSnapshot& s) { s.recent_repairs = {{kNow - 300, "c", {"a"}}}; }), 0},
      {"repaired an hour ago", with(healthy(), [](StatusSnapshot& s) { s.recent_repairs = {{kNow - 3600, "c", {"a"}}}; }), 0},
      {"the newest repair (first) decides", with(healthy(), [](StatusSnapshot& s) {
         s.recent_repairs = {{kNow - 3600, "c", {"a"}}, {kNow - 10, "c", {"a"}}};
       }), 0},
  };
  for (const Case& c : cases) {
    CAPTURE(std::string(c.name));
    CHECK(status_exit_code(c.snapshot) == c.code);
  }
}

TEST_CASE("any not-ready reason other than draining is CRITICAL, any warning alone is WARNING") {
  for (ReasonKind kind : kAllKinds) {
    CAPTURE(std::string(to_string(kind)));
    StatusSnapshot not_ready_snapshot = healthy();
    not_ready_snapshot.ready = false;
    not_ready_snapshot.reasons = {not_ready(kind, "some reason")};
    // Not draining: even a kDraining reason is not "only draining".
    CHECK(status_exit_code(not_ready_snapshot) == 2);

    StatusSnapshot draining_too = not_ready_snapshot;
    draining_too.draining = true;
    CHECK(status_exit_code(draining_too) == (kind == ReasonKind::kDraining ? 1 : 2));

    StatusSnapshot warned = healthy();
    warned.reasons = {warning(kind, "some warning")};
    CHECK(status_exit_code(warned) == 1);
  }
}

// ---- monitoring-plugin text ----

TEST_CASE("the status text's first line: state, summary and perfdata") {
  struct Case {
    const char* name;
    StatusSnapshot snapshot;
    const char* line;
  };
  auto with = [](StatusSnapshot s, auto change) {
    change(s);
    return s;
  };
  const Case cases[] = {
      {"OK", healthy(),
       "ARPGUARD OK - 2/2 VIPs ready, method both | vips=2;;;0 ready_vips=2;;;0 repairs=0c repair_failures=0c "
       "dropped_requests=12c contested=0;;;0"},
      {"WARNING while draining", draining(),
       "ARPGUARD WARNING - draining; 2 VIP(s) held | vips=2;;;0 ready_vips=0;;;0 repairs=0c repair_failures=0c "
       "dropped_requests=12c contested=0;;;0"},
      {"CRITICAL names the first reason that is not draining", with(vip_missing(), [](StatusSnapshot& s) {
         s.draining = true;
         s.reasons = {not_ready(ReasonKind::kDraining, "draining (arpguard drain)"),
                      warning(ReasonKind::kConntrackHigh, "conntrack 95% full"),
                      not_ready(ReasonKind::kVipMissing, "vip 192.0.2.11/32 missing on lo"),
                      not_ready(ReasonKind::kCheckFailed, "service check on 192.0.2.10 failed")};
       }),
       "ARPGUARD CRITICAL - not ready: vip 192.0.2.11/32 missing on lo | vips=2;;;0 ready_vips=1;;;0 repairs=0c "
       "repair_failures=0c dropped_requests=12c contested=0;;;0"},
      {"WARNING names the first warning", with(healthy(), [](StatusSnapshot& s) {
         s.reasons = {warning(ReasonKind::kConntrackHigh, "conntrack 95% full"),
                      warning(ReasonKind::kVipClaimed, "claimed")};
       }),
       "ARPGUARD WARNING - 2/2 VIPs ready, method both; conntrack 95% full | vips=2;;;0 ready_vips=2;;;0 repairs=0c "
       "repair_failures=0c dropped_requests=12c contested=0;;;0"},
      {"WARNING after a recent repair, with the counters", with(healthy(), [](StatusSnapshot& s) {
         s.recent_repairs = {{kNow - 30, "RTM_DELADDR 192.0.2.10/32 lo", {"add vip 192.0.2.10/32 dev lo"}}};
         s.repairs_total = 3;
         s.repair_failures_total = 1;
       }),
       "ARPGUARD WARNING - 2/2 VIPs ready, method both, repaired 30 s ago | vips=2;;;0 ready_vips=2;;;0 repairs=3c "
       "repair_failures=1c dropped_requests=12c contested=0;;;0"},
      {"CRITICAL when contested, counted in perfdata", with(healthy(), [](StatusSnapshot& s) {
         s.ready = false;
         s.reasons = {not_ready(ReasonKind::kContested, "vip 192.0.2.10/32 is contested (7 repairs in the window)")};
         s.contested = {{"vip 192.0.2.10/32", 7}};
       }),
       "ARPGUARD CRITICAL - not ready: vip 192.0.2.10/32 is contested (7 repairs in the window) | vips=2;;;0 "
       "ready_vips=2;;;0 repairs=0c repair_failures=0c dropped_requests=12c contested=1;;;0"},
  };
  for (const Case& c : cases) {
    CAPTURE(std::string(c.name));
    CHECK(first_line(render_status_text(c.snapshot)) == c.line);
  }
}

TEST_CASE("dropped_requests sums the drop_requests rules of every table and nothing else") {
  StatusSnapshot s = healthy();
  s.rules.push_back({"arp arpguard", "input", "drop_requests", "", "copy", 30});
  s.rules.push_back({"ip6 arpguard", "input", "drop_solicitations", "", "nd", 1000});
  s.rules.push_back({"arp arpguard", "input", "foreign", "", "x", 500});
  CHECK(first_line(render_status_text(s)).find(" dropped_requests=42c ") != std::string::npos);
}

TEST_CASE("the status text lists VIPs, reasons, interfaces and repairs, escaped") {
  StatusSnapshot s = vip_missing();
  s.interfaces[0].name = "eth\xff\x01";
  s.recent_repairs = {{kNow - 30, "RTM_DELADDR", {"add vip 192.0.2.11/32 dev lo"}}};
  s.repairs_total = 1;
  const std::string text = render_status_text(s);
  CHECK(has_line(text, "VIPs:"));
  CHECK(has_line(text, "  192.0.2.10/32        dev lo     ready"));
  CHECK(has_line(text, "  192.0.2.11/32        dev lo     NOT READY: vip 192.0.2.11/32 missing on lo"));
  CHECK(has_line(text, "Reasons:"));
  CHECK(has_line(text, "  vip 192.0.2.11/32 missing on lo"));
  CHECK(has_line(text, "  eth\\xff\\x01 arp_ignore=1 arp_announce=2 arp_filter=0  real ip 192.0.2.1"));
  CHECK(has_line(text, "Recent repairs (1 in total, 0 failed):"));
  CHECK(has_line(text, "  30 s ago, after RTM_DELADDR: add vip 192.0.2.11/32 dev lo"));
}

TEST_CASE("a status text of a bounded VIP list says how many it shows") {
  StatusSnapshot s = vip_missing();
  s.vips_total = 5000;
  s.vips_complete = false;
  s.vips.resize(1);
  CHECK(has_line(render_status_text(s), "VIPs (1 of 5000 shown; arpguard status --vips lists all):"));
}

TEST_CASE("a '|' in a reason does not start the perfdata early") {
  // A monitoring plugin's first line has one '|' only, or Nagios/Icinga read
  // the rest as perfdata; a reason may hold an interface name with '|' in it.
  StatusSnapshot s = vip_missing();
  s.reasons = {not_ready(ReasonKind::kVipMissing, "vip 192.0.2.11/32 missing on a|b")};
  const std::string line = first_line(render_status_text(s));
  CHECK(std::count(line.begin(), line.end(), '|') == 1);
}

// ---- Prometheus ----

TEST_CASE("promtool, when installed, refuses broken exposition text (so its silence means something)") {
  const std::optional<std::string> unterminated = promtool_complaints("# TYPE x gauge\nx{a=\"b} 1\n");
  const std::optional<std::string> newline_in_label = promtool_complaints("# TYPE x gauge\nx{a=\"b\nc\"} 1\n");
  if (!unterminated) {
    MESSAGE("promtool is not installed");
    return;
  }
  CHECK(*unterminated != "");
  CHECK(*newline_in_label != "");
  CHECK(*promtool_complaints("# HELP x A gauge.\n# TYPE x gauge\nx{a=\"b\\\"\\\\\\n\"} 1\n") == "");
}

TEST_CASE("metrics of a healthy server are valid Prometheus text with the per-VIP series") {
  const std::string metrics = render_metrics(healthy());
  check_promtool_accepts(metrics);
  CHECK(has_line(metrics, "arpguard_build_info{version=\"0.1.0\"} 1"));
  CHECK(has_line(metrics, "arpguard_ready 1"));
  CHECK(has_line(metrics, "arpguard_draining 0"));
  CHECK(has_line(metrics, "arpguard_state_age_seconds 0.250"));
  CHECK(has_line(metrics, "arpguard_vips 2"));
  CHECK(has_line(metrics, "arpguard_vips_ready 2"));
  CHECK(lines_with(metrics, "arpguard_vip_ready{") ==
        std::vector<std::string>{"arpguard_vip_ready{vip=\"192.0.2.10/32\",device=\"lo\",method=\"both\"} 1",
                                 "arpguard_vip_ready{vip=\"192.0.2.11/32\",device=\"lo\",method=\"both\"} 1"});
  CHECK(lines_with(metrics, "arpguard_vip_present{") ==
        std::vector<std::string>{"arpguard_vip_present{vip=\"192.0.2.10/32\",device=\"lo\"} 1",
                                 "arpguard_vip_present{vip=\"192.0.2.11/32\",device=\"lo\"} 1"});
  CHECK(has_line(metrics, "arpguard_interface_arp_ignore{interface=\"eth0\"} 1"));
  CHECK(has_line(metrics, "arpguard_interface_arp_announce{interface=\"eth0\"} 2"));
  CHECK(has_line(metrics, "arpguard_arp_requests_dropped_total 12"));
  CHECK(has_line(metrics, "arpguard_arp_sender_rewrites_total{interface=\"eth0\"} 3"));
  CHECK(has_line(metrics, "arpguard_nd_dropped_total{direction=\"in\"} 0"));
  CHECK(has_line(metrics, "# TYPE arpguard_repairs_total counter"));
  CHECK(has_line(metrics, "arpguard_uptime_seconds 3600.0"));
  // No conntrack read: no redirect series.
  CHECK(metrics.find("arpguard_conntrack_entries") == std::string::npos);
}

TEST_CASE("metrics of a snapshot with every field are valid Prometheus text") {
  const std::string metrics = render_metrics(everything());
  check_promtool_accepts(metrics);
  CHECK(has_line(metrics, "arpguard_conntrack_entries 950"));
  CHECK(has_line(metrics, "arpguard_conntrack_max 1000"));
  CHECK(has_line(metrics, "arpguard_redirected_packets_total{family=\"ipv4\"} 0"));
  CHECK(has_line(metrics, "arpguard_vip_claims_total{vip=\"10.0.0.5/32\",mac=\"02:00:00:00:00:09\",origin=\"other\"} 3"));
  CHECK(has_line(metrics, "arpguard_contested_resources 1"));
  CHECK(has_line(metrics, "arpguard_cache_divergence_total 5"));
  CHECK(has_line(metrics, "arpguard_audits_total 7"));
  CHECK(has_line(metrics, "arpguard_repair_failures_total 2"));
  CHECK(has_line(metrics, "arpguard_arp_sender_rewrites_total{interface=\"eth1\"} 9"));
}

TEST_CASE("per-VIP series only up to metrics_vip_limit and only from a complete list; aggregates always") {
  struct Case {
    const char* name;
    uint64_t vips_total;
    int limit;
    bool complete;
    bool per_vip;
  };
  const Case cases[] = {
      {"below the limit", 2, 1000, true, true},
      {"at the limit", 2, 2, true, true},
      {"over the limit", 2, 1, true, false},
      {"a limit of 0", 2, 0, true, false},
      {"an incomplete list", 2, 1000, false, false},
  };
  for (const Case& c : cases) {
    CAPTURE(std::string(c.name));
    StatusSnapshot s = healthy();
    s.vips_total = c.vips_total;
    s.metrics_vip_limit = c.limit;
    s.vips_complete = c.complete;
    const std::string metrics = render_metrics(s);
    check_promtool_accepts(metrics);
    CHECK(lines_with(metrics, "arpguard_vip_ready{").size() == (c.per_vip ? 2u : 0u));
    CHECK(lines_with(metrics, "arpguard_vip_present{").size() == (c.per_vip ? 2u : 0u));
    CHECK(has_line(metrics, "arpguard_vips " + std::to_string(c.vips_total)));
    CHECK(has_line(metrics, "arpguard_vips_ready 2"));
  }
}

TEST_CASE("label values escape quote, backslash and newline, and stay valid Prometheus text") {
  StatusSnapshot s = healthy();
  s.vips[0].device = "a\"b\\c\nd";
  s.interfaces[0].name = "e\"\\\n\xff";
  s.version = "1\"2";
  const std::string metrics = render_metrics(s);
  check_promtool_accepts(metrics);
  CHECK(has_line(metrics, R"(arpguard_vip_present{vip="192.0.2.10/32",device="a\"b\\c\\x0ad"} 1)"));
  CHECK(has_line(metrics, R"(arpguard_interface_arp_filter{interface="e\"\\\\x0a\\xff"} 0)"));
  CHECK(has_line(metrics, R"(arpguard_build_info{version="1\"2"} 1)"));
}

// ---- HAProxy agent check ----

TEST_CASE("the agent-check line: up when ready, drain when only draining, down with the reason") {
  struct Case {
    const char* name;
    bool ready;
    bool only_draining;
    std::string reason;
    std::string line;
  };
  const Case cases[] = {
      {"ready", true, false, "", "up ready 100%\n"},
      {"ready wins over anything else", true, true, "draining", "up ready 100%\n"},
      {"only draining", false, true, "draining (arpguard drain)", "drain\n"},
      {"not ready", false, false, "vip 192.0.2.11/32 missing on lo", "down #vip 192.0.2.11/32 missing on lo\n"},
      {"not ready without a reason", false, false, "", "down #not ready\n"},
      {"newlines in the reason are not line breaks", false, false, "a\nb\r\nc", "down #a\\x0ab\\x0d\\x0ac\n"},
      {"a long reason is cut to 200 bytes", false, false, std::string(1000, 'x'),
       "down #" + std::string(200, 'x') + "\n"},
      {"escapes count towards the bound", false, false, std::string(300, '\n'),
       "down #" + [] {
         std::string s;
         for (int i = 0; i < 50; ++i) s += "\\x0a";
         return s;
       }() + "\n"},
  };
  for (const Case& c : cases) {
    CAPTURE(std::string(c.name));
    const std::string line = agent_check_line(c.ready, c.only_draining, c.reason);
    CHECK(line == c.line);
    CHECK(std::count(line.begin(), line.end(), '\n') == 1);
  }
}

TEST_CASE("a reason cut to length does not split a UTF-8 character") {
  // The agent-check line is cut to 200 bytes on a UTF-8 character boundary:
  // HAProxy shows the text in its stats page and logs.
  const std::string line = agent_check_line(false, false, std::string(199, 'x') + "\xc3\xa9");
  CHECK(printable(line.substr(0, line.size() - 1)) == line.substr(0, line.size() - 1));
}
