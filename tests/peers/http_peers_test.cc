// The HTTP side of PeerServer over real TCP sockets: answers, refusals,
// keep-alive, and peers that are slow, silent, numerous or gone.
#include <doctest/doctest.h>

#include <csignal>
#include <stdexcept>
#include <vector>

#include "tests/peers/peer_loop.h"

namespace arpguard::testing {
namespace {

// Answers /ready with "ready\n", /big with 10 MB, /throw by throwing, anything else
// by echoing the method and path.
PeerHandlers echo_handlers() {
  PeerHandlers handlers;
  handlers.http = [](const HttpRequest& request) {
    if (request.path == "/ready") return HttpResponse{200, "text/plain; charset=utf-8", "ready\n"};
    if (request.path == "/big") return HttpResponse{200, "application/octet-stream", std::string(10 << 20, 'x')};
    if (request.path == "/throw") throw std::runtime_error("handler bug");
    return HttpResponse{200, "text/plain; charset=utf-8", request.method + " " + request.path + "\n"};
  };
  return handlers;
}

struct HttpFixture {
  explicit HttpFixture(PeerLimits limits = {}, const std::string& host = "127.0.0.1")
      : loop(echo_handlers(), limits), address(free_tcp_address(host)) {
    const Status listening = loop.server().listen_http(address.get(), address.length, "http test");
    REQUIRE_MESSAGE(listening.ok(), listening.message());
  }
  ClientResponse get(TestClient& client, const std::string& request, bool head = false) {
    client.send(request);
    ClientResponse response;
    REQUIRE(await_response(loop, client, response, head));
    return response;
  }
  PeerLoop loop;
  ListenAddress address;
};

TEST_CASE("GET /ready is answered with the owner's body and the four headers, then kept alive") {
  HttpFixture fixture;
  TestClient client = TestClient::tcp(fixture.address);
  const ClientResponse response = fixture.get(client, "GET /ready HTTP/1.1\r\nHost: t\r\n\r\n");
  CHECK(response.status == 200);
  CHECK(response.body == "ready\n");
  CHECK(response.has_header("Content-Length: 6"));
  CHECK(response.has_header("Content-Type: text/plain; charset=utf-8"));
  CHECK(response.has_header("Cache-Control: no-store"));
  CHECK(response.has_header("Connection: keep-alive"));
  fixture.loop.run_for(0.05);
  CHECK_FALSE(client.server_closed);
  CHECK(fixture.loop.server().counters().http.open == 1);
}

TEST_CASE("an IPv6 listener on ::1 answers too") {
  HttpFixture fixture({}, "::1");
  TestClient client = TestClient::tcp(fixture.address);
  CHECK(fixture.get(client, "GET /ready?probe=1 HTTP/1.1\r\n\r\n").body == "ready\n");
}

TEST_CASE("HEAD gets the headers of GET and no body; the connection stays in step") {
  HttpFixture fixture;
  TestClient client = TestClient::tcp(fixture.address);
  const ClientResponse head = fixture.get(client, "HEAD /ready HTTP/1.1\r\n\r\n", /*head=*/true);
  CHECK(head.status == 200);
  CHECK(head.has_header("Content-Length: 6"));
  CHECK(head.body.empty());
  // Had a body been sent after the HEAD, it would now precede this response.
  const ClientResponse next = fixture.get(client, "GET /next HTTP/1.1\r\n\r\n");
  CHECK(next.body == "GET /next\n");
}

TEST_CASE("other methods get 405 with Allow, and the connection closes") {
  HttpFixture fixture;
  TestClient client = TestClient::tcp(fixture.address);
  const ClientResponse response = fixture.get(client, "DELETE /ready HTTP/1.1\r\n\r\n");
  CHECK(response.status == 405);
  CHECK(response.has_header("Allow: GET, HEAD"));
  CHECK(response.has_header("Connection: close"));
  CHECK(await_server_close(fixture.loop, client));
  CHECK(fixture.loop.server().counters().http.rejected == 1);
}

TEST_CASE("a request with a body gets 413 and the connection closes") {
  HttpFixture fixture;
  TestClient client = TestClient::tcp(fixture.address);
  const ClientResponse response = fixture.get(client, "GET /ready HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world");
  CHECK(response.status == 413);
  CHECK(await_server_close(fixture.loop, client));
}

TEST_CASE("NUL, bare CR and non-ASCII in the request line get 400 and a close") {
  const std::vector<std::string> requests = {
      std::string("GET /re\0ady HTTP/1.1\r\n\r\n", 24),
      "GET /ready HTTP/1.1\rHost: x\r\n\r\n",
      "GET /r\xc3\xa9"
      "ady HTTP/1.1\r\n\r\n",
  };
  HttpFixture fixture;
  for (const auto& request : requests) {
    CAPTURE(request);
    TestClient client = TestClient::tcp(fixture.address);
    const ClientResponse response = fixture.get(client, request);
    CHECK(response.status == 400);
    CHECK(response.has_header("Connection: close"));
    CHECK(await_server_close(fixture.loop, client));
  }
  CHECK(fixture.loop.server().counters().http.rejected == requests.size());
}

TEST_CASE("oversized headers get 431 and an oversized request line 414") {
  HttpFixture fixture;
  TestClient headers = TestClient::tcp(fixture.address);
  std::string request = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 100; ++i) request += "X-Filler-" + std::to_string(i) + ": " + std::string(100, 'f') + "\r\n";
  CHECK(fixture.get(headers, request + "\r\n").status == 431);
  CHECK(await_server_close(fixture.loop, headers));

