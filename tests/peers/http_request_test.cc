// parse_http_request and the response renderers, as tables of bytes in and outcomes out.
#include "agent/arpguardd/http_request.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace arpguard {
namespace {

using namespace std::string_literals;

// What a parse should give: need_more, or a request (method, path, version,
// keep-alive, consumed), or a rejection status.
struct ParseCase {
  std::string name;
  std::string input;
  int expected_status = 0;  // 0: a request; -1: need more bytes; else the rejection
  std::string method = "GET";
  std::string path = "/";
  std::string version = "HTTP/1.1";
  bool keep_alive = true;
  std::size_t consumed = std::string::npos;  // npos: the whole input
};

constexpr int kNeedMore = -1;

void check_case(const ParseCase& c) {
  CAPTURE(c.name);
  const ParseResult result = parse_http_request(c.input);
  if (c.expected_status == kNeedMore) {
    CHECK(std::holds_alternative<NeedMoreBytes>(result));
  } else if (c.expected_status == 0) {
    REQUIRE(std::holds_alternative<ParsedRequest>(result));
    const auto& parsed = std::get<ParsedRequest>(result);
    CHECK(parsed.request.method == c.method);
    CHECK(parsed.request.path == c.path);
    CHECK(parsed.request.version == c.version);
    CHECK(parsed.keep_alive == c.keep_alive);
    CHECK(parsed.consumed == (c.consumed == std::string::npos ? c.input.size() : c.consumed));
  } else {
    REQUIRE(std::holds_alternative<RejectedRequest>(result));
    CHECK(std::get<RejectedRequest>(result).status == c.expected_status);
  }
}

std::string with_headers(std::size_t count, std::size_t value_length) {
  std::string request = "GET / HTTP/1.1\r\n";
  for (std::size_t i = 0; i < count; ++i)
    request += "X-H" + std::to_string(i) + ": " + std::string(value_length, 'v') + "\r\n";
  return request + "\r\n";
}

TEST_CASE("well-formed requests are parsed, keep-alive follows version and Connection") {
  const std::vector<ParseCase> cases = {
      {"GET /ready 1.1", "GET /ready HTTP/1.1\r\nHost: x\r\n\r\n", 0, "GET", "/ready"},
      {"HEAD 1.0 closes", "HEAD / HTTP/1.0\r\n\r\n", 0, "HEAD", "/", "HTTP/1.0", false},
      {"1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 0, "GET", "/", "HTTP/1.0", true},
      {"1.1 close", "GET / HTTP/1.1\r\nconnection: close\r\n\r\n", 0, "GET", "/", "HTTP/1.1", false},
      {"close wins in a list", "GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n", 0, "GET", "/", "HTTP/1.1",
       false},
      {"query ignored", "GET /ready?x=1&y=%00 HTTP/1.1\r\n\r\n", 0, "GET", "/ready"},
      {"percent-decoded", "GET /ready/10.0.0.5%2F32%7e HTTP/1.1\r\n\r\n", 0, "GET", "/ready/10.0.0.5/32~"},
      {"bare LF lines", "GET /status HTTP/1.1\nHost: x\n\n", 0, "GET", "/status"},
      {"leading blank line", "\r\nGET / HTTP/1.1\r\n\r\n", 0},
      {"Content-Length 0", "GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 0},
      {"obs-text in a value", "GET / HTTP/1.1\r\nUser-Agent: caf\xc3\xa9\r\n\r\n", 0},
      {"first of two pipelined", "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n", 0, "GET", "/a", "HTTP/1.1", true,
       19},
      {"64 header lines", with_headers(64, 10), 0},
  };
  for (const auto& c : cases) check_case(c);
}

TEST_CASE("an incomplete head asks for more bytes") {
  const std::vector<ParseCase> cases = {
      {"empty", "", kNeedMore},
      {"part of the method", "GE", kNeedMore},
      {"request line only", "GET / HTTP/1.1\r\n", kNeedMore},
      {"CR awaiting its LF", "GET / HTTP/1.1\r\nHost: x\r\n\r", kNeedMore},
      {"a header in progress", "GET / HTTP/1.1\r\nHo", kNeedMore},
  };
  for (const auto& c : cases) check_case(c);
}

TEST_CASE("requests to refuse get the status the contract names") {
  const std::vector<ParseCase> cases = {
      {"POST", "POST / HTTP/1.1\r\n\r\n", 405},
      {"lower-case get", "get / HTTP/1.1\r\n\r\n", 405},
      {"405 before the headers arrive", "DELETE / HTTP/1.1\r\n", 405},
      {"HTTP/2.0", "GET / HTTP/2.0\r\n\r\n", 505},
      {"lower-case version", "GET / http/1.1\r\n\r\n", 400},
      {"no version", "GET /\r\n\r\n", 400},
      {"two spaces", "GET  / HTTP/1.1\r\n\r\n", 400},
      {"tab in request line", "GET\t/ HTTP/1.1\r\n\r\n", 400},
      {"NUL in request line", "GET /\0 HTTP/1.1\r\n\r\n"s, 400},
      {"NUL in a header value", "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n"s, 400},
      {"NUL before the line ends", "GET /re\0"s, 400},
      {"bare CR in request line", "GET / HTTP/1.1\rHost: x\r\n\r\n", 400},
      {"bare CR in a header", "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400},
      {"non-ASCII in request line",
       "GET /r\xe9"
       "ady HTTP/1.1\r\n\r\n",
       400},
      {"non-ASCII before the line ends", "GET /\xff", 400},
      {"DEL in request line", "GET /\x7f HTTP/1.1\r\n\r\n", 400},
      {"space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400},
      {"non-ASCII header name", "GET / HTTP/1.1\r\nH\xc3\xa9: x\r\n\r\n", 400},
      {"obsolete line folding", "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 400},
      {"header without colon", "GET / HTTP/1.1\r\nHost\r\n\r\n", 400},
      {"control byte in value", "GET / HTTP/1.1\r\nX: a\x01\r\n\r\n", 400},
      {"%00 in path", "GET /ready%00 HTTP/1.1\r\n\r\n", 400},
      {"non-ASCII after decoding", "GET /%C3%A9 HTTP/1.1\r\n\r\n", 400},
      {"control after decoding", "GET /%0a HTTP/1.1\r\n\r\n", 400},
      {"bad escape", "GET /%zz HTTP/1.1\r\n\r\n", 400},
      {"truncated escape", "GET /%4 HTTP/1.1\r\n\r\n", 400},
      {"asterisk target", "OPTIONS * HTTP/1.1\r\n\r\n", 405},
      {"asterisk with GET", "GET * HTTP/1.1\r\n\r\n", 400},
      {"absolute-form target", "GET http://x/ready HTTP/1.1\r\n\r\n", 400},
      {"fragment", "GET /ready#x HTTP/1.1\r\n\r\n", 400},
      {"body by length", "GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 413},
      {"chunked body", "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 413},
      {"any Transfer-Encoding", "GET / HTTP/1.1\r\ntransfer-encoding: identity\r\n\r\n", 413},
      {"bad Content-Length", "GET / HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n", 400},
      {"request line beyond 8 KiB", "GET /" + std::string(kMaxHeadBytes, 'a'), 414},
      {"complete but too long request line", "GET /" + std::string(kMaxHeadBytes, 'a') + " HTTP/1.1\r\n\r\n", 414},
      {"headers beyond 8 KiB", with_headers(10, 1000), 431},
      {"headers beyond 8 KiB, incomplete", "GET / HTTP/1.1\r\nX: " + std::string(kMaxHeadBytes, 'v'), 431},
      {"65 header lines", with_headers(65, 1), 431},
      {"65 blank lines first", std::string(65, '\n') + "GET / HTTP/1.1\r\n\r\n", 431},
  };
  for (const auto& c : cases) check_case(c);
}

TEST_CASE("a head of exactly 8 KiB is accepted, one byte more is not") {
  std::string request = "GET / HTTP/1.1\r\nX: ";
  const std::size_t room = kMaxHeadBytes - request.size() - 4;
  request += std::string(room, 'v') + "\r\n\r\n";
  REQUIRE(request.size() == kMaxHeadBytes);
  check_case({"exactly 8 KiB", request, 0});
  request.insert(20, "v");
  check_case({"8 KiB + 1", request, 431});
}

TEST_CASE("a GET response carries the four headers and the body") {
  const std::string bytes = render_http_response({200, "text/plain; charset=utf-8", "ready\n"}, false, true);
  CHECK(bytes ==
        "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Cache-Control: no-store\r\nConnection: keep-alive\r\n\r\nready\n");
}

TEST_CASE("a HEAD response has the GET's Content-Length and no body") {
  const std::string bytes = render_http_response({404, "application/json", "{\"ok\":false}"}, true, false);
  CHECK(bytes ==
        "HTTP/1.1 404 Not Found\r\nContent-Length: 12\r\nContent-Type: application/json\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\n\r\n");
}

TEST_CASE("a 405 names the allowed methods; a rejection closes") {
  const std::string bytes = render_http_rejection({405, "only GET and HEAD are served"}, false);
  CHECK(bytes.find("HTTP/1.1 405 Method Not Allowed\r\n") == 0);
  CHECK(bytes.find("\r\nAllow: GET, HEAD\r\n") != std::string::npos);
  CHECK(bytes.find("\r\nConnection: close\r\n") != std::string::npos);
  CHECK(bytes.substr(bytes.find("\r\n\r\n") + 4) == "Method Not Allowed: only GET and HEAD are served\n");
}

TEST_CASE("a handler's odd status and content type cannot break the response") {
  const std::string bytes = render_http_response({42, "text/plain\r\nSet-Cookie: x=1", ""}, false, false);
  CHECK(bytes.find("HTTP/1.1 500 Internal Server Error\r\n") == 0);
  CHECK(bytes.find("\r\nContent-Type: text/plainSet-Cookie: x=1\r\n") != std::string::npos);
  CHECK(bytes.find("\r\nSet-Cookie") == std::string::npos);
}

}  // namespace
}  // namespace arpguard
