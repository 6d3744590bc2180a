#include "core/policy_bounds.h"

#include <algorithm>
#include <climits>
#include <vector>

namespace arpguard {

namespace {

constexpr size_t kNowhere = std::string_view::npos;

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }
bool is_quote(char c) { return c == '"' || c == '\''; }
bool is_ascii(char c) { return static_cast<unsigned char>(c) < 0x80; }

// Ends a bare value (number, boolean, date, or junk toml++ will reject): '.',
// ':' and '-' belong to 1.5 and 1979-05-27T07:32:00.
bool ends_bare_value(char c) {
  switch (c) {
    case ' ': case '\t': case '\r': case '\n':
    case ',': case '[': case ']': case '{': case '}':
    case '"': case '\'': case '#':
      return true;
    default:
      return false;
  }
}

// Ends a bare key part. Lenient on purpose (toml++ rejects bytes outside
// A-Za-z0-9_-): what matters is where parts and keys end.
bool ends_bare_key(char c) { return ends_bare_value(c) || c == '.' || c == '='; }

size_t as_size(int limit) { return limit < 0 ? 0 : static_cast<size_t>(limit); }

// "40 MiB", "32.1 MiB", "512 KiB", "100 bytes": rounded up, so a size over a
// limit never reads as the limit.
std::string describe_size(size_t bytes) {
  constexpr size_t kKiB = 1024;
  constexpr size_t kMiB = 1024 * kKiB;
  const auto in_unit = [bytes](size_t unit, const char* name) {
    if (bytes % unit == 0) return std::to_string(bytes / unit) + " " + name;
    const size_t tenths = bytes / unit * 10 + ((bytes % unit) * 10 + unit - 1) / unit;
    return std::to_string(tenths / 10) + "." + std::to_string(tenths % 10) + " " + name;
  };
  if (bytes >= kMiB) return in_unit(kMiB, "MiB");
  if (bytes >= kKiB) return in_unit(kKiB, "KiB");
  return std::to_string(bytes) + " bytes";
}

// Offset of the first byte past `max_line` on the first line longer than that
// (a CR before the LF is part of the line ending), or kNowhere.
size_t first_long_line(std::string_view text, size_t max_line) {
  size_t line_start = 0;
  for (;;) {
    const size_t newline = text.find('\n', line_start);
    const size_t end = newline == kNowhere ? text.size() : newline;
    size_t length = end - line_start;
    if (newline != kNowhere && length > 0 && text[end - 1] == '\r') --length;
    if (length > max_line) return line_start + max_line;
    if (newline == kNowhere) return kNowhere;
    line_start = newline + 1;
  }
}

// Line and column of `offset` as toml++ reports them: columns count code points
// (bytes that are not UTF-8 continuation bytes), and a leading BOM takes none.
BoundsViolation located(std::string_view text, size_t offset, std::string message) {
  offset = std::min(offset, text.size());
  const std::string_view before = text.substr(0, offset);
  const size_t lines = static_cast<size_t>(std::count(before.begin(), before.end(), '\n'));
  const size_t last_newline = before.rfind('\n');
  const size_t line_start = last_newline == kNowhere ? 0 : last_newline + 1;
  size_t column = 1;
  for (size_t i = line_start; i < offset; ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) ++column;
  }
  if (line_start == 0 && offset >= 3 && text.substr(0, 3) == "\xEF\xBB\xBF") --column;
  const auto to_int = [](size_t n) { return static_cast<int>(std::min<size_t>(n, INT_MAX)); };
  return {to_int(lines + 1), to_int(column), std::move(message)};
}

struct Found {
  size_t offset;
  std::string message;
};

// toml++ 3.3 asks whether such a character is whitespace, and for many (U+00A1
// to U+0499: é, §, ...) reaches __builtin_unreachable() doing so. TOML allows
// nothing but ASCII there, so rejecting first costs a valid policy nothing.
Found non_ascii_outside_strings(size_t offset) {
  return {offset, "non-ASCII character outside a string or comment"};
}
Found non_ascii_after_backslash(size_t offset) {
  return {offset, "non-ASCII character after a backslash in a multi-line string"};
}
Found non_ascii_after_number(size_t offset) {
  return {offset, "non-ASCII character right after a number or date"};
}

// To tell a number from a date or time, toml++ reads ahead of a value that
// starts with a digit or sign, over quotes and brackets, until whitespace,
// ']', '}', ',' or '#', and at most 127 characters (one space more after a
// date). Bytes it can stop at, the space aside:
bool ends_number_lookahead(char c) {
  switch (c) {
    case '\t': case '\n': case '\v': case '\f': case '\r':
    case ']': case '}': case ',': case '#':
      return true;
    default:
      return false;
  }
}
constexpr size_t kNumberLookahead = 128;

// Walks the text once, left to right, in one of three contexts. Every turn of
// the loop consumes at least one byte or moves to kValue, which always does.
class BoundsScanner {
 public:
  BoundsScanner(std::string_view text, const PolicyLimits& limits) : text_(text), limits_(limits) {
    if (text_.substr(0, 3) == "\xEF\xBB\xBF") pos_ = 3;  // a byte-order mark, which toml++ skips
  }

