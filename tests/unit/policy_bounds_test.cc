// Policy bounds: text that would exhaust the TOML parser is rejected, located,
// before toml++ sees it; dots, brackets and hashes inside strings and comments
// count for nothing. Every accepted case runs under limits tight enough that a
// scanner counting inside strings or comments would reject it.
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <string_view>

#include "core/policy_bounds.h"

using namespace arpguard;

namespace {

// "LINE:COLUMN: message", or "accepted".
std::string bounds_of(std::string_view text, const PolicyLimits& limits = {}) {
  const std::optional<BoundsViolation> violation = check_policy_bounds(text, limits);
  if (!violation) return "accepted";
  return std::to_string(violation->line) + ":" + std::to_string(violation->column) + ": " + violation->message;
}

std::string repeated(std::string_view piece, int times) {
  std::string out;
  for (int i = 0; i < times; ++i) out += piece;
  return out;
}

// "a.a.a...a" with `parts` parts.
std::string dotted(int parts) { return "a" + repeated(".a", parts - 1); }

// Keys of one part, no arrays or inline tables.
constexpr PolicyLimits kFlat{.max_key_depth = 1, .max_nesting = 0};
// Keys of one part, arrays and inline tables one deep.
constexpr PolicyLimits kShallow{.max_key_depth = 1, .max_nesting = 1};
constexpr PolicyLimits kTwoByTwo{.max_key_depth = 2, .max_nesting = 2};

// README.md's policy section, verbatim.
constexpr std::string_view kReadmePolicy = R"toml([agent]
control_socket = "/run/arpguard/arpguard.sock"  # default
sysctl_poll_ms = 1000                           # default (50 to 60000)
on_stop = "keep"          # "keep" (default) leaves protection in place; "remove" undoes arpguard
state_dir = "/run/arpguard"  # where arpguard records what it changed (default)
own_nft_table = true      # hold the nft table as its owner where the kernel can (default)
contested_repairs = 5     # a resource repaired more often than this ...
contested_window_ms = 10000  # ... within this window is reported as contested
check_interval_ms = 2000  # how often [[vip]] service checks run

[arp]
method = "both"           # "sysctl" | "nftables" | "both" (default)
interfaces = ["*"]        # ARP-facing interfaces, names or globs; "*" = all but lo (writes conf/all)
arp_ignore = 1            # 1, 2, 3 or 8 (3 puts VIPs at scope host, which 3 requires)
arp_announce = 2          # 1 or 2
arp_filter = false        # true sets arp_filter=1; false leaves it alone
real_ip = { eth0 = "192.168.76.11" }  # optional: sender address for an interface's mangle rule

[[vip]]
address = "192.168.76.24" # one IPv4 address (/32 implied)
device = "lo"             # default

check = "tcp:80"          # optional: the agent connects to VIP:80; failing makes the VIP not ready

[readiness]               # see docs/readiness.md
listen = ["192.168.76.11:9480"]             # HTTP: /ready, /ready/VIP, /status, /metrics
agent_check_listen = ["192.168.76.11:9777"] # HAProxy agent-check
)toml";

// packaging/policy.toml, verbatim.
constexpr std::string_view kPackagedPolicy = R"toml(# arpguard policy: see arpguard.toml(5) and /usr/share/doc/arpguard/examples/.
#
# As installed, no VIPs are listed: arpguardd starts, changes nothing and says
# "no VIPs in the policy: nothing to guard, idling". Add one [[vip]] table per
# virtual IP this real server serves, then `systemctl reload arpguardd`.

[agent]
on_stop = "keep"          # stopping arpguardd leaves VIPs and their protection in place

[arp]
method = "both"           # sysctls and nftables, so one drifting does not expose a VIP
interfaces = ["*"]        # every interface but lo is ARP-facing

# [[vip]]
# address = "192.168.76.24"

# [readiness]
# listen = ["192.168.76.11:9480"]             # HTTP /ready for keepalived HTTP_GET
# agent_check_listen = ["192.168.76.11:9777"] # HAProxy agent-check
)toml";

