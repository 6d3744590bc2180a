#include "tests/chaos/clients.h"

#include <chrono>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/chaos/net_clients.h"
#include "tests/support/netlab.h"

namespace arpguard::chaos {

using testing::quote;
using testing::run;

namespace {

constexpr double kAnswerTimeout = 3.0;

// Sleeps until `until` or `stop`, in small steps.
void pause_until(double until, const std::atomic<bool>& stop) {
  while (!stop && wall_now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

std::string request(const std::string& path, const std::string& extra = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: 192.0.2.1:9480\r\n" + extra + "\r\n";
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

bool agent_line_valid(const std::string& line) {
  return line == "up ready 100%\n" || line == "drain\n" || (line.rfind("down #", 0) == 0 && line.back() == '\n');
}

}  // namespace

void probe_ready(const ClientSetup& setup, Records& records, const std::atomic<bool>& stop) {
  enter_netns(setup.client_netns);
  while (!stop) {
    Probe p;
    p.sent = wall_now();
    Connection c;
    if (!c.connect_tcp(setup.server_ip, setup.http_port, kAnswerTimeout)) {
      p.text = c.error();
    } else if (!c.send_all(request("/ready", "Connection: close\r\n"))) {
      p.text = c.error();
    } else if (auto response = c.read_http_response(kAnswerTimeout)) {
      p.code = http_status(*response);
      if (p.code != 200 && p.code != 503) p.text = first_line(*response);
    } else {
      p.text = c.error();
    }
    p.received = wall_now();
    if (p.code == 0) {
      records.anomaly("GET /ready got no answer (" + p.text + ") after " + std::to_string(p.received - p.sent) + " s", true);
    } else if (p.code != 200 && p.code != 503) {
      records.anomaly("GET /ready answered " + p.text, true);
    }
    records.ready(p);
    pause_until(p.sent + 0.02, stop);
  }
}

void probe_agent_check(const ClientSetup& setup, Records& records, const std::atomic<bool>& stop) {
  enter_netns(setup.client_netns);
  while (!stop) {
    Probe p;
    p.sent = wall_now();
    Connection c;
    if (c.connect_tcp(setup.server_ip, setup.agent_port, kAnswerTimeout)) {
      p.text = c.read_all(kAnswerTimeout, 4096);
      if (!c.closed_by_peer()) p.text += " (not closed: " + c.error() + ")";
    } else {
      p.text = "(" + c.error() + ")";
    }
    p.received = wall_now();
    p.code = p.text.rfind("up ", 0) == 0 ? 200 : (agent_line_valid(p.text) ? 503 : 0);
    if (!agent_line_valid(p.text)) records.anomaly("agent-check answered '" + p.text + "'", true);
    records.agent(p);
    pause_until(p.sent + 0.05, stop);
  }
}

void http_rabble(const ClientSetup& setup, Records& records, const std::atomic<bool>& stop, uint64_t seed) {
  enter_netns(setup.client_netns);
  std::mt19937_64 rng(seed);
  auto uniform = [&](double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); };
  auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  std::vector<std::string> paths = {"/ready", "/metrics", "/status", "/status/vips"};
  paths.insert(paths.end(), setup.vip_paths.begin(), setup.vip_paths.end());
  const std::string base = "http://" + setup.server_ip + ":" + std::to_string(setup.http_port);
  while (!stop) {
    const size_t manner = pick(11);
    Connection c;
    if (manner == 10) {  // a rude agent-check peer: hangs up, resets, or never reads
      const size_t how = pick(3);
      if (c.connect_tcp(setup.server_ip, setup.agent_port, kAnswerTimeout)) {
        if (how == 2) pause_until(wall_now() + uniform(0.5, 3), stop);
        c.close(how == 1);
      }
      static const char* const names[] = {"agent-check: hang-up at once", "agent-check: reset at once",
                                          "agent-check: never reads, then hangs up"};
      records.count("http", names[how]);
    } else if (manner <= 2) {  // fast, with curl
      const std::string path = paths[pick(paths.size())];
      const std::string code =
          run("curl -s -m 3 -o /dev/null -w '%{http_code}' " + quote(base + path)).out;
      const bool readiness = path.rfind("/ready", 0) == 0;
      const bool expected = readiness ? (code == "200" || code == "503" || (path != "/ready" && code == "404"))
                                      : code == "200";
      records.count("http", "curl " + (readiness && path != "/ready" ? std::string("/ready/<vip>") : path) + " -> " + code);
      if (!expected) records.anomaly("curl " + path + " answered HTTP " + code, true);
    } else if (manner == 3) {  // keep-alive, two pipelined requests
      bool ok = c.connect_tcp(setup.server_ip, setup.http_port, kAnswerTimeout) &&
                c.send_all(request("/ready") + request("/metrics"));
      auto first = ok ? c.read_http_response(kAnswerTimeout) : std::nullopt;
      auto second = first ? c.read_http_response(kAnswerTimeout) : std::nullopt;
      ok = second && http_status(*second) == 200 && (http_status(*first) == 200 || http_status(*first) == 503);
      records.count("http", std::string("pipelined /ready + /metrics -> ") + (ok ? "both answered" : "NOT both answered"));
      if (!ok) records.anomaly("pipelined /ready + /metrics not both answered: " + c.error(), true);
    } else if (manner == 4) {  // trickling, a byte at a time, within the 5 s request deadline
      const std::string bytes = request("/ready");
      bool sent = c.connect_tcp(setup.server_ip, setup.http_port, kAnswerTimeout);
      for (size_t i = 0; sent && i < bytes.size() && !stop; ++i) {
        sent = c.send_all(bytes.substr(i, 1));
        pause_until(wall_now() + uniform(0.01, 0.09), stop);
      }
      auto response = sent ? c.read_http_response(kAnswerTimeout) : std::nullopt;
      records.count("http", "trickled request -> " + (response ? std::to_string(http_status(*response)) : "closed"));
    } else if (manner == 5) {  // opens, says nothing, waits to be dropped
      if (c.connect_tcp(setup.server_ip, setup.http_port, kAnswerTimeout)) {
        const double start = wall_now();
        const double until = start + uniform(1, 7);
        while (!stop && !c.closed_by_peer() && wall_now() < until) c.read_all(0.1, 1);
        records.count("http", c.closed_by_peer() && wall_now() - start > 4 ? "silent peer dropped after ~5 s"
                                                                           : "silent peer gave up first");
      }
    } else if (manner == 6) {  // hangs up early, in one of four ways
      const size_t how = pick(4);
      if (c.connect_tcp(setup.server_ip, setup.http_port, kAnswerTimeout)) {
        if (how == 1) c.send_all("GET /rea");
        if (how >= 2) c.send_all(request("/status"));
        if (how == 3) c.read_all(0.2, 5);
        c.close(how == 2);
      }
      static const char* const names[] = {"hang-up after connect", "hang-up mid-request", "reset after request",
                                          "hang-up after 5 bytes of the answer"};
      records.count("http", names[how]);
    } else if (manner <= 8) {  // garbage bytes, or a header far too big
      std::string bytes;
      if (manner == 7) {
        const size_t n = 1 + pick(4096);
        for (size_t i = 0; i < n; ++i) bytes += static_cast<char>(pick(256));
        bytes += "\r\n\r\n";
      } else {
        bytes = "GET /ready HTTP/1.1\r\nX-Big: " + std::string(20000 + pick(30000), 'a') + "\r\n\r\n";
      }
      if (c.connect_tcp(setup.server_ip, setup.http_port, kAnswerTimeout)) {
        c.send_all(bytes);
        auto response = c.read_http_response(kAnswerTimeout);
        records.count("http", std::string(manner == 7 ? "garbage" : "oversized header") + " -> " +
                                  (response ? std::to_string(http_status(*response)) : "closed"));
      }
    } else {  // a HEAD and an unsupported method
      const bool head = pick(2) == 0;
      if (c.connect_tcp(setup.server_ip, setup.http_port, kAnswerTimeout) &&
          c.send_all(head ? "HEAD /ready HTTP/1.1\r\nHost: x\r\n\r\n" : "DELETE /ready HTTP/1.1\r\nHost: x\r\n\r\n")) {
        const std::string answer = c.read_all(0.5, 4096);
        records.count("http", std::string(head ? "HEAD /ready -> " : "DELETE /ready -> ") +
                                  std::to_string(http_status(answer)));
      }
    }
    pause_until(wall_now() + uniform(0, 0.05), stop);
  }
}

void control_rabble(const ClientSetup& setup, Records& records, const std::atomic<bool>& stop, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto uniform = [&](double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); };
  auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  const std::string cli = setup.arpguard;
  const std::string socket = " --socket " + quote(setup.socket);
  auto parses = [](const std::string& text) {
    try {
      return nlohmann::json::parse(text).is_object();
    } catch (const nlohmann::json::exception&) {
      return false;
    }
  };
  double last_drain = wall_now();
  while (!stop) {
    const size_t manner = pick(10);
    Connection c;
    if (manner <= 2) {  // fast: the CLI
      const bool json = manner == 2;
      testing::CommandResult r = run(cli + " status" + (json ? " --json" : "") + socket);
      records.count("control", std::string(json ? "status --json" : "status") + " -> exit " + std::to_string(r.exit_code));
      if (r.exit_code > 2 || (json && !parses(r.out))) {
        records.anomaly("arpguard status" + std::string(json ? " --json" : "") + " exited " +
                            std::to_string(r.exit_code) + ": " + first_line(r.out + r.err),
                        true);
      }
    } else if (manner == 3) {  // fast: raw "status vips"
      const bool ok = c.connect_unix(setup.socket) && c.send_all("status vips\n");
      const std::string reply = ok ? c.read_all(kAnswerTimeout) : "";
      records.count("control", std::string("raw 'status vips' -> ") + (parses(reply) ? "JSON" : "NO JSON"));
      if (!parses(reply)) records.anomaly("control 'status vips' got no JSON: " + c.error(), true);
    } else if (manner == 4) {  // slow: connect, wait, then ask
      if (c.connect_unix(setup.socket)) {
        const double wait = uniform(0.1, 3.0);
        pause_until(wall_now() + wait, stop);
        const bool sent = c.send_all("status\n");
        const std::string reply = sent ? c.read_all(kAnswerTimeout) : "";
        records.count("control", std::string("slow (") + (wait < 2 ? "< 2 s" : ">= 2 s") + ") -> " +
                                     (parses(reply) ? "answered" : "dropped"));
        if (wait < 1.5 && !parses(reply)) records.anomaly("a control client that waited " + std::to_string(wait) +
                                                              " s before asking was not answered", false);
      }
    } else if (manner <= 6) {  // rude: hang up early
      const size_t how = pick(3);
      if (c.connect_unix(setup.socket)) {
        if (how == 1) c.send_all("sta");
        if (how == 2) c.send_all("status\n");
        c.close(how == 2);
      }
      static const char* const names[] = {"hang-up after connect", "hang-up mid-command", "reset after command"};
      records.count("control", names[how]);
    } else if (manner <= 8) {  // garbage
      std::string bytes;
      const size_t n = 1 + pick(3000);
      for (size_t i = 0; i < n; ++i) bytes += static_cast<char>(pick(256));
      if (c.connect_unix(setup.socket)) {
        c.send_all(bytes + "\n");
        const std::string reply = c.read_all(kAnswerTimeout);
        records.count("control", std::string("garbage -> ") +
                                     (parses(reply) ? "JSON" : (reply.empty() ? "closed" : "other bytes")));
      }
    } else if (wall_now() - last_drain > 5) {  // now and then a short drain
      testing::CommandResult drain = run(cli + " drain" + socket);
      DrainWindow w{wall_now(), 0};
      pause_until(wall_now() + uniform(0.2, 0.6), stop);
      w.resumed = wall_now();
      testing::CommandResult resume = run(cli + " resume" + socket);
      records.count("control", "drain + resume");
      if (drain.exit_code == 0) records.drain(w);
      if (drain.exit_code != 0 || resume.exit_code != 0) {
        records.anomaly("drain/resume failed: " + first_line(drain.err) + " / " + first_line(resume.err), true);
      }
      last_drain = wall_now();
    }
    pause_until(wall_now() + uniform(0, 0.05), stop);
  }
}

}  // namespace arpguard::chaos