  TestClient line = TestClient::tcp(fixture.address);
  CHECK(fixture.get(line, "GET /" + std::string(9000, 'a')).status == 414);
  CHECK(await_server_close(fixture.loop, line));
}

TEST_CASE("pipelined requests on one connection are answered in order") {
  HttpFixture fixture;
  TestClient client = TestClient::tcp(fixture.address);
  client.send("GET /one HTTP/1.1\r\n\r\nHEAD /two HTTP/1.1\r\n\r\nGET /three HTTP/1.1\r\nConnection: close\r\n\r\n");
  ClientResponse one, two, three;
  REQUIRE(await_response(fixture.loop, client, one));
  REQUIRE(await_response(fixture.loop, client, two, /*head=*/true));
  REQUIRE(await_response(fixture.loop, client, three));
  CHECK(one.body == "GET /one\n");
  CHECK(two.has_header("Content-Length: 10"));
  CHECK(three.body == "GET /three\n");
  CHECK(three.has_header("Connection: close"));
  CHECK(await_server_close(fixture.loop, client));
  CHECK(client.received.empty());
}

TEST_CASE("HTTP/1.0 closes after the response unless it asks for keep-alive") {
  HttpFixture fixture;
  TestClient plain = TestClient::tcp(fixture.address);
  CHECK(fixture.get(plain, "GET /ready HTTP/1.0\r\n\r\n").has_header("Connection: close"));
  CHECK(await_server_close(fixture.loop, plain));

  TestClient kept = TestClient::tcp(fixture.address);
  CHECK(
      fixture.get(kept, "GET /ready HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").has_header("Connection: keep-alive"));
  CHECK(fixture.get(kept, "GET /again HTTP/1.0\r\n\r\n").body == "GET /again\n");
  CHECK(await_server_close(fixture.loop, kept));
}

TEST_CASE("a peer that hangs up before reading a 10 MB reply costs only its connection") {
  // SIGPIPE is at its default action here: a send without MSG_NOSIGNAL would kill the binary.
  struct sigaction sigpipe {};
  REQUIRE(sigaction(SIGPIPE, nullptr, &sigpipe) == 0);
  const bool sigpipe_kills = sigpipe.sa_handler == SIG_DFL;
  REQUIRE(sigpipe_kills);
  HttpFixture fixture;
  std::uint64_t accepted = 0;
  for (const bool mid_reply : {false, true}) {
    CAPTURE(mid_reply);
    TestClient client = TestClient::tcp(fixture.address);
    client.send("GET /big HTTP/1.1\r\n\r\n");
    ++accepted;
    if (mid_reply) {
      // Part of the reply is in flight, the rest is ours: the peer resets.
      REQUIRE(fixture.loop.run_until([&] { return fixture.loop.server().counters().pending_output_bytes > 0; }, 2.0));
      client.hang_up(/*reset=*/true);
    } else {
      // Gone before the reply starts: the server writes into a closed peer (EPIPE).
      client.hang_up();
    }
    CHECK(fixture.loop.run_until(
        [&] {
          const PeerCounters counters = fixture.loop.server().counters();
          return counters.http.accepted == accepted && counters.http.open == 0;
        },
        2.0));
  }
  CHECK(fixture.loop.server().counters().pending_output_bytes == 0);
  TestClient after = TestClient::tcp(fixture.address);
  CHECK(fixture.get(after, "GET /ready HTTP/1.1\r\n\r\n").status == 200);
}

TEST_CASE("a pipelining peer that does not read is answered one reply at a time") {
  PeerLimits limits;
  limits.http_write_seconds = 0.5;
  HttpFixture fixture(limits);
  TestClient client = TestClient::tcp(fixture.address);
  // More requests than the 8 KiB input buffer holds: the rest waits in the kernel.
  std::string requests;
  for (int i = 0; i < 500; ++i) requests += "GET /big HTTP/1.1\r\n\r\n";
  client.send(requests);
  fixture.loop.run_for(0.2);
  // One 10 MB reply is queued (part of it in socket buffers); the next ones wait their turn.
  CHECK(fixture.loop.server().counters().pending_output_bytes > 0);
  CHECK(fixture.loop.server().counters().pending_output_bytes <= (10u << 20) + 200);
  REQUIRE(fixture.loop.run_until([&] { return fixture.loop.server().counters().http.open == 0; }, 1.0));
  CHECK(fixture.loop.server().counters().http.timed_out == 1);
  CHECK(fixture.loop.server().counters().pending_output_bytes == 0);
  CHECK(fixture.loop.events_handled() < 20);
}

TEST_CASE("a handler that throws gets 500 and a close; the next peer is served") {
  HttpFixture fixture;
  TestClient client = TestClient::tcp(fixture.address);
  const ClientResponse response = fixture.get(client, "GET /throw HTTP/1.1\r\n\r\n");
  CHECK(response.status == 500);
  CHECK(response.has_header("Connection: close"));
  CHECK(await_server_close(fixture.loop, client));
  CHECK(fixture.loop.server().counters().http.handler_failures == 1);
  TestClient next = TestClient::tcp(fixture.address);
  CHECK(fixture.get(next, "GET /ready HTTP/1.1\r\n\r\n").status == 200);
}

TEST_CASE("an idle keep-alive connection is closed at its idle deadline") {
  PeerLimits limits;
  limits.http_idle_seconds = 0.3;
  HttpFixture fixture(limits);
  TestClient client = TestClient::tcp(fixture.address);
  fixture.get(client, "GET /ready HTTP/1.1\r\n\r\n");
  const double answered = monotonic_now();
  REQUIRE(await_server_close(fixture.loop, client));
  const double elapsed = monotonic_now() - answered;
  CHECK(elapsed >= 0.3 - 0.01);
  CHECK(elapsed < 0.3 + 0.25);
  CHECK(fixture.loop.server().counters().http.timed_out == 1);
}

TEST_CASE("a trickling request is closed at its request deadline, however often it sends") {
  PeerLimits limits;
  limits.http_idle_seconds = 10;
  limits.http_request_seconds = 0.5;
  HttpFixture fixture(limits);
  TestClient client = TestClient::tcp(fixture.address);
  client.send("GET /ready HTTP/1.1\r\nX-Slow: ");
  const double first_byte = monotonic_now();
  while (!client.server_closed && monotonic_now() - first_byte < 2.0) {
    client.send("a");
    fixture.loop.run_for(0.05);
    client.read_available();
  }
  CHECK(client.server_closed);
  const double elapsed = monotonic_now() - first_byte;
  CHECK(elapsed >= 0.5 - 0.01);
  CHECK(elapsed < 0.5 + 0.25);
  CHECK(fixture.loop.server().counters().http.timed_out == 1);
}

TEST_CASE("300 idle connections do not keep a real GET waiting: the longest idle are evicted") {
  HttpFixture fixture;
  std::vector<TestClient> idle;
  for (int i = 0; i < 300; ++i) {
    idle.push_back(TestClient::tcp(fixture.address));
    if (i % 50 == 49) fixture.loop.run_for(0.02);
  }
  fixture.loop.run_until([&] { return fixture.loop.server().counters().http.accepted == 300; }, 2.0);
  CHECK(fixture.loop.server().counters().http.open == 256);
  CHECK(fixture.loop.server().counters().http.evicted == 44);

  const double start = monotonic_now();
  TestClient real = TestClient::tcp(fixture.address);
  real.send("GET /ready HTTP/1.1\r\n\r\n");
  ClientResponse response;
  REQUIRE(await_response(fixture.loop, real, response, false, 1.0));
  CHECK(monotonic_now() - start < 0.1);
  CHECK(response.body == "ready\n");
  CHECK(fixture.loop.server().counters().http.open == 256);
}

TEST_CASE("200 clients trickling a byte every 100 ms do not delay a real GET") {
  HttpFixture fixture;
  std::vector<TestClient> tricklers;
  for (int i = 0; i < 200; ++i) {
    tricklers.push_back(TestClient::tcp(fixture.address));
    if (i % 50 == 49) fixture.loop.run_for(0.02);
  }
  REQUIRE(fixture.loop.run_until([&] { return fixture.loop.server().counters().http.accepted == 200; }, 2.0));
  for (auto& trickler : tricklers) trickler.send("GET /ready HTTP/1.1\r\nX-Slow: ");
  for (int round = 0; round < 8; ++round) {
    for (auto& trickler : tricklers) trickler.send("a");
    fixture.loop.run_for(0.1);
  }
  CHECK(fixture.loop.server().counters().http.open == 200);

  const double start = monotonic_now();
  TestClient real = TestClient::tcp(fixture.address);
  real.send("GET /ready HTTP/1.1\r\n\r\n");
  ClientResponse response;
  REQUIRE(await_response(fixture.loop, real, response, false, 1.0));
  CHECK(monotonic_now() - start < 0.1);
  CHECK(response.body == "ready\n");
  CHECK(fixture.loop.server().counters().http.evicted == 0);
}

TEST_CASE("at the limit, a stalled request is evicted before a fresh one") {
  PeerLimits limits;
  limits.http_connections = 2;
  HttpFixture fixture(limits);
  TestClient stalled = TestClient::tcp(fixture.address);
  stalled.send("GET /ready HTTP/1.1\r\n");
  fixture.loop.run_for(0.05);
  TestClient idle = TestClient::tcp(fixture.address);
  fixture.loop.run_for(0.05);
  TestClient real = TestClient::tcp(fixture.address);
  CHECK(fixture.get(real, "GET /ready HTTP/1.1\r\n\r\n").status == 200);
  CHECK(await_server_close(fixture.loop, stalled, 0.5));
  idle.read_available();
  CHECK_FALSE(idle.server_closed);
}

}  // namespace
}  // namespace arpguard::testing
