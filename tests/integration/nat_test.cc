// The redirect method against the real kernel: arpguard never configures a
// redirected VIP and serves it through its own NAT tables `ip arpguard_nat` and
// `ip6 arpguard_nat`. Proven by kernel read-back (`nft -j list table`, `ip -j
// addr`, /proc/sys), by TCP from the client (which routes the VIPs through the
// real server, as a director would forward them) and by ARP on the wire.
#include <doctest/doctest.h>
#include <signal.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "arpguard_config.h"
#include "guarded.h"
#include "tests/unit/printing.h"

using namespace arpguard::testing;

namespace {

std::string golden(const std::string& name) {
  std::ifstream in(std::string(ARPGUARD_SOURCE_ROOT) + "/rules/golden/" + name);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The policy of rules/golden/nat-*.nft: every port, single ports, a range, port
// mappings, a prefix, IPv4 and IPv6.
const std::string kGoldenVips = R"([[vip]]
address = "192.0.2.30"

[[vip]]
address = "192.0.2.31"
ports = ["tcp:80", "tcp:443", "tcp:8080->18080", "udp:5353->53"]

[[vip]]
address = "198.51.100.0/28"
ports = ["udp:1000-2000"]

[[vip]]
address = "2001:db8::30"

[[vip]]
address = "2001:db8::31"
ports = ["tcp:80", "tcp:8080->18080"]
)";
// The wire watch (on by default) adds ARP and NDP log tables even when every VIP
// is redirected; these tests look at the NAT method alone (tests/lab/watch_test
// covers the watch).
const std::string kAllRedirect = "[watch]\nenabled = false\n[arp]\nmethod = \"redirect\"\n";

// A real server whose VIPs reach it through a director: the client routes every
// VIP to the real server (the director's MAC rewrite, without a director). Both
// ends get a global IPv6 address: an IPv6 redirect goes to an address of the
// incoming interface with the VIP's scope.
struct Redirected : Guarded {
  Redirected() {
    segment.rs.must("ip addr add 2001:db8:f::1/64 dev eth0 nodad");
    segment.client.must("ip addr add 2001:db8:f::2/64 dev eth0 nodad");
    segment.client.must(
        "ip route add 192.0.2.10 via 192.0.2.1 && ip route add 192.0.2.30/31 via 192.0.2.1 && "
        "ip route add 198.51.100.0/28 via 192.0.2.1 && ip -6 route add 2001:db8::/64 via 2001:db8:f::1");
    // A new namespace copies conf/all from the host's: start from the kernel's defaults whatever the host has.
    segment.rs.must("sysctl -qw net.ipv4.conf.all.arp_ignore=0 net.ipv4.conf.all.arp_announce=0");
    snapshot_sysctls = sysctls();
  }

  // ---- the daemon ----
  void start(const std::string& body, const std::string& agent = "", const std::string& log = "arpguardd.log") {
    policy = write_policy(body, agent);
    daemon = std::make_unique<Process>(segment.rs.prefix() + arpguardd_bin() + " --policy " + policy,
                                       dir.path() + "/" + log);
    REQUIRE(daemon->wait_for_log("ready:", 5));
  }
  /// Where the log ends now: what comes after it is what a drift caused.
  size_t mark() const { return daemon->log().size(); }
  std::string log_since(size_t from) const {
    const std::string log = daemon->log();
    return from < log.size() ? log.substr(from) : "";
  }
  bool logged_since(size_t from, const std::string& text, double seconds = 3) const {
    return eventually([&] { return log_since(from).find(text) != std::string::npos; }, seconds);
  }

