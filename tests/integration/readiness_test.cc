// Readiness as the director and the operator see it: HTTP from the client's
// side of the wire, `arpguard status` exit codes, and independent tools
// (curl, jq, promtool) reading what arpguardd serves.
#include <doctest/doctest.h>
#include <signal.h>

#include "guarded.h"

using namespace arpguard::testing;

namespace {

const std::string kUrl = "http://192.0.2.1:9480";

struct Ready : Guarded {
  explicit Ready(const std::string& vip_extra = "", const std::string& started = "ready:")
      : policy(write_policy("[[vip]]\naddress = \"192.0.2.10\"\n" + vip_extra +
                                "[readiness]\nlisten = [\"192.0.2.1:9480\"]\nagent_check_listen = [\"192.0.2.1:9777\"]\n",
                            "check_interval_ms = 200\n")),
        daemon(std::make_unique<Process>(segment.rs.prefix() + arpguardd_bin() + " --policy " + policy,
                                         dir.path() + "/arpguardd.log")) {
    REQUIRE(daemon->wait_for_log(started, 5));
  }
  void restart() {
    daemon->signal(SIGTERM);
    REQUIRE(daemon->wait(5) == 0);
    daemon = std::make_unique<Process>(segment.rs.prefix() + arpguardd_bin() + " --policy " + policy,
                                       dir.path() + "/arpguardd2.log");
    REQUIRE(daemon->wait_for_log("ready:", 5));
  }
  /// "CODE\nBODY" of a request made from the client namespace.
  std::string http(const std::string& path, const std::string& curl_flags = "") const {
    return segment.client.exec("curl -s -m 5 " + curl_flags + " -w '%{http_code}' -o /tmp/" + segment.client.name() +
                               ".body " + kUrl + path + "; echo; cat /tmp/" + segment.client.name() + ".body")
        .out;
  }
  CommandResult status(const std::string& flags = "") const {
    return run(arpguard_bin() + " status --socket " + control_socket() + " " + flags);
  }
  std::string first_line(const std::string& flags = "") const {
    const std::string out = status(flags).out;
    return out.substr(0, out.find('\n'));
  }
  std::string agent_check() const {
    return segment.client.exec("python3 -c 'import socket; s = socket.create_connection((\"192.0.2.1\", 9777)); "
                               "print(s.recv(200).decode(), end=\"\")'")
        .out;
  }

