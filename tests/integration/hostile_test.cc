// Hostile peers and operator mistakes (issue 8), each played as the user or
// the attacker would play it, and judged by what they would see: exit codes,
// messages, kernel state, ARP on the wire and HTTP answers from the client.
// Every case name starts with "hostile:" (-tc='*hostile*').
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <sstream>

#include "guarded.h"
#include "hostile_peer.h"
#include "tests/unit/printing.h"

using namespace arpguard::testing;

namespace {

const char* const kVip = "192.0.2.10";
const std::string kReadiness =
    "[readiness]\nlisten = [\"192.0.2.1:9480\"]\nagent_check_listen = [\"192.0.2.1:9777\"]\n";
const std::string kOneVip = "[[vip]]\naddress = \"192.0.2.10\"\n";

bool starts_with(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }
bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

/// Whether `done` holds within 5 s, asked every 50 ms.
bool eventually(const std::function<bool()>& done) {
  for (int i = 0; i < 100; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

size_t count_lines(const std::string& text) {
  size_t n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

// A real server and its client; arpguardd started in the real server's
// namespace, exactly as an operator starts it from a plain shell.
struct Hostile : Guarded {
  Hostile() : peer(write_hostile_peer(dir)) {}

  /// Starts arpguardd on `policy` (through `wrapper`, a command run inside the
  /// namespace that ends by exec'ing arpguardd) and waits for `until` in its log.
  void start(const std::string& policy, const std::string& until = "ready:", const std::string& wrapper = "") {
    daemon = std::make_unique<Process>(segment.rs.prefix() + wrapper + arpguardd_bin() + " --policy " + policy,
                                       dir.path() + "/arpguardd.log");
    REQUIRE(daemon->wait_for_log(until, 5));
  }
  /// Starts arpguardd on `policy` with its stderr redirected (`redirect`, a
  /// shell redirection such as "2>/dev/full"): no log to wait for, so it
  /// waits until status answers OK.
  void start_with_stderr(const std::string& policy, const std::string& redirect) {
    daemon = std::make_unique<Process>(
        segment.rs.prefix() + "sh -c 'exec " + arpguardd_bin() + " --policy " + policy + " " + redirect + "'",
        dir.path() + "/arpguardd.log");
    REQUIRE(eventually([&] { return status().exit_code == 0; }));
  }
  /// Runs another arpguardd in the real server's namespace to its end (at most 5 s).
  CommandResult run_daemon(const std::string& policy) const {
    return segment.rs.exec("timeout 5 " + arpguardd_bin() + " --policy " + policy);
  }

  /// "CODE\nBODY" of a GET from the client, as keepalived's HTTP_GET would make it.
  std::string http(const std::string& path) const {
    const std::string body = dir.path() + "/http.body";
    return segment.client
        .exec("curl -s -m 5 -w '%{http_code}' -o " + body + " http://192.0.2.1:9480" + path + "; echo; cat " + body)
        .out;
  }
  CommandResult status(const std::string& flags = "") const {
    return run(arpguard_bin() + " status --socket " + control_socket() + " " + flags);
  }
  std::string agent_check() const {
    return segment.client.exec(peer + " raw --tcp 192.0.2.1:9777").out;
  }
  /// Bytes the daemon answers on its control socket to `text` (Python escapes).
  std::string control_raw(const std::string& text, const std::string& flags = "") const {
    return run(peer + " raw --unix " + control_socket() + " --send " + quote(text) + " " + flags).out;
  }
  /// Bytes the daemon answers over HTTP to `text`, sent from the client.
  std::string http_raw(const std::string& text) const {
    return segment.client.exec(peer + " raw --tcp 192.0.2.1:9480 --send " + quote(text)).out;
  }
  /// The scope of `vip` on lo ("host", "global"), "" when it is not there.
  std::string scope_on_lo(const std::string& vip) const {
    for (const auto& link : nlohmann::json::parse(segment.rs.must("ip -j -4 addr show dev lo"))) {
      for (const auto& info : link["addr_info"]) {
        if (info["local"] == vip) return info["scope"].get<std::string>();
      }
    }
    return "";
  }
  /// `pid` is an arpguardd that runs (not gone, not a zombie).
  bool daemon_alive(pid_t pid) const {
    const std::string proc = "/proc/" + std::to_string(pid);
    return read_text(proc + "/comm") == "arpguardd\n" && !contains(read_text(proc + "/status"), "State:\tZ");
  }
  /// The whole default protection of one VIP: on lo, sysctls on all, the table with its element.
  bool guarded(const std::string& vip = kVip) const {
    return has_address("lo", vip + "/32") && sysctl("all/arp_ignore") == 1 && sysctl("all/arp_announce") == 2 &&
           table_exists() && any_line_contains(set_elements(), vip);
  }
  /// Nothing of arpguard in the real server: no table, sysctls at the kernel's defaults, no VIP.
  bool untouched() const {
    return !table_exists() && sysctl("all/arp_ignore") == 0 && sysctl("all/arp_announce") == 0 &&
           !has_address("lo", std::string(kVip) + "/32") && !has_address("eth0", std::string(kVip) + "/32");
  }

  std::string peer;
  std::unique_ptr<Process> daemon;
};

std::vector<std::string> rs_macs(const std::vector<std::string>& replies) {
  std::vector<std::string> out;
  for (const std::string& mac : replies) {
    if (mac == Segment::kRsMac) out.push_back(mac);
  }
  return out;
}

}  // namespace

// ---- 1 ----------------------------------------------------------------------

TEST_CASE("hostile: a VIP added by hand at scope global under arp_ignore=3 is moved to scope host") {
  Hostile h;
  // Given the VIP on lo as the guides add it, and arp_ignore=3 set by hand.
  h.segment.rs.must("ip addr add 192.0.2.10/32 dev lo && sysctl -qw net.ipv4.conf.all.arp_ignore=3");
  REQUIRE(h.scope_on_lo(kVip) == "global");
  // Control: arp_ignore=3 answers for a global-scope address, and arping catches it.
  REQUIRE_FALSE(rs_macs(h.segment.arp_replies(kVip)).empty());

  // The sysctl layer alone hides it here: scope host is what arp_ignore=3 needs.
  const std::string policy = h.write_policy("[arp]\nmethod = \"sysctl\"\narp_ignore = 3\n" + kOneVip);
  CommandResult apply = h.apply(policy);
  CHECK(apply.exit_code == 0);
  // Someone else's address, put right: not recorded as arpguard's.
  CHECK(contains(apply.out, "add vip 192.0.2.10/32 dev lo scope host (there before arpguard: not its own)\n"));
  CHECK(h.scope_on_lo(kVip) == "host");
  CHECK(h.sysctl("all/arp_ignore") == 3);
  CHECK(h.segment.arp_replies(kVip).empty());
  CHECK(h.apply(policy).out == "converged: 0 action(s) applied\n");

  // Back to scope global by hand; the daemon converges at start...
  h.segment.rs.must("ip addr del 192.0.2.10/32 dev lo && ip addr add 192.0.2.10/32 dev lo scope global");
  REQUIRE(h.scope_on_lo(kVip) == "global");
  h.start(policy);
  CHECK(h.scope_on_lo(kVip) == "host");
  CHECK(contains(h.daemon->log(), "apply: add vip 192.0.2.10/32 dev lo scope host (there before arpguard: not its own)\n"));
  CHECK(h.segment.arp_replies(kVip).empty());

  // ...and when someone swaps it for a global one while it runs (one ip batch; the add
  // fails if arpguardd is quicker, which ends the same way).
  h.segment.rs.exec("printf 'addr del 192.0.2.10/32 dev lo\\naddr add 192.0.2.10/32 dev lo scope global\\n' | "
                    "ip -force -batch -");
  CHECK(h.daemon->wait_for_log("repair after", 2));
  CHECK(eventually([&] { return h.scope_on_lo(kVip) == "host"; }, 2));
  CHECK(h.segment.arp_replies(kVip).empty());
}

// ---- 2 ----------------------------------------------------------------------

TEST_CASE("hostile: a VIP on eth0 is refused with method sysctl, and hidden by nftables alone with method both") {
  Hostile h;
  const std::string sysctl_only =
      h.write_policy("[arp]\nmethod = \"sysctl\"\n[[vip]]\naddress = \"192.0.2.10\"\ndevice = \"eth0\"\n");
  const std::string error = sysctl_only + ":8:10: vip.device: no layer of method \"sysctl\" hides a VIP on eth0";
  CommandResult check = h.segment.rs.exec(arpguard_bin() + " check-config " + sysctl_only);
  CHECK(check.exit_code == 1);
  CHECK(starts_with(check.err, error));
  CommandResult daemon = h.run_daemon(sysctl_only);
  CHECK(daemon.exit_code == 1);
  CHECK(starts_with(daemon.err, "<3>" + error));
  CommandResult apply = h.apply(sysctl_only);
  CHECK(apply.exit_code == 1);
  CHECK(contains(apply.err, error));
  CHECK(h.untouched());

  // Control: an address on eth0 is answered by the real server, and arping sees it.
  h.segment.rs.must("ip addr add 192.0.2.10/32 dev eth0");
  REQUIRE_FALSE(rs_macs(h.segment.arp_replies(kVip)).empty());
  h.segment.rs.must("ip addr del 192.0.2.10/32 dev eth0 && ip neigh flush dev eth0");
  h.segment.client.must("ip neigh flush dev eth0");

  const std::string both = h.write_policy("[arp]\nmethod = \"both\"\n[[vip]]\naddress = \"192.0.2.10\"\ndevice = \"eth0\"\n");
  const std::string warning = both + ":8:10: vip.device: 192.0.2.10/32 on eth0 is protected by the nftables layer alone";
  check = h.segment.rs.exec(arpguard_bin() + " check-config " + both);
  CHECK(check.exit_code == 0);
  CHECK(check.out == both + ": valid (1 VIP(s), method both)\n");
  CHECK(starts_with(check.err, warning));
  ArpCapture capture(h.segment.client, "eth0", h.dir.path() + "/capture.log");
  h.start(both);
  CHECK(starts_with(h.daemon->log(), "<4>" + warning));
  CHECK(h.has_address("eth0", "192.0.2.10/32"));
  CHECK(h.set_elements() == std::vector<std::string>{kVip});
  CHECK(h.segment.arp_replies(kVip).empty());
  // The real server, asked and asking, never gives the VIP away on the wire.
  h.segment.rs.exec("ping -c 1 -W 0.2 -I 192.0.2.10 192.0.2.2");
  const std::vector<std::string> frames = capture.stop();
  CHECK(any_line_contains(frames, "who-has 192.0.2.10 tell 192.0.2.2"));
  CHECK(any_line_contains(frames, "tell 192.0.2.1,"));  // its own ARP, sent from the real IP
  for (const std::string& frame : frames) {
    CAPTURE(frame);
    CHECK_FALSE(contains(frame, "192.0.2.10 is-at"));
    CHECK_FALSE(contains(frame, "tell 192.0.2.10"));
  }
}

// ---- 3 ----------------------------------------------------------------------

TEST_CASE("hostile: idle and trickling peers by the hundred delay neither a repair nor /ready") {
  Hostile h;
  h.start(h.write_policy(kOneVip + kReadiness));
  const pid_t pid = h.daemon->pid();
  const auto open_fds = [&] { return std::stoul(run("ls /proc/" + std::to_string(pid) + "/fd | wc -l").out); };
  const unsigned long fds_before = open_fds();

  Process control_idle(h.peer + " hold --unix " + h.control_socket() + " --count 12", h.dir.path() + "/idle_control.log");
  Process http_idle(h.segment.client.prefix() + h.peer + " hold --tcp 192.0.2.1:9480 --count 200 --trickle 50 --interval 0.2",
                    h.dir.path() + "/idle_http.log");
  REQUIRE(control_idle.wait_for_log("holding 12", 5));
  REQUIRE(http_idle.wait_for_log("holding 250", 5));
  // The daemon holds every one of them meanwhile.
  CHECK(open_fds() >= fds_before + 262);

  Process monitor(h.segment.rs.prefix() + "ip -ts monitor address dev lo", h.dir.path() + "/monitor.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  h.segment.rs.must("ip addr del 192.0.2.10/32 dev lo");
  REQUIRE(eventually([&] { return h.has_address("lo", "192.0.2.10/32"); }, 2));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  monitor.signal(SIGTERM);
  monitor.wait(2);

  // From the kernel's own timestamps: the deletion, then the VIP's return.
  std::vector<double> times;
  std::istringstream lines(monitor.log());
  for (std::string line; std::getline(lines, line);) {
    if (!contains(line, "inet 192.0.2.10/32")) continue;
    // "[2025-01-01T12:34:56.789012] Deleted 1: lo    inet 192.0.2.10/32 ..."; a message
    // filtered out leaves its timestamp alone at the start of the next line.
    const size_t t = line.find('T', line.rfind('[', line.find("inet")));
    REQUIRE(t != std::string::npos);
    times.push_back(std::stod(line.substr(t + 1, 2)) * 3600 + std::stod(line.substr(t + 4, 2)) * 60 +
                    std::stod(line.substr(t + 7, 9)));
  }
  CAPTURE(monitor.log());
  REQUIRE(times.size() == 2);
  const double repair_seconds = times[1] - times[0];
  MESSAGE("VIP deleted to VIP back: " << repair_seconds * 1000 << " ms under load");
  CHECK(repair_seconds < 0.3);

  const std::string curl = h.segment.client.exec(
      "curl -s -m 5 -o /dev/null -w '%{http_code} %{time_total}' http://192.0.2.1:9480/ready").out;
  CAPTURE(curl);
  CHECK(starts_with(curl, "200 "));
  CHECK(std::stod(curl.substr(4)) < 0.1);
  CHECK(h.status().exit_code == 1);  // the control socket answers too (WARNING: repaired just now)
  CHECK(h.daemon->running());
}

// ---- 4 ----------------------------------------------------------------------

TEST_CASE("hostile: clients that hang up before their reply do not kill the daemon (SIGPIPE)") {
  Hostile h;
  std::string vips;
  for (int i = 10; i < 74; ++i) vips += "[[vip]]\naddress = \"192.0.2." + std::to_string(i) + "\"\n";  // a long reply
  // A plain shell, and SIGPIPE at its default disposition when arpguardd starts.
  h.start(h.write_policy(vips + kReadiness), "ready:", "env --default-signal=PIPE ");
  const pid_t pid = h.daemon->pid();
  REQUIRE(h.daemon_alive(pid));

  CHECK(run(h.peer + " hangup --unix " + h.control_socket() + " --count 200 --send 'status vips\\n'").out ==
        "hung up 200\n");
  CHECK(h.segment.client
            .exec(h.peer + " hangup --tcp 192.0.2.1:9480 --count 200 --reset --send "
                           "'GET /status/vips HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'")
            .out == "hung up 200\n");
  CHECK(h.segment.client.exec(h.peer + " hangup --tcp 192.0.2.1:9777 --count 200 --reset").out == "hung up 200\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));

  CHECK(h.daemon->running());
  CHECK(h.daemon_alive(pid));
  CommandResult status = h.status();
  CHECK(status.exit_code == 0);
  CHECK(starts_with(status.out, "ARPGUARD OK - 64/64 VIPs ready"));
  CHECK(starts_with(h.http("/status/vips"), "200\n{"));
  CHECK(h.http("/ready") == "200\nready\n");
  CHECK(h.agent_check() == "up ready 100%\n");
}

// ---- 5 ----------------------------------------------------------------------

TEST_CASE("hostile: invalid bytes on the control socket and in HTTP each get their error; the daemon lives") {
  Hostile h;
  h.start(h.write_policy(kOneVip + kReadiness));
  const std::string invalid = "{\"ok\":false,\"error\":\"invalid bytes in command\"}\n";
  CHECK(h.control_raw("stat\\x00us\\n") == invalid);
  CHECK(h.control_raw("status\\x80\\xff\\n") == invalid);
  CHECK(h.control_raw("\\xc3\\xa9tat\\n") == invalid);  // valid UTF-8, still not a command
  CHECK(h.control_raw(std::string(300, 'a') + "\\n") == "{\"ok\":false,\"error\":\"command too long\"}\n");
  // No newline, write side shut: the bytes sent are the command.
  CHECK(h.control_raw("frobnicate", "--shut") ==
        "{\"error\":\"unknown command 'frobnicate' (status, status vips, drain, resume, reload)\",\"ok\":false}\n");
  const nlohmann::json status = nlohmann::json::parse(h.control_raw("status", "--shut"));
  CHECK(status["vips_total"] == 1);
  // No newline and nothing more: closed at its deadline, unanswered.
  const double before = now_seconds();
  CHECK(h.control_raw("status", "--timeout 4") == "");
  CHECK(now_seconds() - before < 3.5);

  auto status_line = [](const std::string& response) { return first_line(response); };
  const std::string bad_line = h.http_raw("GET /re\\x80dy HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n");
  CHECK(status_line(bad_line) == "HTTP/1.1 400 Bad Request\r");
  CHECK(contains(bad_line, "\r\n\r\nBad Request: invalid byte in request line\n"));
  const std::string nul = h.http_raw("GET /ready\\x00 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n");
  CHECK(status_line(nul) == "HTTP/1.1 400 Bad Request\r");
  CHECK(contains(nul, "Bad Request: NUL byte in request\n"));
  CHECK(status_line(h.http_raw("G\\xffT /ready HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")) == "HTTP/1.1 400 Bad Request\r");
  CHECK(status_line(h.http_raw("\\xff\\xfe\\x00\\x01\\r\\n\\r\\n")) == "HTTP/1.1 400 Bad Request\r");
  // The agent-check port reads nothing: garbage sent to it changes nothing.
  CHECK(h.segment.client.exec(h.peer + " raw --tcp 192.0.2.1:9777 --send '\\xff\\x00junk\\n'").out ==
        "up ready 100%\n");

  CHECK(h.daemon->running());
  CHECK(h.http("/ready") == "200\nready\n");
  CHECK(h.status().exit_code == 0);
}

// ---- 6 ----------------------------------------------------------------------

namespace {

// An ARP-facing interface named "eth" 0xff: the kernel allows any byte but '/',
// ':' and whitespace in a name, so a name need not be UTF-8.
struct OddInterface : Hostile {
  OddInterface() {
    start(write_policy(kOneVip + kReadiness));
    segment.rs.must("ip link add \"$(printf 'eth\\377')\" type veth peer name peer9");
    REQUIRE(segment.rs.must("ip -o link show").find("eth\xff") != std::string::npos);
    // Seen and guarded: its own output rule.
    REQUIRE(eventually([&] { return segment.rs.must("nft list chain arp arpguard output").find("eth\xff") != std::string::npos; }));
  }
};

}  // namespace

TEST_CASE("hostile: an interface name that is not UTF-8 still gives valid JSON and Prometheus text") {
  OddInterface h;
  const std::string status = h.http("/status");
  REQUIRE(starts_with(status, "200\n"));
  const std::string vips = h.http("/status/vips");
  REQUIRE(starts_with(vips, "200\n"));
  CommandResult cli = h.status("--json");
  CHECK(cli.exit_code < 2);  // OK, or WARNING for the repair the new interface caused
  for (const std::string& json : {status.substr(4), vips.substr(4), cli.out}) {
    CAPTURE(json);
    CHECK(run("printf %s " + quote(json) + " | jq -e '[.interfaces[].name] | length == 3'").exit_code == 0);
  }
  CHECK(run("printf %s " + quote(cli.out) + " | jq -r '.interfaces[].name'").out == "eth0\neth\\xff\npeer9\n");
  CommandResult text = h.status();
  CHECK(contains(text.out, "\n  eth\\xff    arp_ignore=1 arp_announce=2 arp_filter=0\n"));

  const std::string metrics = h.http("/metrics");
  REQUIRE(starts_with(metrics, "200\n"));
  CommandResult promtool = run("printf %s " + quote(metrics.substr(4)) + " | promtool check metrics");
  CHECK(promtool.exit_code == 0);
  CHECK(promtool.out + promtool.err == "");
  CHECK(contains(metrics, "\narpguard_interface_arp_ignore{interface=\"eth\\\\xff\"} 1\n"));

  CHECK(h.daemon->running());
  CHECK(h.http("/ready") == "200\nready\n");
}

TEST_CASE("hostile: interface names that are not UTF-8 or hold control bytes are logged escaped") {
  OddInterface h;
  // ESC is allowed in a name too: "e" ESC "[31mX" would recolour a terminal reading the log.
  h.segment.rs.must("ip link add \"$(printf 'e\\033[31mX')\" type veth peer name peer8");
  REQUIRE(h.daemon->wait_for_log("RTM_NEWLINK peer8", 2));
  const std::string log = h.daemon->log();
  CAPTURE(log);
  // journald keeps a message that is not UTF-8, or holds control characters, as a blob:
  // journalctl shows "[N blob data]" in place of the repair line.
  CHECK(run("iconv -f UTF-8 -t UTF-8 " + h.dir.path() + "/arpguardd.log > /dev/null").exit_code == 0);
  CHECK(log.find('\x1b') == std::string::npos);
  // What status already does: the same names, escaped.
  const std::string status = h.status().out;
  CHECK(contains(status, "eth\\xff"));
  CHECK(contains(status, "e\\x1b[31mX"));
}

// ---- 7 ----------------------------------------------------------------------

namespace {

// arpguardd in the real server's namespace, in a mount namespace of its own
// where /proc/sys is read-only (as a container or ProtectKernelTunables= gives it).
const std::string kReadOnlyProcSys =
    "unshare -m sh -c 'mount --bind /proc/sys /proc/sys && mount -o remount,ro,bind /proc/sys && exec \"$0\" \"$@\"' ";

std::string sysctl_error(const std::string& name, int value) {
  return "cannot repair sysctl net.ipv4.conf.all." + name + ": write sysctl net.ipv4.conf.all." + name + " = " +
         std::to_string(value) + ": Read-only file system";
}

}  // namespace

TEST_CASE("hostile: a read-only /proc/sys with method sysctl: not ready naming the cause, no VIP, retried with backoff") {
  Hostile h;
  h.start(h.write_policy("[arp]\nmethod = \"sysctl\"\n" + kOneVip + kReadiness, "sysctl_poll_ms = 100\n"),
          "started, not ready", kReadOnlyProcSys);
  CAPTURE(h.daemon->log());
  CHECK(contains(h.daemon->log(), "\n<3>" + sysctl_error("arp_ignore", 1)));
  CHECK(contains(h.daemon->log(), "\n<3>" + sysctl_error("arp_announce", 2)));

  const std::string ready = h.http("/ready");
  CHECK(starts_with(ready, "503\nnot ready:\n"));
  CHECK(contains(ready, "\n  " + sysctl_error("arp_ignore", 1)));
  CommandResult status = h.status();
  CHECK(status.exit_code == 2);
  CHECK(starts_with(status.out, "ARPGUARD CRITICAL - not ready: "));
  CHECK(contains(status.out, sysctl_error("arp_ignore", 1)));
  // I1: the VIP relies on the sysctls, which are not there: it is not added.
  CHECK_FALSE(h.has_address("lo", "192.0.2.10/32"));
  CHECK(h.sysctl("all/arp_ignore") == 0);
  CHECK(contains(h.daemon->log(), "<4>VIPs not added, their suppression is not verified: "));

  // Retried, with backoff: a few failed attempts in 3 s, and the log not flooded.
  auto failures = [&] {
    const std::string metrics = h.http("/metrics");
    const size_t at = metrics.find("\narpguard_repair_failures_total ");
    REQUIRE(at != std::string::npos);
    return std::stoi(metrics.substr(at + 32));
  };
  const int failures_before = failures();
  const size_t log_lines_before = count_lines(h.daemon->log());
  std::this_thread::sleep_for(std::chrono::seconds(3));
  const int attempts = failures() - failures_before;
  MESSAGE("failed repairs counted in 3 s: " << attempts << ", log lines: "
                                            << count_lines(h.daemon->log()) - log_lines_before);
  CHECK(attempts >= 2);   // still trying...
  CHECK(attempts <= 20);  // ...not in a tight loop (2 sysctls, backoff doubling from 100 ms)
  CHECK(count_lines(h.daemon->log()) - log_lines_before <= 2);
  CHECK_FALSE(h.has_address("lo", "192.0.2.10/32"));
  CHECK(h.daemon->running());
}

TEST_CASE("hostile: a read-only /proc/sys with method both: the nft layer is in place, the VIP still withheld") {
  Hostile h;
  h.start(h.write_policy(kOneVip + kReadiness), "started, not ready", kReadOnlyProcSys);
  CHECK(contains(h.daemon->log(), "\n<3>" + sysctl_error("arp_ignore", 1)));
  CHECK(h.table_exists());
  CHECK(h.set_elements() == std::vector<std::string>{kVip});
  CHECK_FALSE(h.has_address("lo", "192.0.2.10/32"));  // method both needs both layers verified
  const std::string ready = h.http("/ready");
  CHECK(starts_with(ready, "503\nnot ready:\n"));
  CHECK(contains(ready, sysctl_error("arp_ignore", 1)));
  CHECK(h.status().exit_code == 2);
  CHECK(h.segment.arp_replies(kVip).empty());
}

// ---- 8 ----------------------------------------------------------------------

namespace {

std::string dotted_key(int parts) {
  std::string key = "a";
  for (int i = 1; i < parts; ++i) key += ".a";
  return key;
}

}  // namespace

TEST_CASE("hostile: a dotted key of 100,000 parts and 10,000 nested arrays are refused, located, at once") {
  Hostile h;
  const std::string deep_key = dotted_key(100000) + " = 1\n";
  const std::string deep_arrays = "x = " + std::string(10000, '[') + std::string(10000, ']') + "\n";

  // check-config: 1 and a located error, quickly.
  const std::string key_file = h.dir.write("key.toml", kOneVip + deep_key);
  const std::string arrays_file = h.dir.write("arrays.toml", kOneVip + deep_arrays);
  double before = now_seconds();
  CommandResult key = run("timeout 10 " + arpguard_bin() + " check-config --offline " + key_file);
  CHECK(now_seconds() - before < 2);
  CHECK(key.exit_code == 1);
  CHECK(key.err == key_file + ":3:1: key has 100000 dotted parts (at most 8)\n");
  before = now_seconds();
  CommandResult arrays = run("timeout 10 " + arpguard_bin() + " check-config --offline " + arrays_file);
  CHECK(now_seconds() - before < 2);
  CHECK(arrays.exit_code == 1);
  CHECK(starts_with(arrays.err, arrays_file + ":3:"));
  CHECK(contains(arrays.err, "nested 10000 deep (at most 16)"));

  // The same text given to a running daemon, by SIGHUP and by arpguard reload.
  const std::string policy = h.write_policy(kOneVip + kReadiness);
  h.start(policy);
  const pid_t pid = h.daemon->pid();
  const std::string second_vip = "[[vip]]\naddress = \"192.0.2.11\"\n";
  const std::pair<std::string, std::string> deep_texts[] = {
      {deep_key, ":11:1: key has 100000 dotted parts (at most 8)"},
      {deep_arrays, ":11:21: arrays and inline tables nested 10000 deep (at most 16)"}};
  for (const auto& [deep, error] : deep_texts) {
    h.write_policy(kOneVip + second_vip + kReadiness + deep);
    const std::string log_before = h.daemon->log();
    h.daemon->signal(SIGHUP);
    CHECK(eventually([&] {
      const std::string log = h.daemon->log();
      return log.size() > log_before.size() && contains(log.substr(log_before.size()), "the running policy stays in force");
    }, 2));
    CHECK(contains(h.daemon->log().substr(log_before.size()), "<3>" + policy + error + "\n"));
    before = now_seconds();
    CommandResult reload = run("timeout 10 " + arpguard_bin() + " reload --socket " + h.control_socket());
    CHECK(now_seconds() - before < 2);
    CHECK(reload.exit_code == 1);
    CHECK(starts_with(reload.err, policy + error + "\n"));
    CHECK(contains(reload.err, "arpguard: reload rejected; the running policy stays in force\n"));
    CHECK(h.daemon_alive(pid));
    CHECK(h.guarded());
    CHECK_FALSE(h.has_address("lo", "192.0.2.11/32"));  // the old policy is in force
    CHECK(h.http("/ready") == "200\nready\n");
  }
}

// ---- 9 ----------------------------------------------------------------------

TEST_CASE("hostile: a directory, a fifo or /dev/zero as the policy is refused as not a regular file") {
  Hostile h;
  h.segment.rs.must("mkdir " + h.dir.path() + "/dir && mkfifo " + h.dir.path() + "/fifo");
  for (const std::string& path : {h.dir.path() + "/dir", h.dir.path() + "/fifo", std::string("/dev/zero")}) {
    CAPTURE(path);
    const double before = now_seconds();
    CommandResult check = run("timeout 5 " + arpguard_bin() + " check-config " + path);
    CHECK(now_seconds() - before < 2);
    CHECK(check.exit_code == 1);
    CHECK(starts_with(check.err, path + ":"));
    CHECK(contains(check.err, "not a regular file"));
    CommandResult daemon = h.run_daemon(path);
    CHECK(daemon.exit_code == 1);
    CHECK(contains(daemon.err, "not a regular file"));
  }
  CHECK(h.untouched());

  // The running daemon's policy file replaced by a directory, then SIGHUP and arpguard reload.
  const std::string policy = h.write_policy(kOneVip);
  h.start(policy);
  h.segment.rs.must("mkdir " + h.dir.path() + "/newdir && rm " + policy + " && mv " + h.dir.path() + "/newdir " + policy);
  h.daemon->signal(SIGHUP);
  CHECK(h.daemon->wait_for_log("the running policy stays in force", 2));
  CHECK(contains(h.daemon->log(), "<3>" + policy + ":"));
  CHECK(contains(h.daemon->log(), "cannot read policy: not a regular file (a directory)\n"));
  CommandResult reload = run(arpguard_bin() + " reload --socket " + h.control_socket());
  CHECK(reload.exit_code == 1);
  CHECK(contains(reload.err, "not a regular file (a directory)"));
  CHECK(h.daemon->running());
  CHECK(h.guarded());
  CHECK(h.rule_count() == 2);
}

// ---- 10 ---------------------------------------------------------------------

TEST_CASE("hostile: a control socket path that is a file, a directory or a symlink: refused, left untouched") {
  Hostile h;
  const std::string file = h.dir.write("precious", "precious content\n");
  h.segment.rs.must("mkdir " + h.dir.path() + "/adir && echo inside > " + h.dir.path() + "/adir/x && ln -s " + file +
                    " " + h.dir.path() + "/alink && ln -s " + h.dir.path() + "/nowhere " + h.dir.path() + "/dangling");
  const struct Case {
    std::string path;
    std::string is;
  } cases[] = {{file, "a regular file"},
               {h.dir.path() + "/adir", "a directory"},
               {h.dir.path() + "/alink", "a symbolic link"},
               {h.dir.path() + "/dangling", "a symbolic link"}};
  for (const Case& c : cases) {
    CAPTURE(c.path);
    struct stat before {};
    REQUIRE(lstat(c.path.c_str(), &before) == 0);
    const std::string policy = h.dir.write("policy.toml", "[agent]\nstate_dir = \"" + h.dir.path() +
                                                              "/state\"\ncontrol_socket = \"" + c.path + "\"\n" + kOneVip);
    CommandResult daemon = h.run_daemon(policy);
    CHECK(daemon.exit_code == 1);
    CHECK(daemon.err == "<3>control socket " + c.path + ": the path exists and is " + c.is + "; not touching it\n");
    struct stat after {};
    REQUIRE(lstat(c.path.c_str(), &after) == 0);
    CHECK(after.st_ino == before.st_ino);
    CHECK(after.st_mode == before.st_mode);
    CHECK(after.st_mtime == before.st_mtime);
  }
  CHECK(read_text(file) == "precious content\n");
  CHECK(read_text(h.dir.path() + "/adir/x") == "inside\n");
  CHECK(run("readlink " + h.dir.path() + "/alink").out == file + "\n");
  CHECK(run("readlink " + h.dir.path() + "/dangling").out == h.dir.path() + "/nowhere\n");
  CHECK_FALSE(run("test -e " + h.dir.path() + "/nowhere").exit_code == 0);
  CHECK(h.untouched());
}

// ---- 11 ---------------------------------------------------------------------

TEST_CASE("hostile: a second arpguardd in the same namespace is refused, naming the first; the first is unharmed") {
  Hostile h;
  const std::string policy = h.write_policy(kOneVip + kReadiness);
  h.start(policy);
  const pid_t first = h.daemon->pid();
  struct stat socket_before {};
  REQUIRE(lstat(h.control_socket().c_str(), &socket_before) == 0);
  const std::string refusal = "<3>another arpguardd (pid " + std::to_string(first) +
                              ") already guards this network namespace; this one stops and changes nothing";

  CommandResult same = h.run_daemon(policy);
  CHECK(same.exit_code == 1);
  CHECK(starts_with(same.err, refusal));

  // Another control socket and state dir: the namespace is still the first one's.
  const std::string other = h.dir.write("other.toml", "[agent]\nstate_dir = \"" + h.dir.path() +
                                                          "/other-state\"\ncontrol_socket = \"" + h.dir.path() +
                                                          "/other.sock\"\n[arp]\nmethod = \"nftables\"\n" + kOneVip);
  CommandResult different = h.run_daemon(other);
  CHECK(different.exit_code == 1);
  CHECK(starts_with(different.err, refusal));
  CHECK(run("test -e " + h.dir.path() + "/other.sock").exit_code != 0);

  CHECK(h.daemon->running());
  CHECK(h.daemon_alive(first));
  struct stat socket_after {};
  REQUIRE(lstat(h.control_socket().c_str(), &socket_after) == 0);
  CHECK(socket_after.st_ino == socket_before.st_ino);
  CommandResult status = h.status();
  CHECK(status.exit_code == 0);
  CHECK(starts_with(status.out, "ARPGUARD OK - 1/1 VIPs ready"));
  CHECK(h.http("/ready") == "200\nready\n");
  CHECK(h.guarded());
  CHECK(h.rule_count() == 2);
  CHECK(h.segment.arp_replies(kVip).empty());
}

TEST_CASE("hostile: an unprivileged process squatting the namespace claim neither keeps arpguardd from starting "
          "nor hangs it") {
  Hostile h;
  const std::string policy = h.write_policy(kOneVip);
  // Abstract unix sockets have no permissions: any user of the namespace may bind "@arpguardd".
  const std::string squat =
      "setpriv --reuid=nobody --regid=nogroup --clear-groups /usr/bin/python3 -c 'import socket, sys, time\n"
      "s = socket.socket(socket.AF_UNIX); s.bind(b\"\\0arpguardd\"); s.listen(0)\n"
      "held = []\n"
      "for i in range(int(sys.argv[1])):\n"
      "    c = socket.socket(socket.AF_UNIX); c.setblocking(False); held.append(c)\n"
      "    try: c.connect(b\"\\0arpguardd\")\n"
      "    except OSError: pass\n"
      "print(\"squatting\", flush=True); time.sleep(30)' ";
  auto claim_held = [&] { return h.segment.rs.exec("ss -Hxl").out.find("@arpguardd ") != std::string::npos; };
  {
    Process squatter(h.segment.rs.prefix() + squat + "0", h.dir.path() + "/squatter.log");
    REQUIRE(squatter.wait_for_log("squatting", 5));
    REQUIRE(claim_held());
    CommandResult started = h.segment.rs.exec("timeout 3 " + arpguardd_bin() + " --policy " + policy);
    CAPTURE(started.err);
    CHECK(contains(started.err, "ready: guarding 1 VIP(s)"));
    CHECK(h.guarded());
  }
  REQUIRE(eventually([&] { return !claim_held(); }));
  h.segment.rs.exec("ip addr del 192.0.2.10/32 dev lo");
  {
    // The same, its backlog full: arpguardd asks who holds the claim, and waits.
    Process squatter(h.segment.rs.prefix() + squat + "3", h.dir.path() + "/squatter-full.log");
    REQUIRE(squatter.wait_for_log("squatting", 5));
    REQUIRE(claim_held());
    const double before = now_seconds();
    CommandResult started = h.segment.rs.exec("timeout 3 " + arpguardd_bin() + " --policy " + policy);
    CAPTURE(started.err);
    MESSAGE("arpguardd exited " << started.exit_code << " after " << now_seconds() - before << " s");
    CHECK(contains(started.err, "ready: guarding 1 VIP(s)"));
    CHECK(h.has_address("lo", "192.0.2.10/32"));
  }
}

// ---- 12 ---------------------------------------------------------------------

namespace {

// Daemon A guarded the VIP and stopped (on_stop keep); its state record is
// lost; a daemon now runs a policy of no VIPs.
struct LostState : Hostile {
  LostState() {
    start(write_policy(kOneVip + kReadiness));
    daemon->signal(SIGTERM);
    REQUIRE(daemon->wait(5) == 0);
    REQUIRE(guarded());
    segment.rs.must("rm " + dir.path() + "/state/state.json");
    start(write_policy(kReadiness), "started, not ready");
  }
};

}  // namespace

TEST_CASE("hostile: a lost state record with a policy of no VIPs: the VIP and its suppression stay (I8)") {
  LostState h;
  CHECK(h.has_address("lo", "192.0.2.10/32"));
  CHECK(h.set_elements() == std::vector<std::string>{kVip});
  CHECK(h.rule_count() == 2);
  CHECK(h.sysctl("all/arp_ignore") == 1);
  CHECK(h.sysctl("all/arp_announce") == 2);
  CHECK(h.segment.arp_replies(kVip).empty());
  CHECK(h.http("/ready") == "503\nnot ready:\n  no VIPs in the policy\n");
  CommandResult status = h.status();
  MESSAGE("arpguard status says:\n" << status.out);
  CHECK(status.exit_code == 2);
  // Still so after a while: nothing sweeps it later either.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  CHECK(h.guarded());
}

TEST_CASE("hostile: a lost state record with a policy of no VIPs: status names the VIP left on lo") {
  LostState h;
  CommandResult status = h.status();
  CAPTURE(status.out);
  // The operator should learn that 192.0.2.10 is still configured and suppressed, though
  // no policy names it...
  CHECK(contains(status.out, "192.0.2.10"));
  // ...and the table's rules, which are arpguard's own, should not be called someone else's.
  CHECK_FALSE(contains(status.out, "a rule arpguard did not write"));
}

// ---- 13 ---------------------------------------------------------------------

TEST_CASE("hostile: arpguard reload: 0 and in force at once when good, 1 with located errors when bad; SIGHUP too") {
  Hostile h;
  const std::string policy = h.write_policy(kOneVip + kReadiness);
  h.start(policy);

  h.write_policy(kOneVip + "[[vip]]\naddress = \"192.0.2.11\"\n" + kReadiness);
  CommandResult good = run(arpguard_bin() + " reload --socket " + h.control_socket());
  CHECK(good.exit_code == 0);
  CHECK(good.out == "reloaded: the new policy is in force\n");
  CHECK(h.has_address("lo", "192.0.2.11/32"));  // right as the command returns
  CHECK(h.has_address("lo", "192.0.2.10/32"));

  h.write_policy(kOneVip + "[[vip]]\naddress = \"192.0.2.11\"\n[[vip]]\naddress = \"192.0.2.12\"\nport = 80\n"
                 "[[vip]]\naddress = \"192.0.2.300\"\n" + kReadiness);
  CommandResult bad = run(arpguard_bin() + " reload --socket " + h.control_socket());
  CHECK(bad.exit_code == 1);
  CHECK(bad.out == "");
  CHECK(starts_with(bad.err, policy + ":10:1: unknown key 'vip.port'\n" + policy + ":12:11: "));
  CHECK(contains(bad.err, "\narpguard: reload rejected; the running policy stays in force\n"));
  CHECK_FALSE(h.has_address("lo", "192.0.2.12/32"));
  CHECK(h.has_address("lo", "192.0.2.11/32"));
  // Naming the policy instead of the socket: the same located errors, nothing changes.
  bad = run(arpguard_bin() + " reload --policy " + policy);
  CHECK(bad.exit_code == 1);
  CHECK(contains(bad.err, policy + ":10:1: unknown key 'vip.port'\n"));
  CHECK_FALSE(h.has_address("lo", "192.0.2.12/32"));
  CHECK(h.daemon->running());

  h.write_policy("[[vip]]\naddress = \"192.0.2.12\"\n" + kReadiness);
  h.daemon->signal(SIGHUP);
  CHECK(h.daemon->wait_for_log("reload: add vip 192.0.2.12/32 dev lo", 2));
  CHECK(eventually([&] { return !h.has_address("lo", "192.0.2.10/32") && !h.has_address("lo", "192.0.2.11/32"); }, 2));
  CHECK(h.has_address("lo", "192.0.2.12/32"));
  CHECK(h.set_elements() == std::vector<std::string>{"192.0.2.12"});
  CHECK(h.http("/ready") == "200\nready\n");

  h.write_policy("[[vip]]\naddress = \"192.0.2.13\"\n" + kReadiness);
  CommandResult by_policy = run(arpguard_bin() + " reload --policy " + policy);
  CHECK(by_policy.exit_code == 0);
  CHECK(by_policy.out == "reloaded: the new policy is in force\n");
  CHECK(h.has_address("lo", "192.0.2.13/32"));
}

TEST_CASE("hostile: a log that cannot be written (stderr on a full disk, or closed) stops nothing: drift is repaired") {
  // Before: the first log line threw from fmt, and arpguardd aborted.
  for (const std::string redirect : {"2>/dev/full", "2>&-"}) {
    CAPTURE(redirect);
    Hostile h;
    h.start_with_stderr(h.write_policy(kOneVip), redirect);
    auto vip_on_lo = [&] { return contains(h.segment.rs.must("ip -4 addr show dev lo"), std::string(kVip) + "/32"); };
    h.segment.rs.must(std::string("ip addr del ") + kVip + "/32 dev lo");
    CHECK(eventually(vip_on_lo));
    CHECK(h.daemon->running());
    CHECK(starts_with(h.status().out, "ARPGUARD WARNING - 1/1 VIPs ready, method both, repaired 0 s ago"));
  }
}

TEST_CASE("hostile: a log reader that stops reading (a full pipe on stderr) stops nothing: drift is repaired") {
  // Before: arpguardd blocked in write(2) once the pipe was full, and repaired
  // nothing and answered nobody until someone read it.
  Hostile h;
  const std::string fifo = h.dir.path() + "/log.fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  // Holds the pipe open for reading, one page deep, and never reads.
  Process reader("python3 -c 'import fcntl, os, time; fd = os.open(\"" + fifo +
                     "\", os.O_RDONLY | os.O_NONBLOCK); fcntl.fcntl(fd, 1031, 4096); print(\"held\", flush=True); "
                     "time.sleep(600)'",
                 h.dir.path() + "/reader.log");
  REQUIRE(reader.wait_for_log("held", 5));
  std::string vips;
  for (int i = 1; i <= 100; ++i) vips += "[[vip]]\naddress = \"10.94.0." + std::to_string(i) + "\"\n";
  const std::string policy = h.write_policy(vips);
  h.start_with_stderr(policy, "2>" + fifo);
  auto vip_on_lo = [&] { return contains(h.segment.rs.must("ip -4 addr show dev lo"), "10.94.0.50/32"); };
  // Reloads of a policy with 100 located errors: some 8 KB of log each, into a page.
  std::string bad;
  for (int i = 1; i <= 100; ++i) bad += "[[vip]]\naddress = \"10.94.0." + std::to_string(i) + "/33\"\n";
  REQUIRE(h.write_policy(bad) == policy);  // the same file, now broken
  for (int reload = 0; reload < 3; ++reload) {
    h.daemon->signal(SIGHUP);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  h.segment.rs.must("ip addr del 10.94.0.50/32 dev lo");
  CHECK(eventually(vip_on_lo));
  CHECK(h.daemon->running());
  CHECK(contains(h.status().out, "100/100 VIPs ready"));
}

TEST_CASE("hostile: a state directory nobody can write: VIPs guarded, status and metrics say so, until a write works") {
  Hostile h;
  h.segment.rs.must("echo in the way > " + h.dir.path() + "/blocked");
  const std::string policy =
      h.dir.write("policy.toml", "[agent]\nstate_dir = \"" + h.dir.path() + "/blocked/state\"\ncontrol_socket = \"" +
                                     h.control_socket() + "\"\naudit_interval_ms = 1000\n" + kOneVip + kReadiness +
                                     "[watch]\nenabled = false\n");
  h.start(policy);
  CHECK(h.guarded());  // protection does not hang on the record
  CHECK(h.daemon->wait_for_log("cannot record state", 1));
  CommandResult status = h.status();
  CAPTURE(status.out);
  CHECK(status.exit_code == 1);
  CHECK(contains(first_line(status.out), "the state record cannot be written"));
  CHECK(contains(first_line(status.out), "Not a directory"));
  CHECK(contains(h.http("/metrics"), "\narpguard_state_record_ok 0\n"));
  CHECK(starts_with(h.http("/ready"), "200\n"));

  // The way cleared: the next audit writes the record whole, and the warning goes.
  h.segment.rs.must("rm " + h.dir.path() + "/blocked");
  CHECK(eventually([&] { return !contains(h.status().out, "state record"); }));
  CHECK(contains(h.http("/metrics"), "\narpguard_state_record_ok 1\n"));
  const std::string record = read_text(h.dir.path() + "/blocked/state/state.json");
  CHECK(contains(record, "192.0.2.10/32"));
  CHECK(contains(record, "arp_ignore"));
}

TEST_CASE("hostile: state.json removed or garbled while arpguardd runs: written again from memory; a stop still restores") {
  Hostile h;
  const std::string policy = h.write_policy(kOneVip, "audit_interval_ms = 1000\non_stop = \"remove\"\n");
  REQUIRE(h.sysctl("all/arp_ignore") == 0);
  h.start(policy);
  REQUIRE(h.guarded());
  const std::string record = h.dir.path() + "/state/state.json";
  REQUIRE(contains(read_text(record), "arp_ignore"));

  h.segment.rs.must("rm " + record);
  CHECK(h.daemon->wait_for_log("state.json was changed or removed by another process", 3));
  CHECK(contains(read_text(record), "192.0.2.10/32"));
  h.segment.rs.must("echo '{\"vips\": [' > " + record);
  CHECK(eventually([&] { return contains(read_text(record), "\"value\": 0"); }));

  // The sysctls' values before arpguard are still known: a stop puts them back.
  h.daemon->signal(SIGTERM);
  REQUIRE(h.daemon->wait(5) == 0);
  CHECK(h.sysctl("all/arp_ignore") == 0);
  CHECK(h.sysctl("all/arp_announce") == 0);
  CHECK_FALSE(h.has_address("lo", "192.0.2.10/32"));
}