  // ---- kernel read-back ----
  bool nat_exists(const std::string& family) const {
    return segment.rs.exec("nft list table " + family + " arpguard_nat").exit_code == 0;
  }
  nlohmann::json nat_json(const std::string& family) const {
    return nlohmann::json::parse(segment.rs.must("nft -j list table " + family + " arpguard_nat"));
  }
  /// The table as nft lists it, normalised as guarded.h's table_text() does.
  std::string nat_text(const std::string& family) const {
    CommandResult r = segment.rs.exec(
        "nft list table " + family + " arpguard_nat | sed -e 's/counter packets [0-9]* bytes [0-9]*/counter "
        "packets 0 bytes 0/' -e '/^\\tflags /{N;d}' -e 's/ # progname .*//'");
    return r.exit_code == 0 ? r.out : "";
  }
  bool nat_intact() const {
    return nat_text("ip") == golden("nat-ip-keep-and-to.nft") && nat_text("ip6") == golden("nat-ip6-keep-and-to.nft");
  }
  /// The table as a value independent of order and handles (`nft -j`, each
  /// object's handle and counters dropped, set elements and rules sorted): a
  /// repair may append a rule at the end of the chain, which changes nothing
  /// (the keep set and the map never hold the same port).
  std::string nat_canonical(const std::string& family) const {
    CommandResult listed = segment.rs.exec("nft -j list table " + family + " arpguard_nat");
    if (listed.exit_code != 0) return "";
    nlohmann::json all = nlohmann::json::parse(listed.out);
    std::vector<std::string> objects;
    std::vector<std::string> rules;
    for (nlohmann::json& item : all["nftables"]) {
      if (item.contains("metainfo")) continue;
      for (auto& [kind, body] : item.items()) {
        body.erase("handle");
        if (body.contains("elem")) {
          std::sort(body["elem"].begin(), body["elem"].end(),
                    [](const nlohmann::json& a, const nlohmann::json& b) { return a.dump() < b.dump(); });
        }
        if (kind == "rule") {
          for (nlohmann::json& e : body["expr"]) {
            if (e.contains("counter")) e["counter"] = {{"packets", 0}, {"bytes", 0}};
          }
        }
        (kind == "rule" ? rules : objects).push_back(item.dump());
      }
    }
    std::sort(rules.begin(), rules.end());
    std::string out;
    for (const auto& part : {objects, rules}) {
      for (const std::string& text : part) out += text + "\n";
    }
    return out;
  }
  /// The table-level flags nft -j reports ("owner", ...), as one string.
  std::string nat_flags(const std::string& family) const {
    const nlohmann::json table = nat_json(family);  // named: a temporary's member would dangle in the loop
    for (const auto& item : table["nftables"]) {
      if (item.contains("table")) return item["table"].value("flags", nlohmann::json::array()).dump();
    }
    return "";
  }
  /// Packets counted by the prerouting rules.
  uint64_t nat_packets(const std::string& family) const {
    uint64_t n = 0;
    const nlohmann::json table = nat_json(family);
    for (const auto& item : table["nftables"]) {
      if (!item.contains("rule")) continue;
      for (const auto& e : item["rule"]["expr"]) {
        if (e.contains("counter")) n += e["counter"]["packets"].get<uint64_t>();
      }
    }
    return n;
  }
  /// Every address of every device, IPv4 and IPv6, as "DEV ADDR/LEN", sorted.
  std::vector<std::string> all_addresses() const {
    std::vector<std::string> out;
    for (const auto& link : nlohmann::json::parse(segment.rs.must("ip -j addr"))) {
      for (const auto& info : link["addr_info"]) {
        out.push_back(link["ifname"].get<std::string>() + " " + info["local"].get<std::string>() + "/" +
                      std::to_string(info["prefixlen"].get<int>()));
      }
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  bool address_anywhere(const std::string& address) const {
    const std::vector<std::string> all = all_addresses();
    return std::any_of(all.begin(), all.end(),
                       [&](const std::string& a) { return a.find(" " + address + "/") != std::string::npos; });
  }
  /// Every ARP sysctl of every interface, as `grep -r . ` prints them.
  std::string sysctls() const {
    return segment.rs.must("cd /proc/sys/net/ipv4/conf && grep . */arp_ignore */arp_announce */arp_filter");
  }

  // ---- the wire, from the client ----
  /// The body of GET http://HOST:PORT/ from the client; "" when nothing answered.
  std::string get(const std::string& host, int port, double timeout = 3) const {
    return segment.client
        .exec("curl -s -g --connect-timeout " + std::to_string(timeout) + " -m " + std::to_string(timeout + 2) +
              " http://" + host + ":" + std::to_string(port) + "/")
        .out;
  }
  /// The lab's HTTP server (tests/lab/http_server.py): answers "NAME ADDRESS",
  /// ADDRESS being the local address the connection reached.
  std::unique_ptr<Process> serve(const std::string& name, int port) const {
    auto server = std::make_unique<Process>(segment.rs.prefix() + "python3 " + ARPGUARD_SOURCE_ROOT +
                                                "/tests/lab/http_server.py " + name + " " + std::to_string(port),
                                            dir.path() + "/http-" + std::to_string(port) + ".log");
    REQUIRE(eventually([&] {
      return segment.rs.exec("ss -Hltn sport = :" + std::to_string(port)).out.find("LISTEN") != std::string::npos;
    }));
    return server;
  }

  /// A UDP echo on every address: answers each datagram with "udp PORT".
  std::unique_ptr<Process> serve_udp(int port) const {
    auto server = std::make_unique<Process>(
        segment.rs.prefix() +
            "python3 -c 'import socket, sys\n"
            "s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
            "s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n"
            "s.bind((\"::\", int(sys.argv[1])))\n"
            "while True:\n"
            "    data, peer = s.recvfrom(100)\n"
            "    s.sendto(b\"udp \" + sys.argv[1].encode(), peer)' " +
            std::to_string(port),
        dir.path() + "/udp-" + std::to_string(port) + ".log");
    REQUIRE(eventually([&] {
      return segment.rs.exec("ss -Hlun sport = :" + std::to_string(port)).out.find("UNCONN") != std::string::npos;
    }));
    return server;
  }
  /// The answer to one datagram the client sends to HOST:PORT from a connected
  /// socket, which takes replies from HOST:PORT only; "" when none came.
  std::string udp(const std::string& host, int port) const {
    return segment.client
        .exec("python3 -c 'import socket, sys\n"
              "s = socket.socket(socket.AF_INET6 if \":\" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)\n"
              "s.settimeout(2)\n"
              "s.connect((sys.argv[1], int(sys.argv[2])))\n"
              "s.send(b\"hello\")\n"
              "print(s.recv(100).decode())' " +
              host + " " + std::to_string(port))
        .out;
  }

  // ---- readiness and status ----
  /// "CODE BODY" of GET http://192.0.2.1:9480PATH from the client.
  std::string ready(const std::string& path) const {
    CommandResult r = segment.client.exec("curl -s -m 5 -w ' %{http_code}' http://192.0.2.1:9480" + path);
    // Body first, then the code: reorder to "CODE BODY".
    const size_t space = r.out.rfind(' ');
    return space == std::string::npos ? r.out : r.out.substr(space + 1) + " " + r.out.substr(0, space);
  }
  nlohmann::json status_json() const {
    CommandResult r = run(arpguard_bin() + " status --json --socket " + control_socket());
    return nlohmann::json::parse(r.out, nullptr, false);
  }
  static nlohmann::json vip_in(const nlohmann::json& status, const std::string& address) {
    for (const auto& v : status.value("vips", nlohmann::json::array())) {
      if (v.value("address", "") == address) return v;
    }
    return nlohmann::json();
  }

  std::string snapshot_sysctls;
  std::string policy;
  std::unique_ptr<Process> daemon;
};

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

const std::string kReadiness = "[readiness]\nlisten = [\"192.0.2.1:9480\"]\n";

}  // namespace

// ---------------------------------------------------------------------------
// Kernel read-back

TEST_CASE("redirect: apply writes exactly the golden NAT tables, configures no VIP and no sysctl") {
  Redirected r;
  const std::vector<std::string> before = r.all_addresses();
  const std::string policy = r.write_policy(kAllRedirect + kGoldenVips);

  CommandResult first = r.apply(policy);
  CHECK(first.exit_code == 0);
  CHECK(first.err == "");
  CHECK(contains(first.out, "nft create table ip arpguard_nat"));
  CHECK(contains(first.out, "nft create table ip6 arpguard_nat"));
  CHECK_FALSE(contains(first.out, "add vip"));

  CHECK(r.nat_text("ip") == golden("nat-ip-keep-and-to.nft"));
  CHECK(r.nat_text("ip6") == golden("nat-ip6-keep-and-to.nft"));
  // Redirected VIPs need no ARP or NDP suppression: nothing is configured to reveal.
  CHECK(r.segment.rs.exec("nft list table arp arpguard").exit_code != 0);
  CHECK(r.segment.rs.exec("nft list table ip6 arpguard").exit_code != 0);
  CHECK(r.all_addresses() == before);
  CHECK(r.segment.rs.must("ip route show table local proto 247") == "");
  CHECK(r.sysctls() == r.snapshot_sysctls);

  // I4: a second apply of the same policy plans nothing.
  CommandResult second = r.apply(policy);
  CHECK(second.exit_code == 0);
  CHECK_FALSE(contains(second.out, "nft "));
  CHECK(r.nat_intact());
}

TEST_CASE("redirect: under arpguardd the tables are the golden ones, and every VIP is served over TCP, "
          "IPv4 and IPv6, every port or listed ports, a mapping included") {
  Redirected r;
  auto http80 = r.serve("rs", 80);
  auto http18080 = r.serve("rs", 18080);
  r.start(kAllRedirect + kGoldenVips, "sysctl_poll_ms = 100\n");
  CHECK(r.nat_intact());
  CHECK(r.sysctls() == r.snapshot_sysctls);
  CHECK_FALSE(r.address_anywhere("192.0.2.30"));
  CHECK_FALSE(r.address_anywhere("2001:db8::31"));

  // The application sees its own address: the VIP was redirected, not configured.
  CHECK(r.get("192.0.2.30", 80) == "rs 192.0.2.1\n");       // every port
  CHECK(r.get("192.0.2.30", 18080) == "rs 192.0.2.1\n");
  CHECK(r.get("192.0.2.31", 80) == "rs 192.0.2.1\n");       // a listed port
  CHECK(r.get("192.0.2.31", 8080) == "rs 192.0.2.1\n");     // tcp:8080->18080: nothing listens on 8080
  CHECK(r.get("[2001:db8::30]", 80) == "rs 2001:db8:f::1\n");
  CHECK(r.get("[2001:db8::31]", 8080) == "rs 2001:db8:f::1\n");
  CHECK(r.get("[2001:db8::31]", 80) == "rs 2001:db8:f::1\n");
  // UDP: a mapping (udp:5353->53) and a prefix VIP's port range; the connected
  // client socket takes the answer only from the VIP and port it asked.
  auto udp53 = r.serve_udp(53);
  auto udp1500 = r.serve_udp(1500);
  CHECK(r.udp("192.0.2.31", 5353) == "udp 53\n");
  CHECK(r.udp("198.51.100.5", 1500) == "udp 1500\n");
  CHECK(r.udp("2001:db8::30", 53) == "udp 53\n");
  // A port the policy does not list is not redirected: the VIP is not this host's.
  CHECK(r.get("192.0.2.31", 18080, 1) == "");
  CHECK(r.nat_packets("ip") >= 4);
  CHECK(r.nat_packets("ip6") >= 3);
  CHECK(r.daemon->running());
}

// ---------------------------------------------------------------------------
// Drift

TEST_CASE("redirect drift: every change to the unowned NAT tables is repaired and logged") {
  Redirected r;
  auto http18080 = r.serve("rs", 18080);
  r.start(kAllRedirect + kGoldenVips, "own_nft_table = false\ncontested_repairs = 1000\n");
  REQUIRE(r.nat_intact());
  const std::string ip = r.nat_canonical("ip");
  const std::string ip6 = r.nat_canonical("ip6");
  REQUIRE(contains(ip, "192.0.2.31"));
  REQUIRE(contains(ip6, "2001:db8::31"));
  auto repaired = [&] { return r.nat_canonical("ip") == ip && r.nat_canonical("ip6") == ip6; };
  const std::string keep_rule_handle = R"(sed -n 's/.*@keep counter .* redirect # handle \([0-9]*\)$/\1/p')";
  const std::string map_rule_handle = R"(sed -n 's/.*tcp dport map @to # handle \([0-9]*\)$/\1/p')";

  struct Drift {
    std::string what;
    std::string command;
    const char* logged;  // part of the repair line
  };
  const std::vector<Drift> drifts = {
      {"table deleted", "nft delete table ip arpguard_nat", "nft create table ip arpguard_nat"},
      {"ip6 table deleted", "nft delete table ip6 arpguard_nat", "nft create table ip6 arpguard_nat"},
      {"table flushed", "nft flush table ip arpguard_nat", "nft add rule ip arpguard_nat prerouting"},
      {"chain flushed", "nft flush chain ip arpguard_nat prerouting", "nft add rule ip arpguard_nat prerouting"},
      {"keep rule deleted by handle",
       "nft delete rule ip arpguard_nat prerouting handle $(nft -a list chain ip arpguard_nat prerouting | " +
           keep_rule_handle + ")",
       "nft add rule ip arpguard_nat prerouting"},
      {"map rule deleted by handle",
       "nft delete rule ip arpguard_nat prerouting handle $(nft -a list chain ip arpguard_nat prerouting | " +
           map_rule_handle + ")",
       "nft add rule ip arpguard_nat prerouting"},
      {"set element deleted", "nft delete element ip arpguard_nat keep '{ 192.0.2.30 . tcp . 0-65535 }'",
       "@keep"},
      {"map element deleted", "nft delete element ip arpguard_nat to '{ 192.0.2.31 . tcp . 8080 }'", "@to"},
      {"ip6 set element deleted", "nft delete element ip6 arpguard_nat keep '{ 2001:db8::31 . tcp . 80 }'", "@keep"},
      {"set flushed", "nft flush set ip arpguard_nat keep", "@keep"},
      {"map element changed to another port",
       "nft 'delete element ip arpguard_nat to { 192.0.2.31 . tcp . 8080 }; "
       "add element ip arpguard_nat to { 192.0.2.31 . tcp . 8080 : 9999 }'",  // one transaction
       "@to"},
      {"foreign set element added (a redirect of someone else's address)",
       "nft add element ip arpguard_nat keep '{ 192.0.2.99 . tcp . 22 }'", "192.0.2.99"},
      {"foreign rule added", "nft add rule ip arpguard_nat prerouting tcp dport 9 counter drop", "prerouting"},
      {"chain policy set to drop", "nft add chain ip arpguard_nat prerouting '{ policy drop; }'", "prerouting"},
      {"nft flush ruleset", "nft flush ruleset", "nft create table ip arpguard_nat"},
  };
  for (const Drift& drift : drifts) {
    CAPTURE(drift.what);
    const size_t mark = r.mark();
    CAPTURE(r.log_since(mark));
    CommandResult done = r.segment.rs.exec(drift.command);
    CAPTURE(done.err);
    REQUIRE(done.exit_code == 0);
    CHECK(eventually(repaired));
    CHECK(r.logged_since(mark, "<5>repair after NFT_MSG_"));
    CHECK(r.logged_since(mark, drift.logged));
  }
  // Still served, through the repaired mapping.
  CHECK(r.get("192.0.2.31", 8080) == "rs 192.0.2.1\n");
  CHECK(r.get("192.0.2.30", 18080) == "rs 192.0.2.1\n");
  CHECK(r.sysctls() == r.snapshot_sysctls);
  CHECK(r.daemon->running());
}

TEST_CASE("redirect drift: iptables-nft -t nat -F flushes iptables' own `ip nat` table and never arpguard's") {
  Redirected r;
  if (r.segment.rs.exec("command -v iptables-nft").exit_code != 0) {
    MESSAGE("iptables-nft is not installed (tests/bootstrap installs it): skipped");
    return;
  }
  r.start(kAllRedirect + kGoldenVips, "own_nft_table = false\n");
  REQUIRE(r.nat_intact());
  const std::string ip = r.nat_canonical("ip");
  r.segment.rs.must("iptables-nft -t nat -A PREROUTING -p tcp --dport 9 -j ACCEPT");
  CHECK(contains(r.segment.rs.must("nft list table ip nat"), "tcp dport 9"));
  const size_t mark = r.mark();
  r.segment.rs.must("iptables-nft -t nat -F");
  // iptables' table lost its rule; arpguard's is another table, untouched.
  CHECK_FALSE(contains(r.segment.rs.must("nft list table ip nat"), "tcp dport 9"));
  CHECK(r.nat_intact());
  // `iptables-nft -t nat -X` and `-F` with no table argument (filter) stay out of it too.
  r.segment.rs.must("iptables-nft -F && iptables-nft -t nat -X");
  CHECK(r.nat_intact());
  // Nothing needed repair: a drift made after them is the first and only repair logged.
  r.segment.rs.must("nft delete element ip arpguard_nat keep '{ 192.0.2.30 . tcp . 0-65535 }'");
  REQUIRE(r.logged_since(mark, "repair after NFT_MSG_DELSETELEM ip arpguard_nat @keep"));
  const std::string log = r.log_since(mark);
  CAPTURE(log);
  CHECK(log.find("repair after") == log.rfind("repair after"));
  CHECK(log.find("repair after") == log.find("repair after NFT_MSG_DELSETELEM ip arpguard_nat @keep"));
  CHECK_FALSE(contains(log, "ip nat"));
  CHECK(eventually([&] { return r.nat_canonical("ip") == ip; }));  // a re-added element may be listed last
}

TEST_CASE("redirect drift: the owned NAT tables refuse others' changes and survive nft flush ruleset") {
  Redirected r;
  r.start(kAllRedirect + kGoldenVips);  // own_nft_table defaults to true
  REQUIRE(r.nat_intact());
  if (!contains(r.nat_flags("ip"), "owner")) {
    MESSAGE("kernel without NFT_TABLE_F_PERSIST: tables are not owned, nothing to check");
    return;
  }
  CHECK(contains(r.nat_flags("ip6"), "owner"));
  CHECK(r.segment.rs.exec("nft delete table ip arpguard_nat").exit_code != 0);
  CHECK(r.segment.rs.exec("nft flush chain ip arpguard_nat prerouting").exit_code != 0);
  CHECK(r.segment.rs.exec("nft delete element ip arpguard_nat keep '{ 192.0.2.30 . tcp . 0-65535 }'").exit_code != 0);
  CHECK(r.segment.rs.exec("nft add element ip arpguard_nat keep '{ 192.0.2.99 . tcp . 22 }'").exit_code != 0);
  CHECK(r.nat_intact());
  // nft flush ruleset passes owned tables by, and takes everyone else's.
  r.segment.rs.must("nft add table inet other && nft add chain inet other c");
  r.segment.rs.must("nft flush ruleset");
  CHECK(r.segment.rs.exec("nft list table inet other").exit_code != 0);
  CHECK(r.nat_intact());
  CHECK(r.daemon->running());
}

// ---------------------------------------------------------------------------
// A redirected VIP found configured

TEST_CASE("redirect: a redirected VIP configured by hand on lo or eth0 is reported and left alone; "
          "sysctls are never touched") {
  Redirected r;
  r.start(kAllRedirect + "[[vip]]\naddress = \"192.0.2.30\"\n" + kReadiness, "sysctl_poll_ms = 100\n");
  REQUIRE(r.ready("/ready/192.0.2.30") == "200 ready\n");

  for (const std::string device : {"lo", "eth0"}) {
    CAPTURE(device);
    r.segment.rs.must("ip addr add 192.0.2.30/32 dev " + device);
    const std::string reason = "redirected vip 192.0.2.30/32 is configured on " + device;
    CHECK(eventually([&] { return contains(r.ready("/ready/192.0.2.30"), reason); }));
    CHECK(r.ready("/ready/192.0.2.30").rfind("503 ", 0) == 0);
    const nlohmann::json status = r.status_json();
    CHECK(status.value("ready", true) == false);
    CHECK(contains(Redirected::vip_in(status, "192.0.2.30/32").dump(), "redirect_configured"));
    CHECK(run(arpguard_bin() + " status --socket " + r.control_socket()).exit_code == 2);  // CRITICAL
    // I2: a VIP arpguard never configured is not arpguard's to remove.
    CHECK(r.has_address(device, "192.0.2.30/32"));
    r.segment.rs.must("ip addr del 192.0.2.30/32 dev " + device);
    CHECK(eventually([&] { return r.ready("/ready/192.0.2.30") == "200 ready\n"; }));
  }
  CHECK(r.sysctls() == r.snapshot_sysctls);
  CHECK(r.segment.rs.exec("nft list table arp arpguard").exit_code != 0);
}

TEST_CASE("redirect: a redirected VIP found configured, which the host now answers ARP for, is logged loudly") {
  // BUG: arpguardd reports a redirected VIP configured by hand only through
  // readiness (/ready, status); nothing is logged, although the host answers ARP
  // for it (no sysctl is set when every VIP is redirected), which I2 says is
  // "reported loudly". A bound VIP misplaced on eth0 gets a <4> line.
  Redirected r;
  r.start(kAllRedirect + "[[vip]]\naddress = \"192.0.2.30\"\n" + kReadiness, "sysctl_poll_ms = 100\n");
  const size_t mark = r.mark();
  r.segment.rs.must("ip addr add 192.0.2.30/32 dev eth0");
  // The leak is real: the real server answers ARP for the VIP.
  CHECK(r.segment.arp_replies("192.0.2.30").size() >= 1);
  CHECK(eventually([&] { return contains(r.ready("/ready/192.0.2.30"), "is configured on eth0"); }));
  CAPTURE(r.log_since(mark));
  CHECK(r.logged_since(mark, "<4>", 1));
  CHECK(r.logged_since(mark, "192.0.2.30", 1));
}

TEST_CASE("redirect: a VIP arpguard configured (lo and eth0) and then redirected is removed from its device") {
  Redirected r;
  const std::string bound = "[[vip]]\naddress = \"192.0.2.30\"\n[[vip]]\naddress = \"192.0.2.31\"\n"
                            "device = \"eth0\"\nmethod = \"nftables\"\n" + kReadiness;
  r.start(bound, "sysctl_poll_ms = 100\n");
  REQUIRE(r.has_address("lo", "192.0.2.30/32"));
  REQUIRE(r.has_address("eth0", "192.0.2.31/32"));
  REQUIRE_FALSE(r.nat_exists("ip"));

  const size_t mark = r.mark();
  r.write_policy(kAllRedirect + "[[vip]]\naddress = \"192.0.2.30\"\n[[vip]]\naddress = \"192.0.2.31\"\n" + kReadiness,
                 "sysctl_poll_ms = 100\n");
  r.daemon->signal(SIGHUP);
  CHECK(eventually([&] {
    return !r.address_anywhere("192.0.2.30") && !r.address_anywhere("192.0.2.31") && r.nat_exists("ip");
  }));
  CHECK(r.logged_since(mark, "del vip 192.0.2.30/32 dev lo"));
  CHECK(r.logged_since(mark, "del vip 192.0.2.31/32 dev eth0"));
  CHECK(r.has_address("lo", "127.0.0.1/8"));
  CHECK(r.has_address("eth0", "192.0.2.1/24"));
  CHECK(contains(r.nat_text("ip"), "elements = { 192.0.2.30 . tcp . 0-65535,"));
  CHECK(contains(r.nat_text("ip"), "192.0.2.31 . udp . 0-65535 }"));
  // No bound VIP is left: nothing for the ARP table to guard.
  CHECK(eventually([&] { return r.segment.rs.exec("nft list table arp arpguard").exit_code != 0; }));
  CHECK(eventually([&] { return r.ready("/ready/192.0.2.31") == "200 ready\n"; }));
  // No longer its own: put back by hand, it is reported, not removed.
  r.segment.rs.must("ip addr add 192.0.2.30/32 dev lo");
  CHECK(eventually([&] { return contains(r.ready("/ready/192.0.2.30"), "is configured on lo"); }));
  CHECK(r.has_address("lo", "192.0.2.30/32"));
  r.segment.rs.must("ip addr del 192.0.2.30/32 dev lo");

  // And back to bound: the VIPs return to their devices, the NAT tables go.
  const size_t back = r.mark();
  r.write_policy(bound, "sysctl_poll_ms = 100\n");
  r.daemon->signal(SIGHUP);
  CHECK(eventually([&] { return r.has_address("lo", "192.0.2.30/32") && r.has_address("eth0", "192.0.2.31/32"); }));
  CHECK(eventually([&] { return !r.nat_exists("ip"); }));
  CAPTURE(r.log_since(back));
  CHECK(eventually([&] { return r.ready("/ready") == "200 ready\n"; }));
}

// ---------------------------------------------------------------------------
// Bound and redirected side by side, on the wire

TEST_CASE("redirect: a bound and a redirected VIP are both served; neither is answered by ARP; "
          "only the bound one is configured") {
  Redirected r;
  auto http80 = r.serve("rs", 80);        // on every address: serves the bound VIP
  auto http18080 = r.serve("rs", 18080);  // the redirected VIP's port 80 maps here
  r.start("[[vip]]\naddress = \"192.0.2.10\"\n"
          "[[vip]]\naddress = \"192.0.2.30\"\nmethod = \"redirect\"\nports = [\"tcp:80->18080\"]\n");

  // ip addr on rs: the bound VIP on lo, the redirected one nowhere.
  CHECK(r.has_address("lo", "192.0.2.10/32"));
  CHECK_FALSE(r.address_anywhere("192.0.2.30"));
  // Binding: a socket can bind the bound VIP, never the redirected one.
  const std::string bind = "python3 -c 'import socket, sys; socket.socket().bind((sys.argv[1], 0))' ";
  CHECK(r.segment.rs.exec(bind + "192.0.2.10").exit_code == 0);
  CHECK(r.segment.rs.exec(bind + "192.0.2.30").exit_code != 0);

  // TCP from the client: the bound VIP is reached as itself, the redirected one on the real address, mapped port.
  CHECK(r.get("192.0.2.10", 80) == "rs 192.0.2.10\n");
  CHECK(r.get("192.0.2.30", 80) == "rs 192.0.2.1\n");

  // ARP: the control (the real address) is answered, neither VIP is.
  CHECK(r.segment.arp_replies(Segment::kRsIp).size() >= 1);
  CHECK(r.segment.arp_replies("192.0.2.10").empty());
  CHECK(r.segment.arp_replies("192.0.2.30").empty());
  CHECK(r.daemon->running());
}

TEST_CASE("redirect: serving a redirected VIP never reveals it in ARP from the real server, sysctls untouched") {
  Redirected r;
  auto http80 = r.serve("rs", 80);
  r.start(kAllRedirect + "[[vip]]\naddress = \"192.0.2.30\"\n");
  REQUIRE(r.sysctls() == r.snapshot_sysctls);
  REQUIRE(r.sysctl("all/arp_announce") == 0);  // the host's default: nothing tunes ARP for us
  // Make the real server ask for the client while it replies from the VIP: the
  // client never ARPs for the real server, and the real server forgot the client.
  r.segment.client.must(std::string("ip neigh replace 192.0.2.1 lladdr ") + Segment::kRsMac +
                        " dev eth0 nud permanent");
  r.segment.rs.must("ip neigh flush dev eth0");
  ArpCapture capture(r.segment.client, "eth0", r.dir.path() + "/capture.log");
  CHECK(r.get("192.0.2.30", 80) == "rs 192.0.2.1\n");
  const std::vector<std::string> frames = capture.stop();
  CAPTURE(frames);
  CHECK(any_line_contains(frames, "who-has 192.0.2.2 tell 192.0.2.1"));  // the control: it did ask
  CHECK_FALSE(any_line_contains(frames, "tell 192.0.2.30"));
  CHECK_FALSE(any_line_contains(frames, "192.0.2.30 is-at"));
  CHECK(r.segment.arp_replies("192.0.2.30").empty());
}

// ---------------------------------------------------------------------------
// Stopping

TEST_CASE("redirect: on_stop = \"remove\" takes the NAT tables away and nothing else; \"keep\" leaves them") {
  for (const std::string on_stop : {"remove", "keep"}) {
    CAPTURE(on_stop);
    Redirected r;
    r.segment.rs.must("nft add table inet other && nft add chain inet other c && ip addr add 192.0.2.77/32 dev lo");
    const std::vector<std::string> addresses = r.all_addresses();
    r.start(kAllRedirect + kGoldenVips, "on_stop = \"" + on_stop + "\"\n");
    REQUIRE(r.nat_intact());
    r.daemon->signal(SIGTERM);
    CHECK(r.daemon->wait(5) == 0);
    if (on_stop == "remove") {
      CHECK_FALSE(r.nat_exists("ip"));
      CHECK_FALSE(r.nat_exists("ip6"));
      CHECK(contains(r.daemon->log(), "stop: arpguard removed"));
    } else {
      CHECK(r.nat_intact());
      // The next arpguardd adopts them as they are: nothing rebuilt (I4 across a restart).
      r.start(kAllRedirect + kGoldenVips, "on_stop = \"keep\"\n", "arpguardd2.log");
      const std::string log = r.daemon->log();
      CAPTURE(log);
      if (contains(r.nat_flags("ip"), "owner")) CHECK(contains(log, "apply: nft adopt orphaned table ip arpguard_nat"));
      CHECK_FALSE(contains(log, "nft create"));
      CHECK_FALSE(contains(log, "nft add"));
      CHECK_FALSE(contains(log, "nft delete"));
      CHECK(r.nat_intact());
    }
    CHECK(r.segment.rs.exec("nft list table inet other").exit_code == 0);
    CHECK(r.all_addresses() == addresses);
    CHECK(r.sysctls() == r.snapshot_sysctls);
    CHECK(r.segment.rs.exec("nft list table arp arpguard").exit_code != 0);
  }
}

// ---------------------------------------------------------------------------
// Readiness and conntrack

TEST_CASE("redirect readiness: not ready while the NAT table is missing, ready again once repaired") {
  Redirected r;
  r.start(kAllRedirect + "[[vip]]\naddress = \"192.0.2.30\"\n" + kReadiness,
          "own_nft_table = false\nsysctl_poll_ms = 100\ncontested_repairs = 3\ncontested_window_ms = 500\n");
  REQUIRE(r.ready("/ready/192.0.2.30") == "200 ready\n");

  // Delete once: repaired, and ready again with the table back.
  r.segment.rs.must("nft delete table ip arpguard_nat");
  CHECK(eventually([&] { return r.nat_exists("ip") && r.ready("/ready/192.0.2.30") == "200 ready\n"; }));
  {
    const nlohmann::json status = r.status_json();
    CHECK(status.value("ready", false));
    CHECK(Redirected::vip_in(status, "192.0.2.30/32").value("ready", false));
    CHECK(status["repairs"].value("total", 0) >= 1);
    bool listed = false;
    for (const auto& t : status.value("tables", nlohmann::json::array())) {
      if (t.value("table", "") == "ip arpguard_nat") listed = t.value("present", false);
    }
    CHECK(listed);
  }

  // Someone deleting it again and again: arpguard backs off between repairs, and
  // while the table is missing readiness says so.
  {
    Process fighter(r.segment.rs.prefix() +
                        "sh -c 'while :; do nft delete table ip arpguard_nat 2>/dev/null; sleep 0.005; done'",
                    r.dir.path() + "/fighter.log");
    std::string seen;
    CAPTURE(seen);
    CHECK(eventually(
        [&] {
          seen = r.ready("/ready/192.0.2.30");
          return seen.rfind("503 ", 0) == 0 && contains(seen, "arpguard_nat");
        },
        10));
    std::string status_seen;
    CAPTURE(status_seen);
    CHECK(eventually(
        [&] {
          const nlohmann::json status = r.status_json();
          status_seen = status.dump();
          return status.value("ready", true) == false &&
                 contains(Redirected::vip_in(status, "192.0.2.30/32").dump(), "arpguard_nat");
        },
        10));
  }
  CHECK(eventually([&] { return r.nat_exists("ip") && r.ready("/ready/192.0.2.30") == "200 ready\n"; }, 15));
}

TEST_CASE("redirect readiness: a service check goes to the mapped port; a missing listener is named") {
  Redirected r;
  r.start(kAllRedirect + "[[vip]]\naddress = \"192.0.2.31\"\nports = [\"tcp:8080->18080\"]\ncheck = \"tcp:8080\"\n" +
              kReadiness,
          "check_interval_ms = 200\n", "arpguardd.log");
  std::string seen;
  CAPTURE(seen);
  CHECK(eventually([&] {
    seen = r.ready("/ready/192.0.2.31");
    return seen.rfind("503 ", 0) == 0 && contains(seen, "service check on 192.0.2.31 failed");
  }));
  CHECK(contains(Redirected::vip_in(r.status_json(), "192.0.2.31/32").dump(), "check_failed"));
  auto http18080 = r.serve("rs", 18080);
  CHECK(eventually([&] { return r.ready("/ready/192.0.2.31") == "200 ready\n"; }));
  CHECK(r.get("192.0.2.31", 8080) == "rs 192.0.2.1\n");
}

TEST_CASE("redirect readiness: the service check must reach what the redirect reaches") {
  // BUG: a redirected VIP's check connects to 127.0.0.1:PORT (::1 for IPv6), but
  // the redirect delivers to the incoming interface's own address (192.0.2.1
  // here). A service listening on 127.0.0.1 only passes the check while no client
  // can reach it; one listening on the real address only serves every client and
  // fails the check.
  Redirected r;
  // The services first, so that the first check already sees them.
  auto loopback_only = std::make_unique<Process>(r.segment.rs.prefix() + "python3 -m http.server -b 127.0.0.1 80",
                                                 r.dir.path() + "/loopback.log");
  auto real_address_only = std::make_unique<Process>(r.segment.rs.prefix() + "python3 -m http.server -b 192.0.2.1 81",
                                                     r.dir.path() + "/real.log");
  REQUIRE(eventually([&] {
    return r.segment.rs.exec("ss -Hltn sport = :80").out.find("LISTEN") != std::string::npos &&
           r.segment.rs.exec("ss -Hltn sport = :81").out.find("LISTEN") != std::string::npos;
  }));
  r.start(kAllRedirect + "[[vip]]\naddress = \"192.0.2.30\"\nports = [\"tcp:80\"]\ncheck = \"tcp:80\"\n" +
              "[[vip]]\naddress = \"192.0.2.31\"\nports = [\"tcp:81\"]\ncheck = \"tcp:81\"\n" + kReadiness,
          "check_interval_ms = 200\n");
  // The clients' view: 192.0.2.30 is not served, 192.0.2.31 is.
  CHECK(r.get("192.0.2.30", 80, 1) == "");
  CHECK(contains(r.get("192.0.2.31", 81), "Directory listing"));
  // Once each VIP's check has run, readiness must match that view.
  REQUIRE(eventually([&] {
    const nlohmann::json status = r.status_json();
    return Redirected::vip_in(status, "192.0.2.30/32").contains("check_ok") &&
           Redirected::vip_in(status, "192.0.2.31/32").contains("check_ok");
  }));
  const std::string unserved = r.ready("/ready/192.0.2.30");
  const std::string served = r.ready("/ready/192.0.2.31");
  CAPTURE(unserved);
  CAPTURE(served);
  CHECK(unserved.rfind("503 ", 0) == 0);
  CHECK(served == "200 ready\n");
}

TEST_CASE("redirect metrics: conntrack usage in /metrics and status") {
  Redirected r;
  auto http80 = r.serve("rs", 80);
  r.start(kAllRedirect + "[[vip]]\naddress = \"192.0.2.30\"\n" + kReadiness, "sysctl_poll_ms = 100\n");
  for (int i = 0; i < 3; ++i) CHECK(r.get("192.0.2.30", 80) == "rs 192.0.2.1\n");
  // conntrack's count is read at each poll; the connections just made are in it (TIME_WAIT).
  auto metric = [&](const std::string& name) -> long long {
    const std::string text = r.ready("/metrics");
    const size_t at = text.find("\n" + name + " ");
    return at == std::string::npos ? -1 : std::stoll(text.substr(at + name.size() + 2));
  };
  CHECK(eventually([&] { return metric("arpguard_conntrack_entries") >= 3; }));
  CHECK(metric("arpguard_conntrack_max") > 0);
  const nlohmann::json status = r.status_json();
  REQUIRE(status.contains("conntrack"));
  CHECK(status["conntrack"].value("entries", 0) >= 3);
  CHECK(status["conntrack"].value("max", 0) > 0);
  // The kernel's own numbers, for comparison.
  CHECK(std::stoll(r.segment.rs.must("cat /proc/sys/net/netfilter/nf_conntrack_max")) ==
        status["conntrack"].value("max", 0LL));
}