  std::optional<Found> scan() {
    Context context = Context::kStatement;
    while (pos_ < text_.size()) {
      std::optional<Found> found;
      switch (context) {
        case Context::kStatement: found = scan_statement(context); break;
        case Context::kValue: found = scan_value(context); break;
        case Context::kInlineKey: found = scan_inline_key(context); break;
      }
      if (found) return found;
    }
    return std::nullopt;
  }

 private:
  enum class Context {
    kStatement,  ///< top level, start of a line: a key, a [table] header, a comment
    kValue,      ///< after '=', inside arrays, and the rest of a line after a statement
    kInlineKey,  ///< after '{' or ',' in an inline table: a key or '}'
  };
  enum class Container : char { kArray, kInlineTable };

  bool at(char c, size_t ahead = 0) const { return pos_ + ahead < text_.size() && text_[pos_ + ahead] == c; }

  void skip_blanks() {
    while (pos_ < text_.size() && is_blank(text_[pos_])) ++pos_;
  }

  // From '#' up to (not including) the line's '\n'.
  void skip_comment() {
    const size_t newline = text_.find('\n', pos_);
    pos_ = newline == kNowhere ? text_.size() : newline;
  }

  // From an opening quote past the closing one, or to the end of the text.
  std::optional<Found> skip_string() {
    const char quote = text_[pos_];
    if (at(quote, 1) && at(quote, 2)) {
      pos_ += 3;
      return skip_multi_line_rest(quote);
    }
    pos_ += 1;
    skip_single_line_rest(quote);
    return std::nullopt;
  }