  std::string policy;
  std::unique_ptr<Process> daemon;
};

bool starts_with(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

}  // namespace

TEST_CASE("ready: 200 from /ready and /ready/<vip>, OK from status, up from the agent") {
  Ready r;
  CHECK(r.http("/ready") == "200\nready\n");
  CHECK(r.http("/ready/192.0.2.10") == "200\nready\n");
  CHECK(r.http("/ready/192.0.2.10/32") == "200\nready\n");
  CHECK(r.http("/ready/198.51.100.1") == "404\nno such VIP in the policy: 198.51.100.1\n");
  CHECK(r.http("/nope").rfind("404\n", 0) == 0);
  CHECK(r.agent_check() == "up ready 100%\n");
  CommandResult status = r.status();
  CHECK(status.exit_code == 0);
  CHECK(starts_with(status.out, "ARPGUARD OK - 1/1 VIPs ready, method both | vips=1;;;0 ready_vips=1;;;0 "));
  CHECK(status.out.find("  192.0.2.10/32        dev lo     ready\n") != std::string::npos);
  CHECK(status.out.find("eth0       arp_ignore=1 arp_announce=2 arp_filter=0  real ip 192.0.2.1") != std::string::npos);
}

TEST_CASE("HEAD gets headers only; other methods get 405; nothing changes state over HTTP") {
  Ready r;
  CHECK(r.segment.client.exec("curl -s -I -w '%{http_code} %{size_download}' -o /dev/null " + kUrl + "/ready").out ==
        "200 0");
  CHECK(r.http("/ready", "-X POST") == "405\nMethod Not Allowed: only GET and HEAD are served\n");
  CHECK(r.http("/ready", "-X DELETE").rfind("405\n", 0) == 0);
  CHECK(r.http("/ready", "-X GET -d drain") == "413\nContent Too Large: request bodies are not accepted\n");
  CHECK(r.http("/ready") == "200\nready\n");
}

TEST_CASE("oversized and malformed requests get 4xx and the daemon is unaffected") {
  Ready r;
  const std::string big_header = "-H 'X-Big: " + std::string(40000, 'a') + "'";
  CHECK(r.http("/ready", big_header).rfind("431\n", 0) == 0);  // Request Header Fields Too Large
  const std::string long_url = r.http("/ready/" + std::string(40000, 'b'));
  CHECK(long_url.rfind("4", 0) == 0);
  auto raw = [&](const std::string& request) {
    return r.segment.client
        .exec("python3 -c 'import socket, sys; s = socket.create_connection((\"192.0.2.1\", 9480)); "
              "s.sendall(sys.argv[1].encode().decode(\"unicode_escape\").encode(\"latin-1\")); "
              "print(s.recv(100).decode(errors=\"replace\").split(\"\\r\\n\")[0])' " + quote(request))
        .out;
  };
  CHECK(raw("GET /ready HTTP/1.1\\r\\nHost: x\\r\\nno colon here\\r\\n\\r\\n") == "HTTP/1.1 400 Bad Request\n");
  // Bytes that are not HTTP at all: 400, and only that connection closes.
  CHECK(raw("\\x00\\x01GARBAGE \\xff\\r\\n\\r\\n") == "HTTP/1.1 400 Bad Request\n");
  CHECK(r.http("/ready") == "200\nready\n");
  CHECK(r.daemon->running());
}

TEST_CASE("/status is the JSON of status --json; jq reads both") {
  Ready r;
  const std::string http = r.http("/status");
  REQUIRE(http.rfind("200\n", 0) == 0);
  const nlohmann::json served = nlohmann::json::parse(http.substr(4));
  CommandResult cli = r.status("--json");
  CHECK(cli.exit_code == 0);
  const nlohmann::json printed = nlohmann::json::parse(cli.out);
  CHECK(served["vips"] == printed["vips"]);
  CHECK(served["interfaces"] == printed["interfaces"]);
  CHECK(run("echo " + quote(cli.out) + " | jq -e '.ready == true and .vips[0].address == \"192.0.2.10/32\" and "
            ".tables[0].table == \"arp arpguard\" and .tables[0].present == true'").exit_code == 0);
}

TEST_CASE("/metrics is valid Prometheus text, as promtool reads it") {
  Ready r;
  const std::string http = r.http("/metrics");
  REQUIRE(http.rfind("200\n", 0) == 0);
  const std::string metrics = http.substr(4);
  CommandResult promtool = run("echo " + quote(metrics) + " | promtool check metrics");
  CHECK(promtool.exit_code == 0);
  CHECK(promtool.out + promtool.err == "");
  CHECK(metrics.find("arpguard_vip_ready{vip=\"192.0.2.10/32\",device=\"lo\",method=\"both\"} 1\n") != std::string::npos);
}

TEST_CASE("a VIP that is gone and cannot come back: 503 with the reason, CRITICAL, down") {
  Ready r("device = \"vip0\"\n", "started, not ready");  // on a NOARP device that does not exist yet
  // The policy's VIP device does not exist yet: not ready from the start.
  CHECK(r.http("/ready") == "503\nnot ready:\n  vip 192.0.2.10/32: device vip0 does not exist\n");
  CHECK(r.agent_check() == "down #vip 192.0.2.10/32: device vip0 does not exist\n");
  CommandResult status = r.status();
  CHECK(status.exit_code == 2);
  CHECK(starts_with(status.out, "ARPGUARD CRITICAL - not ready: vip 192.0.2.10/32: device vip0 does not exist | "));
  r.segment.rs.must("ip link add vip0 type veth peer name vip0p && ip link set vip0 arp off");
  // There, but down: the kernel delivers nothing to an address on a device that is down.
  CHECK(eventually([&] { return r.http("/ready") == "503\nnot ready:\n  vip 192.0.2.10/32: device vip0 is down\n"; }));
  r.segment.rs.must("ip link set vip0 up");
  CHECK(eventually([&] { return r.http("/ready") == "200\nready\n"; }));
}

TEST_CASE("lo down: not ready, naming it, and ready again once lo is up") {
  Ready r;
  r.segment.rs.must("ip link set lo down");
  CHECK(eventually([&] { return r.http("/ready") == "503\nnot ready:\n  vip 192.0.2.10/32: device lo is down\n"; }));
  CHECK(r.status().exit_code == 2);
  r.segment.rs.must("ip link set lo up");
  CHECK(eventually([&] { return r.http("/ready") == "200\nready\n"; }));
  CHECK(r.status().exit_code == 0);
}

TEST_CASE("a repair makes status a WARNING naming it") {
  Ready r;
  r.segment.rs.must("ip addr del 192.0.2.10/32 dev lo");
  REQUIRE(r.daemon->wait_for_log("repair after", 2));
  CommandResult status = r.status();
  CHECK(status.exit_code == 1);
  CHECK(starts_with(status.out, "ARPGUARD WARNING - 1/1 VIPs ready, method both, repaired "));
  CHECK(status.out.find("after RTM_DELADDR 192.0.2.10/32 dev lo: add vip 192.0.2.10/32 dev lo") != std::string::npos);
}

TEST_CASE("drain: WARNING, 503 draining, drain to HAProxy; it survives a restart until resume") {
  Ready r;
  CommandResult drain = run(arpguard_bin() + " drain --socket " + r.control_socket());
  CHECK(drain.exit_code == 0);
  CHECK(r.http("/ready") == "503\nnot ready:\n  draining (arpguard drain)\n");
  CHECK(r.agent_check() == "drain\n");
  CHECK(r.status().exit_code == 1);
  CHECK(starts_with(r.first_line(), "ARPGUARD WARNING - draining; 1 VIP(s) held | "));

  r.restart();
  CHECK(r.agent_check() == "drain\n");
  CHECK(r.daemon->log().find("draining, as the operator asked before this start") != std::string::npos);

  CHECK(run(arpguard_bin() + " resume --socket " + r.control_socket()).exit_code == 0);
  CHECK(r.agent_check() == "up ready 100%\n");
  CHECK(r.http("/ready") == "200\nready\n");
}

TEST_CASE("no daemon: UNKNOWN with a clear message") {
  TempDir dir;
  CommandResult status = run(arpguard_bin() + " status --socket " + dir.path() + "/none.sock");
  CHECK(status.exit_code == 3);
  CHECK(status.out == "ARPGUARD UNKNOWN - cannot reach arpguardd at " + dir.path() +
                          "/none.sock: No such file or directory\n");
  CommandResult drain = run(arpguard_bin() + " drain --socket " + dir.path() + "/none.sock");
  CHECK(drain.exit_code == 1);
}

TEST_CASE("a VIP's service check going down and up") {
  Ready r("check = \"tcp:80\"\n");
  CHECK(eventually([&] { return r.http("/ready/192.0.2.10").find("Connection refused") != std::string::npos; }));
  CHECK(r.http("/ready/192.0.2.10") ==
        "503\nnot ready:\n  service check on 192.0.2.10 failed: tcp:80 Connection refused\n");
  {
    Process web(r.segment.rs.prefix() + "python3 -m http.server 80 --bind 192.0.2.10", r.dir.path() + "/web.log");
    CHECK(eventually([&] { return r.http("/ready/192.0.2.10") == "200\nready\n"; }));
    CHECK(r.daemon->log().find("service check on 192.0.2.10 tcp:80 passes") != std::string::npos);
  }
  CHECK(eventually([&] { return r.http("/ready").rfind("503\n", 0) == 0; }));
}