// A policy spelled the long way: dotted keys, several VIPs, multi-line arrays.
constexpr std::string_view kDottedPolicy = R"toml(agent.on_stop = "remove"
agent . sysctl_poll_ms = 500
arp.real_ip.eth0 = "10.0.0.11"
arp.interfaces = [
  "eth0",   # front
  "bond*",  # back [1]
]

[[vip]]
address = "10.0.0.5"
check = "tcp:443"

[[vip]]
address = "10.0.0.6"
)toml";

struct Case {
  const char* name;
  std::string text;
  PolicyLimits limits;
  const char* expected;  ///< "LINE:COLUMN: message" or "accepted"
};

const Case kCases[] = {
    // Real policies.
    {"README's policy: no key has two parts, no array holds another", std::string(kReadmePolicy), kShallow,
     "accepted"},
    {"the packaged policy", std::string(kPackagedPolicy), kShallow, "accepted"},
    {"the packaged policy's one array, the limit at 0", std::string(kPackagedPolicy), kFlat,
     "12:14: arrays and inline tables nested 1 deep (at most 0)"},
    {"dotted keys of three parts at most", std::string(kDottedPolicy), {.max_key_depth = 3, .max_nesting = 1},
     "accepted"},
    {"a dotted key one part too many", std::string(kDottedPolicy), kTwoByTwo,
     "3:1: key has 3 dotted parts (at most 2)"},
    {"an empty policy", "", kFlat, "accepted"},

    // Strings and comments.
    {"dots, brackets and hashes in a basic string", "a = \"x.y.z [[{{ # }}]]\"\n", kFlat, "accepted"},
    {"dots, brackets and hashes in a literal string", "a = 'x.y.z [[{{ # }}]]'\n", kFlat, "accepted"},
    {"a comment with a key, a header and arrays", "# [a.b.c] x.y.z = [[[1]]]\na = 1 # b.c = [[{\n", kFlat,
     "accepted"},
    {"an escaped quote does not end a basic string", "a = \"say \\\"[[[\\\" twice\"\n", kFlat, "accepted"},
    {"an escaped backslash does not escape the quote after it", "a = [\"\\\\\", [[1]]]\n", kTwoByTwo,
     "1:13: arrays and inline tables nested 3 deep (at most 2)"},
    {"a backslash in a literal string escapes nothing", "a = ['C:\\', [[1]]]\n", kTwoByTwo,
     "1:14: arrays and inline tables nested 3 deep (at most 2)"},
    {"an unterminated string ends at its line", "a = \"x.y [[\nb = [[[1]]]\n", kTwoByTwo,
     "2:7: arrays and inline tables nested 3 deep (at most 2)"},
    {"a multi-line basic string with quotes, headers and keys inside",
     "a = \"\"\"\nHe said \"hi\" and \"\"twice\"\" [[[\n[x.y.z]\nu.v.w = [[[\n\"\"\"\nb = 1\n", kFlat, "accepted"},
    {"a multi-line literal string with quotes inside", "a = '''it's \"x.y\" and ''two'' [[['''\nb = 1\n", kFlat,
     "accepted"},
    {"four quotes end a multi-line string with one quote in it", "a = [\"\"\"x\"\"\"\", [[1]]]\n", kTwoByTwo,
     "1:17: arrays and inline tables nested 3 deep (at most 2)"},
    {"five quotes end a multi-line literal string with two in it", "a = ['''x''''', [[1]]]\n", kTwoByTwo,
     "1:18: arrays and inline tables nested 3 deep (at most 2)"},
    {"an escaped quote does not end a multi-line string", "a = [\"\"\"x\\\"\"\" inside\"\"\", [[1]]]\n", kTwoByTwo,
     "1:27: arrays and inline tables nested 3 deep (at most 2)"},
    {"a line after a multi-line string is counted", "a = \"\"\"\n\n\n\"\"\"\nb.c.d = 1\n", kTwoByTwo,
     "5:1: key has 3 dotted parts (at most 2)"},
    {"a lone quote at the end", "a = \"", kFlat, "accepted"},
    {"three lone quotes at the end", "a = '''", kFlat, "accepted"},
    {"NUL bytes and invalid UTF-8 in strings are toml++'s to reject",
     std::string("a = \"\0\xff\xfe\"\n\0 = ['\xc3']\n", 18), kShallow, "accepted"},

    // Non-ASCII where toml++ 3.3 asks whether it is whitespace (and may reach
    // __builtin_unreachable doing so).
    {"non-ASCII in strings and comments",
     "a = \"\xc3\xa9\" # \xc2\xa7\nb = '\xc3\xa9'\nc = \"\"\"\xc3\xa9\"\"\"\nd = '''\n\xc2\xa7'''\n", kFlat, "accepted"},
    {"non-ASCII after a value", "a = \"x\" \xc3\xa9\n", kFlat,
     "1:9: non-ASCII character outside a string or comment"},
    {"non-ASCII after a number", "a = 1 \xc3\xa9\n", kFlat, "1:7: non-ASCII character right after a number or date"},
    {"invalid UTF-8 after a value", "a = [1, \xff]\n", kShallow,
     "1:9: non-ASCII character outside a string or comment"},
    {"a non-ASCII key", "\xc3\xa9 = 1\n", kFlat, "1:1: non-ASCII character outside a string or comment"},
    {"non-ASCII in a key part", "[t]\na.b\xd2\x82.c = 1\n", {.max_key_depth = 3},
     "2:4: non-ASCII character outside a string or comment"},
    {"a key too deep is reported before its non-ASCII part", "a.b\xd2\x82.c = 1\n", kTwoByTwo,
     "1:1: key has 3 dotted parts (at most 2)"},
    {"non-ASCII after a line-ending backslash", "s = \"\"\"\\\n  \n\xc2\xa7\"\"\"\n", kFlat,
     "3:1: non-ASCII character after a backslash in a multi-line string"},
    {"non-ASCII right after a backslash", "s = \"\"\"x\\\xc3\xa9\"\"\"\n", kFlat,
     "1:10: non-ASCII character after a backslash in a multi-line string"},
    {"non-ASCII after an escaped backslash", "s = \"\"\"x\\\\\xc3\xa9\"\"\"\n", kFlat, "accepted"},
    {"non-ASCII toml++ reads ahead to after a number", "a = [9\"\xc7\x9d\"]\n", kShallow,
     "1:8: non-ASCII character right after a number or date"},
    {"non-ASCII toml++ reads ahead to after a date and a space", "d = 1979-05-27 \"\xc3\xa9\"\n", kFlat,
     "1:17: non-ASCII character right after a number or date"},
    {"numbers and dates ended before non-ASCII",
     "a = [1, \"\xc3\xa9\"]\nb = -1 # \xc3\xa9\nc = {d = 2, e = \"\xc3\xa9\"}\nt = 1979-05-27 07:32:00 # \xc3\xa9\n",
     kShallow, "accepted"},
    {"non-ASCII beyond toml++'s 127 characters of reading ahead",
     "a = 1\"" + std::string(130, 'x') + "\xc3\xa9\"\n", kFlat, "accepted"},
    {"a line-ending backslash, then ASCII", "s = \"\"\"\\\n  x \\\n  \"\"\"\nb.c = 1\n", kFlat,
     "4:1: key has 2 dotted parts (at most 1)"},

    // Values are not keys.
    {"floats and dates have dots but are values", "pi = 3.14159\nd = 1979-05-27T07:32:00.999Z\n"
                                                  "t = 1979-05-27 07:32:00\ne = 1.5e+10\nv = [1.5, 2.5]\n",
     kShallow, "accepted"},

    // Keys.
    {"a quoted part with dots is one part", "\"a.b.c\".d = 1\n'x.y'.z = 2\n", kTwoByTwo, "accepted"},
    {"a quoted part with dots still counts once", "\"a.b\".c.'d.e' = 1\n", kTwoByTwo,
     "1:1: key has 3 dotted parts (at most 2)"},
    {"blanks around dots", "a . b\t. c = 1\n", kTwoByTwo, "1:1: key has 3 dotted parts (at most 2)"},
    {"an indented key", "  \ta.b.c = 1\n", kTwoByTwo, "1:4: key has 3 dotted parts (at most 2)"},
    {"a key in an inline table", "a = { x = 1, b.c.d = 2 }\n", kTwoByTwo,
     "1:14: key has 3 dotted parts (at most 2)"},
    {"the first key in an inline table", "a = {b.c.d = 2}\n", kTwoByTwo, "1:6: key has 3 dotted parts (at most 2)"},
    {"a key in an inline table in an array", "a = [{ b = 1 }, { c.d.e = 2 }]\n", kTwoByTwo,
     "1:19: key has 3 dotted parts (at most 2)"},
    {"a key after an array in an inline table", "a = { x = [1, 2], y.z.w = 3 }\n", kTwoByTwo,
     "1:19: key has 3 dotted parts (at most 2)"},
    {"a table header", "[a.b]\n[a.b.c]\n", kTwoByTwo, "2:1: table header has 3 dotted parts (at most 2)"},
    {"an array-of-tables header", "[[a.b.c]]\n", kTwoByTwo, "1:1: table header has 3 dotted parts (at most 2)"},
    {"an indented header with quoted parts", "  [ \"a.b\" . 'c.d' ]\n  [ x.y . z ]\n", kTwoByTwo,
     "2:3: table header has 3 dotted parts (at most 2)"},
    {"eight parts are allowed", dotted(8) + " = 1\n[" + dotted(8) + "]\n", {}, "accepted"},
    {"nine parts are not", "x = 1\n" + dotted(9) + " = 1\n", {}, "2:1: key has 9 dotted parts (at most 8)"},
    {"a key of 9000 parts", dotted(9000) + " = 1\n", {}, "1:1: key has 9000 dotted parts (at most 8)"},
    {"a header of 9000 parts", "[" + dotted(9000) + "]\n", {}, "1:1: table header has 9000 dotted parts (at most 8)"},
    {"a key of 9000 parts never finished", dotted(9000), {}, "1:1: key has 9000 dotted parts (at most 8)"},

    // Nesting.
    {"[[header]] is not nesting", "[[vip]]\n[[vip]]\na = 1\n", kFlat, "accepted"},
    {"sixteen deep is allowed", "a = " + repeated("[", 16) + repeated("]", 16) + "\n", {}, "accepted"},
    {"seventeen deep is not", "a = " + repeated("[", 17) + repeated("]", 17) + "\n", {},
     "1:21: arrays and inline tables nested 17 deep (at most 16)"},
    {"forty deep, unclosed", "a = " + repeated("[", 40), {},
     "1:21: arrays and inline tables nested 40 deep (at most 16)"},
    {"inline tables and arrays alternating", "a = " + repeated("{b=[", 10) + repeated("]}", 10) + "\n", {},
     "1:37: arrays and inline tables nested 20 deep (at most 16)"},
    {"the deepest of one value is reported, not the next value's",
     "a = [[[[1]]], [[[[[2]]]]]]\nb = [[[[[[[[[[3]]]]]]]]]]\n", kTwoByTwo,
     "1:7: arrays and inline tables nested 6 deep (at most 2)"},
    {"a multi-line array with comments", "a = [\n  1, # [[[ b.c.d\n  [2],\n]\nb.c = 1\n", {.max_key_depth = 1},
     "5:1: key has 2 dotted parts (at most 1)"},
    {"a multi-line array keeps its depth across lines", "a = [\n[\n[\n1]]]\n", kTwoByTwo,
     "3:1: arrays and inline tables nested 3 deep (at most 2)"},

    // Lines and sizes.
    {"a line of 65536 bytes", "a = \"" + std::string(65530, 'x') + "\"\n", {}, "accepted"},
    {"a line of 65536 bytes before CRLF", "a = \"" + std::string(65530, 'x') + "\"\r\nb = 1\r\n", {}, "accepted"},
    {"a line of 65537 bytes", "b = 1\na = \"" + std::string(65531, 'x') + "\"\n", {},
     "2:65537: line is longer than 65536 bytes"},
    {"a long last line without a line break", "#" + std::string(100, '#'), {.max_line = 80},
     "1:81: line is longer than 80 bytes"},
    {"a long line before a deep key is reported first", "# " + std::string(100, '.') + "\n" + dotted(20) + " = 1\n",
     {.max_line = 80}, "1:81: line is longer than 80 bytes"},
    {"a deep key before a long line is reported first", dotted(20) + " = 1\n# " + std::string(100, '.') + "\n",
     {.max_line = 80}, "1:1: key has 20 dotted parts (at most 8)"},
    {"a policy over its size", std::string(150, '\n'), {.max_bytes = 100},
     "0:0: policy is 150 bytes (at most 100 bytes)"},
    {"a policy of exactly its size", std::string(100, '\n'), {.max_bytes = 100}, "accepted"},
    {"sizes in KiB round up", std::string(3000, '\n'), {.max_bytes = 2048}, "0:0: policy is 3.0 KiB (at most 2 KiB)"},

    // Columns as toml++ counts them.
    {"columns count code points", "a = [\"\xc3\xa9\", [[1]]]\n", kTwoByTwo,
     "1:12: arrays and inline tables nested 3 deep (at most 2)"},
    {"a byte-order mark takes no column", "\xef\xbb\xbf" "a = [[[1]]]\n", kTwoByTwo,
     "1:7: arrays and inline tables nested 3 deep (at most 2)"},
    {"a byte-order mark is not part of the first key", "\xef\xbb\xbf" "a = 1\n", kFlat, "accepted"},
};

}  // namespace

