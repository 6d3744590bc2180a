// The one-shot peers of PeerServer: the control socket (one command, one reply)
// with its path rules, and the HAProxy agent-check (one line on accept).
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <functional>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "tests/peers/peer_loop.h"

namespace arpguard::testing {
namespace {

namespace fs = std::filesystem;

// A fresh directory under /tmp, removed with everything in it.
struct TempDir {
  TempDir() {
    char pattern[] = "/tmp/peers-test-XXXXXX";
    REQUIRE(mkdtemp(pattern) != nullptr);
    path = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
  std::string path;
};

// A unix socket bound at `path`: listening (a live server) or closed right away (stale).
int bind_unix_socket(const std::string& path, bool listening) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  if (listening) {
    REQUIRE(listen(fd, 8) == 0);
    return fd;
  }
  close(fd);
  return -1;
}

std::string file_contents(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

struct ControlFixture {
  explicit ControlFixture(PeerLimits limits = {}) : loop(handlers(), limits), path(directory / "control.sock") {
    const Status listening = loop.server().listen_control(path);
    REQUIRE_MESSAGE(listening.ok(), listening.message());
  }
  // "status" gets a 10 MB reply, "boom" throws, anything else is echoed.
  PeerHandlers handlers() {
    PeerHandlers result;
    result.control = [this](std::string_view line) -> std::string {
      commands.emplace_back(line);
      if (line == "status") return std::string(10 << 20, 's');
      if (line == "boom") throw std::runtime_error("handler bug");
      if (line == "slow") {
        // A reload of 100,000 VIPs: seconds long, serving the other peers between its windows.
        if (during_slow) during_slow();
        const double until = monotonic_now() + slow_seconds;
        while (monotonic_now() < until) loop.run_once(0.01);
        served_during_slow = commands;
        return "{\"ok\":true,\"slow\":true}\n";
      }
      return "{\"ok\":true,\"echo\":\"" + std::string(line) + "\"}\n";
    };
    result.clock = monotonic_now;
    return result;
  }
  std::string exchange(const std::string& bytes) {
    TestClient client = TestClient::unix_stream(path);
    client.send(bytes);
    REQUIRE(await_server_close(loop, client));
    return client.received;
  }
  TempDir directory;
  std::vector<std::string> commands;
  std::function<void()> during_slow;
  std::vector<std::string> served_during_slow;
  double slow_seconds = 0;
  PeerLoop loop;
  std::string path;
};

TEST_CASE("a control command line gets the owner's reply, then the socket closes") {
  ControlFixture fixture;
  CHECK(fixture.exchange("drain\n") == "{\"ok\":true,\"echo\":\"drain\"}\n");
  CHECK(fixture.commands == std::vector<std::string>{"drain"});
  CHECK(fixture.loop.run_until([&] { return fixture.loop.server().counters().control.open == 0; }, 1.0));
}

TEST_CASE("a handler that outlasts the connection's deadline, serving others meanwhile, still gets its reply out") {
  PeerLimits limits;
  limits.one_shot_seconds = 0.3;
  ControlFixture fixture(limits);
  fixture.slow_seconds = 1.0;
  std::vector<TestClient> others;
  fixture.during_slow = [&] {
    others.push_back(TestClient::unix_stream(fixture.path));
    others.back().send("drain\n");
  };
  TestClient slow = TestClient::unix_stream(fixture.path);
  slow.send("slow\n");
  REQUIRE(await_server_close(fixture.loop, slow, 5.0));
  // Its connection was neither closed at its deadline nor read again meanwhile.
  CHECK(slow.received == "{\"ok\":true,\"slow\":true}\n");
  CHECK(fixture.loop.server().counters().control.timed_out == 0);
  // The others were served from inside it.
  CHECK(fixture.served_during_slow == std::vector<std::string>{"slow", "drain"});
  REQUIRE(others.size() == 1);
  REQUIRE(await_server_close(fixture.loop, others.back()));
  CHECK(others.back().received == "{\"ok\":true,\"echo\":\"drain\"}\n");
}

TEST_CASE("the control socket is mode 0660 and removed when the server goes") {
  TempDir directory;
  const std::string path = directory / "control.sock";
  {
    PeerLoop loop(PeerHandlers{});
    REQUIRE(loop.server().listen_control(path).ok());
    struct stat status {};
    REQUIRE(lstat(path.c_str(), &status) == 0);
    CHECK(S_ISSOCK(status.st_mode));
    CHECK((status.st_mode & 07777) == 0660);
  }
  CHECK_FALSE(fs::exists(fs::symlink_status(path)));
}

TEST_CASE("control bytes outside printable ASCII get the invalid-bytes error and a close") {
  ControlFixture fixture;
  CHECK(fixture.exchange("sta\ttus\n") == "{\"ok\":false,\"error\":\"invalid bytes in command\"}\n");
  CHECK(fixture.exchange("status\r\n") == "{\"ok\":false,\"error\":\"invalid bytes in command\"}\n");
  CHECK(fixture.exchange(std::string("st\0atus\n", 8)) == "{\"ok\":false,\"error\":\"invalid bytes in command\"}\n");
  CHECK(fixture.commands.empty());
  CHECK(fixture.loop.server().counters().control.rejected == 3);
}

TEST_CASE("a control line over 256 bytes gets an error and a close; 256 with its newline is fine") {
  ControlFixture fixture;
  CHECK(fixture.exchange(std::string(300, 'a') + "\n") == "{\"ok\":false,\"error\":\"command too long\"}\n");
  CHECK(fixture.exchange(std::string(255, 'b') + "\n").find("\"ok\":true") != std::string::npos);
  CHECK(fixture.commands == std::vector<std::string>{std::string(255, 'b')});
}

TEST_CASE("a control peer that sends nothing is closed at its deadline") {
  PeerLimits limits;
  limits.one_shot_seconds = 0.3;
  ControlFixture fixture(limits);
  TestClient silent = TestClient::unix_stream(fixture.path);
  const double connected = monotonic_now();
  REQUIRE(await_server_close(fixture.loop, silent));
  const double elapsed = monotonic_now() - connected;
  CHECK(elapsed >= 0.3 - 0.01);
  CHECK(elapsed < 0.3 + 0.25);
  CHECK(silent.received.empty());
  CHECK(fixture.loop.server().counters().control.timed_out == 1);
}

TEST_CASE("a control peer that never reads a 10 MB reply is closed at its deadline and the reply freed") {
  PeerLimits limits;
  limits.one_shot_seconds = 0.5;
  ControlFixture fixture(limits);
  TestClient reader_that_never_reads = TestClient::unix_stream(fixture.path);
  reader_that_never_reads.send("status\n");
  shutdown(reader_that_never_reads.fd, SHUT_WR);  // its half-close must not wake the loop again and again
  const double sent = monotonic_now();
  fixture.loop.run_for(0.1);
  CHECK(fixture.loop.server().counters().pending_output_bytes > (5u << 20));
  REQUIRE(fixture.loop.run_until([&] { return fixture.loop.server().counters().control.open == 0; }, 2.0));
  const double elapsed = monotonic_now() - sent;
  CHECK(elapsed >= 0.5 - 0.01);
  CHECK(elapsed < 0.5 + 0.25);
  CHECK(fixture.loop.server().counters().pending_output_bytes == 0);
  CHECK(fixture.loop.server().counters().control.timed_out == 1);
  CHECK(fixture.loop.events_handled() < 20);
}

TEST_CASE("a control peer that hangs up before its 10 MB reply costs only itself") {
  ControlFixture fixture;
  TestClient client = TestClient::unix_stream(fixture.path);
  client.send("status\n");
  client.hang_up();
  REQUIRE(fixture.loop.run_until(
      [&] {
        const PeerCounters counters = fixture.loop.server().counters();
        return counters.control.accepted == 1 && counters.control.open == 0;
      },
      2.0));
  CHECK(fixture.commands == std::vector<std::string>{"status"});
  CHECK(fixture.exchange("ping\n") == "{\"ok\":true,\"echo\":\"ping\"}\n");
}

TEST_CASE("a control handler that throws gets an error reply; the daemon goes on") {
  ControlFixture fixture;
  CHECK(fixture.exchange("boom\n") == "{\"ok\":false,\"error\":\"internal error\"}\n");
  CHECK(fixture.loop.server().counters().control.handler_failures == 1);
  CHECK(fixture.exchange("ping\n") == "{\"ok\":true,\"echo\":\"ping\"}\n");
}

TEST_CASE("the control path: only nothing or a stale socket is replaced, everything else is left alone") {
  TempDir directory;
  PeerLoop loop(PeerHandlers{});
  const auto refused = [&](const std::string& path, const std::string& says) {
    const Status status = loop.server().listen_control(path);
    REQUIRE_FALSE(status.ok());
    CHECK_MESSAGE(status.message().find(path) != std::string::npos, status.message());
    CHECK_MESSAGE(status.message().find(says) != std::string::npos, status.message());
  };

  SUBCASE("a regular file is refused and keeps its bytes") {
    const std::string path = directory / "control.sock";
    std::ofstream(path) << "precious";
    refused(path, "regular file");
    CHECK(file_contents(path) == "precious");
  }
  SUBCASE("a directory is refused and left in place") {
    const std::string path = directory / "control.sock";
    fs::create_directory(path);
    refused(path, "directory");
    CHECK(fs::is_directory(path));
  }
  SUBCASE("a symlink, even to a socket, is refused and left in place") {
    const std::string target = directory / "real.sock";
    bind_unix_socket(target, /*listening=*/false);
    const std::string path = directory / "control.sock";
    fs::create_symlink(target, path);
    refused(path, "symbolic link");
    CHECK(fs::is_symlink(path));
    CHECK(fs::is_socket(target));
  }
  SUBCASE("a fifo is refused and left in place") {
    const std::string path = directory / "control.sock";
    REQUIRE(mkfifo(path.c_str(), 0600) == 0);
    refused(path, "fifo");
    CHECK(fs::is_fifo(path));
  }
  SUBCASE("a live socket is refused: another arpguardd answers there") {
    const std::string path = directory / "control.sock";
    const int live = bind_unix_socket(path, /*listening=*/true);
    refused(path, "another arpguardd is answering on it");
    CHECK(fs::is_socket(path));
    close(live);
  }
  SUBCASE("a stale socket is replaced by a working one") {
    const std::string path = directory / "control.sock";
    bind_unix_socket(path, /*listening=*/false);
    PeerHandlers handlers;
    handlers.control = [](std::string_view) { return std::string("pong\n"); };
    PeerLoop serving(handlers);
    const Status status = serving.server().listen_control(path);
    REQUIRE_MESSAGE(status.ok(), status.message());
    TestClient client = TestClient::unix_stream(path);
    client.send("ping\n");
    REQUIRE(await_server_close(serving, client));
    CHECK(client.received == "pong\n");
  }
}

TEST_CASE("a control socket replaced by someone else is not unlinked on destruction") {
  TempDir directory;
  const std::string path = directory / "control.sock";
  SUBCASE("replaced by a regular file") {
    {
      PeerLoop loop(PeerHandlers{});
      REQUIRE(loop.server().listen_control(path).ok());
      fs::remove(path);
      std::ofstream(path) << "someone else's";
    }
    CHECK(file_contents(path) == "someone else's");
  }
  SUBCASE("replaced by another server's socket") {
    int other = -1;
    {
      PeerLoop loop(PeerHandlers{});
      REQUIRE(loop.server().listen_control(path).ok());
      fs::remove(path);
      other = bind_unix_socket(path, /*listening=*/true);
    }
    CHECK(fs::is_socket(path));
    close(other);
  }
}

struct AgentCheckFixture {
  explicit AgentCheckFixture(std::function<std::string()> line)
      : loop(PeerHandlers{{}, std::move(line), {}, {}}), address(free_tcp_address("127.0.0.1")) {
    const Status listening = loop.server().listen_agent_check(address.get(), address.length, "agent-check test");
    REQUIRE_MESSAGE(listening.ok(), listening.message());
  }
  PeerLoop loop;
  ListenAddress address;
};

TEST_CASE("an agent-check peer gets the owner's line and the connection closes") {
  AgentCheckFixture fixture([] { return std::string("up ready 100%\n"); });
  TestClient haproxy = TestClient::tcp(fixture.address);
  REQUIRE(await_server_close(fixture.loop, haproxy));
  CHECK(haproxy.received == "up ready 100%\n");
  CHECK(fixture.loop.run_until([&] { return fixture.loop.server().counters().agent_check.open == 0; }, 1.0));
}

TEST_CASE("agent-send text from HAProxy is read and ignored") {
  AgentCheckFixture fixture([] { return std::string("drain"); });
  TestClient haproxy = TestClient::tcp(fixture.address);
  haproxy.send("hello from haproxy\n");
  REQUIRE(await_server_close(fixture.loop, haproxy));
  CHECK(haproxy.received == "drain\n");
  // Text arriving after the line is drained too (lingering close), not answered with an RST.
  haproxy.send("late agent-send text\n");
  fixture.loop.run_for(0.05);
  int socket_error = 0;
  socklen_t length = sizeof(socket_error);
  REQUIRE(getsockopt(haproxy.fd, SOL_SOCKET, SO_ERROR, &socket_error, &length) == 0);
  CHECK(socket_error == 0);
}

TEST_CASE("an agent-check handler that throws reports a failure line, not a crash") {
  AgentCheckFixture fixture([]() -> std::string { throw std::runtime_error("handler bug"); });
  TestClient haproxy = TestClient::tcp(fixture.address);
  REQUIRE(await_server_close(fixture.loop, haproxy));
  CHECK(haproxy.received.rfind("fail", 0) == 0);
  CHECK(fixture.loop.server().counters().agent_check.handler_failures == 1);
}

}  // namespace
}  // namespace arpguard::testing
