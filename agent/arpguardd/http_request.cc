#include "agent/arpguardd/http_request.h"

#include <algorithm>
#include <optional>

namespace arpguard {

namespace {

// RFC 9110 5.6.2: the characters of a token (methods, header names).
bool is_token_char(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

bool is_token(std::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return is_token_char(static_cast<unsigned char>(c)); });
}

bool is_printable_ascii(unsigned char c) {
  return c >= 0x20 && c <= 0x7e;
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; };
           return lower(x) == lower(y);
         });
}

std::string_view trim_whitespace(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

RejectedRequest reject(int status, std::string reason) {
  return RejectedRequest{status, std::move(reason)};
}

int hex_digit_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The path of an origin-form target, percent-decoded, without its query.
std::variant<std::string, RejectedRequest> decode_target_path(std::string_view target) {
  const std::string_view encoded = target.substr(0, target.find('?'));
  if (encoded.empty() || encoded.front() != '/') return reject(400, "request target is not an absolute path");
  std::string path;
  path.reserve(encoded.size());
  for (std::size_t i = 0; i < encoded.size(); ++i) {
    const char c = encoded[i];
    if (c == '#') return reject(400, "fragment in request target");
    if (c != '%') {
      path.push_back(c);
      continue;
    }
    if (i + 2 >= encoded.size()) return reject(400, "truncated percent escape in path");
    const int upper = hex_digit_value(encoded[i + 1]);
    const int lower = hex_digit_value(encoded[i + 2]);
    if (upper < 0 || lower < 0) return reject(400, "invalid percent escape in path");
    const int byte = upper * 16 + lower;
    if (byte == 0) return reject(400, "%00 in path");
    if (!is_printable_ascii(static_cast<unsigned char>(byte))) return reject(400, "non-ASCII or control byte in path");
    path.push_back(static_cast<char>(byte));
    i += 2;
  }
  return path;
}

struct RequestLine {
  HttpRequest request;
  bool is_http_1_1 = false;
};

std::variant<RequestLine, RejectedRequest> parse_request_line(std::string_view line) {
  for (const char c : line) {
    if (!is_printable_ascii(static_cast<unsigned char>(c))) return reject(400, "invalid byte in request line");
  }
  const std::size_t first_space = line.find(' ');
  const std::size_t second_space =
      first_space == std::string_view::npos ? first_space : line.find(' ', first_space + 1);
  if (second_space == std::string_view::npos || line.find(' ', second_space + 1) != std::string_view::npos) {
    return reject(400, "malformed request line");
  }
  const std::string_view method = line.substr(0, first_space);
  const std::string_view target = line.substr(first_space + 1, second_space - first_space - 1);
  const std::string_view version = line.substr(second_space + 1);
  if (!is_token(method) || target.empty()) return reject(400, "malformed request line");
  const bool version_well_formed = version.size() == 8 && version.substr(0, 5) == "HTTP/" && version[5] >= '0' &&
                                   version[5] <= '9' && version[6] == '.' && version[7] >= '0' && version[7] <= '9';
  if (!version_well_formed) return reject(400, "malformed HTTP version");
  if (method != "GET" && method != "HEAD") return reject(405, "only GET and HEAD are served");
  if (version != "HTTP/1.0" && version != "HTTP/1.1") return reject(505, "only HTTP/1.0 and HTTP/1.1 are served");
  auto path = decode_target_path(target);
  if (auto* rejection = std::get_if<RejectedRequest>(&path)) return std::move(*rejection);
  RequestLine parsed;
  parsed.request.method = std::string(method);
  parsed.request.path = std::move(std::get<std::string>(path));
  parsed.request.version = std::string(version);
  parsed.is_http_1_1 = version == "HTTP/1.1";
  return parsed;
}

// What the headers say about the connection; a header that forbids the request rejects it.
struct ConnectionHeaders {
  bool asks_close = false;
  bool asks_keep_alive = false;
};

std::optional<RejectedRequest> apply_header_line(std::string_view line, ConnectionHeaders& connection) {
  const std::size_t colon = line.find(':');
  if (colon == std::string_view::npos) return reject(400, "header line without a colon");
  const std::string_view name = line.substr(0, colon);
  if (!is_token(name)) return reject(400, "invalid header name");
  const std::string_view value = trim_whitespace(line.substr(colon + 1));
  for (const char c : value) {
    const auto byte = static_cast<unsigned char>(c);
    if ((byte < 0x20 && byte != '\t') || byte == 0x7f) return reject(400, "control byte in header value");
  }
  if (equals_ignoring_case(name, "Transfer-Encoding")) return reject(413, "request bodies are not accepted");
  if (equals_ignoring_case(name, "Content-Length")) {
    const bool all_digits =
        !value.empty() && std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!all_digits) return reject(400, "invalid Content-Length");
    if (value.find_first_not_of('0') != std::string_view::npos) return reject(413, "request bodies are not accepted");
  }
  if (equals_ignoring_case(name, "Connection")) {
    std::string_view rest = value;
    while (!rest.empty()) {
      const std::size_t comma = rest.find(',');
      const std::string_view option = trim_whitespace(rest.substr(0, comma));
      if (equals_ignoring_case(option, "close")) connection.asks_close = true;
      if (equals_ignoring_case(option, "keep-alive")) connection.asks_keep_alive = true;
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
  }
  return std::nullopt;
}

}  // namespace