TEST_CASE("policy text is accepted, or rejected at its first violation with an exact message") {
  for (const Case& c : kCases) {
    CAPTURE(c.name);
    CHECK(bounds_of(c.text, c.limits) == std::string(c.expected));
  }
}

TEST_CASE("a policy of 40 MiB is rejected whole, before it is scanned") {
  // Given text of 40 MiB that is otherwise harmless
  const std::string text(40u << 20, '\n');
  // then its size is the violation, about the text as a whole
  CHECK(bounds_of(text) == "0:0: policy is 40 MiB (at most 16 MiB)");
  CHECK(bounds_of(text, {.max_bytes = 32u << 20}) == "0:0: policy is 40 MiB (at most 32 MiB)");
  CHECK(bounds_of(std::string((1u << 20) + 1, '\n'), {.max_bytes = 1u << 20}) == "0:0: policy is 1.1 MiB (at most 1 MiB)");
  CHECK(bounds_of(std::string(16u << 20, '\n')) == "accepted");
}

TEST_CASE("dotted keys are bounded in number: toml++ takes time quadratic in the tables they open") {
  std::string text;
  for (int i = 0; i < 4096; ++i) text += "a" + std::to_string(i) + ".b = 1\n";
  CHECK(bounds_of(text) == "accepted");
  text += "z.y = 1\n";
  CHECK(bounds_of(text) == "4097:1: more than 4096 dotted keys (a.b = ...); use [table] headers");
}

TEST_CASE("every prefix of an accepted policy is accepted, read only within its bytes") {
  // Given policies accepted under tight limits
  for (std::string_view policy : {kReadmePolicy, kPackagedPolicy, kDottedPolicy}) {
    const PolicyLimits limits{.max_key_depth = 3, .max_nesting = 1};
    REQUIRE(bounds_of(policy, limits) == "accepted");
    for (size_t length = 0; length <= policy.size(); ++length) {
      // when cut anywhere (each cut in a buffer of exactly its length, so ASan
      // sees a read past the end)
      const auto bytes = std::make_unique<char[]>(length);
      policy.copy(bytes.get(), length);
      // then the cut policy is accepted too: a cut only shortens keys and values
      CAPTURE(length);
      CHECK(bounds_of(std::string_view(bytes.get(), length), limits) == "accepted");
    }
  }
}