  // A single-line string ends at its quote, or (unterminated: toml++ stops
  // there) before the line's '\n', so the scan stays in step line by line.
  void skip_single_line_rest(char quote) {
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == '\n') return;
      ++pos_;
      if (c == quote) return;
      if (c == '\\' && quote == '"' && pos_ < text_.size() && text_[pos_] != '\n') ++pos_;
    }
  }

  // A multi-line string ends at the first run of three or more quotes not
  // escaped; up to two more quotes in that run are its content (`"""a"""""` is
  // `a""`), as toml++ takes at most five. After a backslash toml++ skips any
  // whitespace and line breaks (a line-ending backslash) and asks whether the
  // next character is whitespace too: it must be ASCII (see above).
  std::optional<Found> skip_multi_line_rest(char quote) {
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == '\\' && quote == '"') {
        size_t next = pos_ + 1;
        while (next < text_.size() && (is_blank(text_[next]) || text_[next] == '\n')) ++next;
        if (next < text_.size() && !is_ascii(text_[next])) return non_ascii_after_backslash(next);
        pos_ = next > pos_ + 1 ? next : std::min(pos_ + 2, text_.size());
      } else if (c == quote) {
        size_t run = 1;
        while (run < 5 && at(quote, run)) ++run;
        pos_ += run;
        if (run >= 3) return std::nullopt;
      } else {
        ++pos_;
      }
    }
    return std::nullopt;
  }

  // Skips one key: parts separated by '.', each bare or quoted, blanks around
  // the dots. Checks the number of parts; `report_at` is where a violation is
  // located (the key, or its table header's '['). A violation inside the key
  // (its characters) comes after that.
  std::optional<Found> scan_key(size_t report_at, const char* what) {
    size_t parts = 1;
    std::optional<Found> inside;
    for (;;) {
      skip_blanks();
      if (pos_ < text_.size() && is_quote(text_[pos_])) {
        std::optional<Found> found = skip_string();
        if (!inside) inside = std::move(found);
      } else {
        for (; pos_ < text_.size() && !ends_bare_key(text_[pos_]); ++pos_) {
          if (!inside && !is_ascii(text_[pos_])) inside = non_ascii_outside_strings(pos_);
        }
      }
      skip_blanks();
      if (!at('.')) break;
      ++pos_;
      ++parts;
    }
    if (parts > as_size(limits_.max_key_depth)) {
      return Found{report_at, std::string(what) + " has " + std::to_string(parts) + " dotted parts (at most " +
                                  std::to_string(limits_.max_key_depth) + ")"};
    }
    // toml++ takes time quadratic in the number of tables dotted keys open and reopen.
    if (parts > 1 && ++dotted_keys_ > limits_.max_dotted_keys) {
      return Found{report_at, "more than " + std::to_string(limits_.max_dotted_keys) +
                                  " dotted keys (a.b = ...); use [table] headers"};
    }
    return inside;
  }

  // A key, then '=' (consumed when there).
  std::optional<Found> scan_key_of_pair() {
    if (auto found = scan_key(pos_, "key")) return found;
    if (at('=')) ++pos_;
    return std::nullopt;
  }

  // [a.b] or [[a.b]]; toml++ wants the two brackets of [[ together.
  std::optional<Found> scan_table_header() {
    const size_t header_start = pos_;
    ++pos_;
    const bool array_of_tables = at('[');
    if (array_of_tables) ++pos_;
    if (auto found = scan_key(header_start, "table header")) return found;
    if (at(']')) ++pos_;
    if (array_of_tables && at(']')) ++pos_;
    return std::nullopt;
  }

  std::optional<Found> scan_statement(Context& context) {
    skip_blanks();
    if (pos_ >= text_.size()) return std::nullopt;
    const char c = text_[pos_];
    if (c == '\n') {
      ++pos_;
      return std::nullopt;
    }
    if (c == '#') {
      skip_comment();
      return std::nullopt;
    }
    // Whatever follows a statement on its line (a comment, or junk toml++
    // rejects) is scanned as values at depth 0, where '\n' ends it.
    context = Context::kValue;
    if (c == '[') return scan_table_header();
    if (is_quote(c) || !ends_bare_key(c)) return scan_key_of_pair();
    return std::nullopt;  // not a statement: toml++ stops here
  }

  std::optional<Found> scan_value(Context& context) {
    const char c = text_[pos_];
    switch (c) {
      case ' ': case '\t': case '\r': skip_blanks(); break;
      case '#': skip_comment(); break;
      case '"': case '\'': return skip_string();
      case '\n':
        ++pos_;
        if (open_.empty()) context = Context::kStatement;
        break;
      case '[': return open(Container::kArray);
      case '{':
        context = Context::kInlineKey;
        return open(Container::kInlineTable);
      case ']': case '}':
        ++pos_;
        if (!open_.empty()) open_.pop_back();
        break;
      case ',':
        ++pos_;
        if (!open_.empty() && open_.back() == Container::kInlineTable) context = Context::kInlineKey;
        break;
      default:  // not one of the bytes above, so it starts a bare value: the loop takes it
        if ((c >= '0' && c <= '9') || c == '+' || c == '-') {
          const size_t end = std::min(text_.size(), pos_ + kNumberLookahead);
          for (size_t i = pos_; i < end && !ends_number_lookahead(text_[i]); ++i) {
            if (!is_ascii(text_[i])) return non_ascii_after_number(i);
          }
        }
        for (; pos_ < text_.size() && !ends_bare_value(text_[pos_]); ++pos_) {
          if (!is_ascii(text_[pos_])) return non_ascii_outside_strings(pos_);
        }
        break;
    }
    return std::nullopt;
  }

  std::optional<Found> scan_inline_key(Context& context) {
    const char c = text_[pos_];
    if (is_blank(c) || c == '\n') {
      ++pos_;  // toml++ rejects a line break here; a later TOML allows it
    } else if (c == '#') {
      skip_comment();
    } else if (c == '}') {
      ++pos_;
      if (!open_.empty()) open_.pop_back();
      context = Context::kValue;
    } else if (c == ',') {
      ++pos_;
    } else {
      context = Context::kValue;
      if (is_quote(c) || !ends_bare_key(c)) return scan_key_of_pair();
    }
    return std::nullopt;
  }

  // At '[' or '{' opening a value. Past the limit, measures how deep the
  // outermost value around it goes, for the message.
  std::optional<Found> open(Container container) {
    if (open_.size() < as_size(limits_.max_nesting)) {
      open_.push_back(container);
      ++pos_;
      return std::nullopt;
    }
    const size_t start = pos_;
    size_t depth = open_.size();
    size_t deepest = depth;
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (is_quote(c)) {
        skip_string();  // what is wrong inside it comes after this violation
        continue;
      }
      if (c == '#') {
        skip_comment();
        continue;
      }
      ++pos_;
      if (c == '[' || c == '{') {
        deepest = std::max(deepest, ++depth);
      } else if ((c == ']' || c == '}') && --depth == 0) {
        break;
      }
    }
    return Found{start, "arrays and inline tables nested " + std::to_string(deepest) + " deep (at most " +
                            std::to_string(limits_.max_nesting) + ")"};
  }

  std::string_view text_;
  const PolicyLimits& limits_;
  size_t pos_ = 0;
  std::vector<Container> open_;  ///< arrays and inline tables open here; at most max_nesting
  size_t dotted_keys_ = 0;       ///< keys and table headers of more than one part so far
};

}  // namespace

std::optional<BoundsViolation> check_policy_bounds(std::string_view text, const PolicyLimits& limits) {
  if (text.size() > limits.max_bytes) {
    return BoundsViolation{0, 0,
                           "policy is " + describe_size(text.size()) + " (at most " +
                               describe_size(limits.max_bytes) + ")"};
  }
  const size_t long_line = first_long_line(text, limits.max_line);
  std::optional<Found> found = BoundsScanner(text, limits).scan();
  if (long_line != kNowhere && (!found || long_line < found->offset)) {
    found = Found{long_line, "line is longer than " + std::to_string(limits.max_line) + " bytes"};
  }
  if (!found) return std::nullopt;
  return located(text, found->offset, std::move(found->message));
}

}  // namespace arpguard