ParseResult parse_http_request(std::string_view buffer) {
  const std::string_view window = buffer.substr(0, kMaxHeadBytes);
  std::optional<RequestLine> request_line;
  ConnectionHeaders connection;
  std::size_t extra_lines = 0;  // header lines and blank lines before the request line
  std::size_t position = 0;
  while (true) {
    const std::size_t newline = window.find('\n', position);
    const bool line_complete = newline != std::string_view::npos;
    std::string_view line = window.substr(position, line_complete ? newline - position : std::string_view::npos);
    if (line.find('\0') != std::string_view::npos) return reject(400, "NUL byte in request");
    const std::size_t carriage_return = line.find('\r');
    if (carriage_return != std::string_view::npos && carriage_return + 1 < line.size()) {
      return reject(400, "CR not followed by LF");
    }
    if (!line_complete) {
      if (!request_line) {
        // Reject a hostile request line before it is complete.
        for (const char c : line) {
          if (!is_printable_ascii(static_cast<unsigned char>(c)) && c != '\r') {
            return reject(400, "invalid byte in request line");
          }
        }
      }
      if (buffer.size() >= kMaxHeadBytes) {
        return request_line ? reject(431, "request header section too large") : reject(414, "request line too long");
      }
      return NeedMoreBytes{};
    }
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    position = newline + 1;
    if (!request_line) {
      if (line.empty()) {
        if (++extra_lines > kMaxHeaderLines) return reject(431, "too many header lines");
        continue;
      }
      auto parsed = parse_request_line(line);
      if (auto* rejection = std::get_if<RejectedRequest>(&parsed)) return std::move(*rejection);
      request_line = std::move(std::get<RequestLine>(parsed));
      continue;
    }
    if (line.empty()) {
      ParsedRequest parsed;
      parsed.keep_alive = !connection.asks_close && (request_line->is_http_1_1 || connection.asks_keep_alive);
      parsed.request = std::move(request_line->request);
      parsed.consumed = position;
      return parsed;
    }
    if (++extra_lines > kMaxHeaderLines) return reject(431, "too many header lines");
    if (auto rejection = apply_header_line(line, connection)) return std::move(*rejection);
  }
}

std::string_view http_reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

std::string render_http_response(const HttpResponse& response, bool head_only, bool keep_alive) {
  const int status = (response.status >= 100 && response.status <= 599) ? response.status : 500;
  std::string content_type;
  for (const char c : response.content_type) {
    if (is_printable_ascii(static_cast<unsigned char>(c))) content_type.push_back(c);
  }
  if (content_type.empty()) content_type = "application/octet-stream";
  std::string out;
  out.reserve(160 + content_type.size() + (head_only ? 0 : response.body.size()));
  out += "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  out += http_reason_phrase(status);
  out += "\r\nContent-Length: ";
  out += std::to_string(response.body.size());
  out += "\r\nContent-Type: ";
  out += content_type;
  out += "\r\nCache-Control: no-store\r\n";
  if (status == 405) out += "Allow: GET, HEAD\r\n";
  out += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  if (!head_only) out += response.body;
  return out;
}

std::string render_http_rejection(const RejectedRequest& rejection, bool head_only) {
  HttpResponse response;
  response.status = rejection.status;
  response.body = std::string(http_reason_phrase(rejection.status)) + ": " + rejection.reason + "\n";
  return render_http_response(response, head_only, /*keep_alive=*/false);
}

}  // namespace arpguard
