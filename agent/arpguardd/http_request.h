// The tiny HTTP/1.x that arpguardd speaks to health checkers (keepalived,
// HAProxy, curl): GET and HEAD, HTTP/1.0 and 1.1, no request body, keep-alive
// and pipelining. Pure functions over bytes, no syscalls: the socket side lives
// in peers.h.
//
// Untrusted bytes are bounded and validated here, where they enter:
//   - request line plus headers at most kMaxHeadBytes, at most kMaxHeaderLines
//     header lines (blank lines before the request line count too): 414 when the
//     request line alone does not fit, 431 otherwise;
//   - NUL anywhere, a CR not followed by LF, a byte outside printable ASCII in
//     the request line or a header name, a malformed line: 400;
//   - a method other than GET or HEAD: 405; HTTP other than 1.0 and 1.1: 505;
//   - Content-Length other than 0, or any Transfer-Encoding: 413;
//   - the path is percent-decoded into printable ASCII (%00, controls and
//     bytes >= 0x80 after decoding: 400); the query string is dropped.
// Lines may end in CRLF or a bare LF. Only origin-form targets ("/...").
// Every rejection is answered and then the connection is closed.
//
// Thread-safety: pure functions, safe from any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <variant>

namespace arpguard {

inline constexpr std::size_t kMaxHeadBytes = 8 * 1024;
inline constexpr std::size_t kMaxHeaderLines = 64;

struct HttpRequest {
  std::string method;   ///< "GET" or "HEAD"
  std::string path;     ///< percent-decoded, without the query: "/ready/10.0.0.5"
  std::string version;  ///< "HTTP/1.0" or "HTTP/1.1"
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

/// The buffer holds the start of a request, not all of its head yet.
struct NeedMoreBytes {};

/// A whole request: `consumed` bytes of the buffer are its head.
struct ParsedRequest {
  HttpRequest request;
  bool keep_alive = false;  ///< from the version and the Connection header
  std::size_t consumed = 0;
};

/// A request to answer with `status` (4xx/5xx) and then close the connection.
struct RejectedRequest {
  int status = 400;
  std::string reason;  ///< why, in a few words: "NUL byte in request"
};

using ParseResult = std::variant<NeedMoreBytes, ParsedRequest, RejectedRequest>;

/// Parses the first request at the start of `buffer` (pipelined requests follow it).
/// Rejects as soon as the bytes so far are certainly invalid, without waiting for more.
ParseResult parse_http_request(std::string_view buffer);

/// "Not Found" for 404; "Unknown" for a code not in the table.
std::string_view http_reason_phrase(int status);

/// The bytes of a response: status line, Content-Length, Content-Type,
/// Cache-Control: no-store, Connection (plus Allow on a 405), then the body
/// unless `head_only`. A status outside 100..599 becomes 500; control bytes in
/// the content type are dropped so a header can never be injected.
std::string render_http_response(const HttpResponse& response, bool head_only, bool keep_alive);

/// The answer to a rejected request: `status`, a one-line text body, Connection: close.
std::string render_http_rejection(const RejectedRequest& rejection, bool head_only);

}  // namespace arpguard
