// Addresses, prefixes and ranges of both families: what text is one, how it
// prints, what a prefix holds, how ranges merge and which addresses are special.
#include <arpa/inet.h>
#include <doctest/doctest.h>

#include <algorithm>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "core/ip.h"
#include "printing.h"

using namespace arpguard;

namespace {

IpAddress ip(std::string_view text) {
  auto parsed = IpAddress::parse(text);
  REQUIRE_MESSAGE(parsed.has_value(), "not an address: ", std::string(text));
  return *parsed;
}

IpPrefix prefix(std::string_view text) {
  auto parsed = IpPrefix::parse(text);
  REQUIRE_MESSAGE(parsed.has_value(), "not a prefix: ", std::string(text));
  return *parsed;
}

IpRange range(std::string_view first, std::string_view last) { return {ip(first), ip(last)}; }

// "a-b" per range, for readable failures.
std::vector<std::string> texts(const std::vector<IpRange>& ranges) {
  std::vector<std::string> out;
  for (const IpRange& r : ranges) out.push_back(r.first.str() + "-" + r.last.str());
  return out;
}

constexpr Uint128 kV6Max = ~Uint128{0};

}  // namespace

TEST_CASE("IPv4 dotted quads parse to their value and print back unchanged") {
  struct Case {
    const char* text;
    uint32_t value;
  };
  const Case cases[] = {
      {"0.0.0.0", 0},
      {"10.0.0.5", 0x0a000005},
      {"192.0.2.1", 0xc0000201},
      {"100.64.0.0", 0x64400000},
      {"255.255.255.255", 0xffffffff},
  };
  for (const Case& c : cases) {
    CAPTURE(std::string(c.text));
    const IpAddress a = ip(c.text);
    CHECK(a.family == Family::kV4);
    CHECK(a.value == Uint128{c.value});
    CHECK(a.bits() == 32);
    CHECK(a.size() == 4);
    CHECK(a.str() == c.text);
  }
}

TEST_CASE("IPv4 addresses and prefixes print as inet_ntop prints them, at every octet width") {
  const uint32_t octets[] = {0, 1, 9, 10, 42, 99, 100, 109, 110, 199, 200, 250, 255};
  for (uint32_t a : octets) {
    for (uint32_t b : octets) {
      const uint32_t value = (a << 24) | (b << 16) | (b << 8) | a;
      const uint32_t wire = htonl(value);
      char expected[INET_ADDRSTRLEN] = {};
      REQUIRE(inet_ntop(AF_INET, &wire, expected, sizeof(expected)));
      CAPTURE(std::string(expected));
      const IpAddress address = ip(expected);
      CHECK(address.str() == expected);
      for (uint8_t length : {0, 8, 9, 24, 32}) {
        CHECK(IpPrefix{address, length}.str() == std::string(expected) + "/" + std::to_string(length));
      }
    }
  }
  CHECK(IpPrefix{ip("2001:db8::"), 128}.str() == "2001:db8::/128");
  CHECK(IpPrefix{ip("2001:db8::"), 100}.str() == "2001:db8::/100");
}

TEST_CASE("IPv6 text parses and prints in inet_ntop's form, as ip and nft print it") {
  struct Case {
    const char* text;
    const char* printed;
  };
  const Case cases[] = {
      {"2001:db8::1", "2001:db8::1"},
      {"2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"},
      {"2001:DB8::A", "2001:db8::a"},
      {"::", "::"},
      {"::1", "::1"},
      {"fe80::1", "fe80::1"},
      {"::ffff:192.0.2.1", "::ffff:192.0.2.1"},
      {"2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"},
      // glibc prints a value in ::/96 (but :: and ::1) in the old IPv4-compatible form.
      {"::a00:1", "::10.0.0.1"},
      {"::2", "::2"},
      {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
      // 45 characters, the longest IPv6 text there is.
      {"0000:0000:0000:0000:0000:ffff:255.255.255.255", "::ffff:255.255.255.255"},
  };
  for (const Case& c : cases) {
    CAPTURE(std::string(c.text));
    const IpAddress a = ip(c.text);
    CHECK(a.family == Family::kV6);
    CHECK(a.bits() == 128);
    CHECK(a.size() == 16);
    CHECK(a.str() == c.printed);
  }
  CHECK(ip("::1").value == 1);
  CHECK(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff").value == kV6Max);
  CHECK(ip("2001:db8::1").value == ((Uint128{0x20010db8} << 96) | 1));
}

TEST_CASE("text that is not exactly one address is rejected") {
  const std::string_view rejected[] = {
      "",
      "1",
      "1.2.3",
      "1.2.3.4.5",
      "1.2.3.",
      ".1.2.3",
      "1..2.3",
      "01.2.3.4",  // inet_aton would read 010 as octal: no leading zeros
      "1.2.3.04",
      "1.2.3.00",
      "1.2.3.256",
      "1.2.3.1000",
      "1234.1.1.1",
      "0x1.2.3.4",
      "+1.2.3.4",
      "1.2.3.-4",
      "a.b.c.d",
      " 1.2.3.4",
      "1.2.3.4 ",
      "1.2.3.4\n",
      "1.2.3.4/32",
      ":::",
      "1::2::3",
      "2001:db8::g",
      "2001:db8:0:0:0:0:0:0:1",
      "fe80::1%eth0",
      "[::1]",
      "::1/128",
      "::ffff:01.2.3.4",
      "1.2.3.4:80",
  };
  for (std::string_view text : rejected) {
    CAPTURE(std::string(text));
    CHECK_FALSE(IpAddress::parse(text).has_value());
  }
}

TEST_CASE("IPv6 text longer than any address is rejected without reading past it") {
  std::string text;
  for (int i = 0; i < 500; ++i) text += "1:";
  CHECK_FALSE(IpAddress::parse(text).has_value());
  // 46 characters, one more than the longest IPv6 text.
  CHECK_FALSE(IpAddress::parse("0000:0000:0000:0000:0000:ffff:255.255.255.2550").has_value());
}

TEST_CASE("parse reads exactly the string_view it is given, not up to a NUL") {
  // A view ending early: only its own characters count.
  const std::string longer_v4 = "10.0.0.55";
  CHECK(IpAddress::parse(std::string_view(longer_v4).substr(0, 8)) == ip("10.0.0.5"));
  const std::string longer_v6 = "2001:db8::12";
  CHECK(IpAddress::parse(std::string_view(longer_v6).substr(0, 11)) == ip("2001:db8::1"));
  // An IPv4 address followed by a NUL and more is not one address.
  CHECK_FALSE(IpAddress::parse(std::string_view("10.0.0.5\0", 9)).has_value());
  CHECK_FALSE(IpAddress::parse(std::string_view("\0" "10.0.0.5", 9)).has_value());
}

TEST_CASE("an IPv6 address with a NUL and junk after it is not one address") {
  // inet_pton reads a C string: an embedded NUL must not end the address early.
  CHECK_FALSE(IpAddress::parse(std::string_view("::1\0junk", 8)).has_value());
  CHECK_FALSE(IpAddress::parse(std::string_view("2001:db8::1\0", 12)).has_value());
}

TEST_CASE("bytes in network order make an address of their length's family, and back") {
  const uint8_t v4[] = {192, 0, 2, 1};
  CHECK(IpAddress::from_bytes(v4, 4) == ip("192.0.2.1"));
  const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x05};
  CHECK(IpAddress::from_bytes(v6, 16) == ip("2001:db8::5"));
  for (size_t len : {0, 1, 3, 5, 6, 15, 17}) {
    CAPTURE(len);
    CHECK_FALSE(IpAddress::from_bytes(v6, len).has_value());
  }
  const auto bytes4 = ip("192.0.2.1").bytes();
  CHECK(std::vector<uint8_t>(bytes4.begin(), bytes4.begin() + 4) == std::vector<uint8_t>{192, 0, 2, 1});
  const auto bytes6 = ip("2001:db8::5").bytes();
  CHECK(std::vector<uint8_t>(bytes6.begin(), bytes6.end()) == std::vector<uint8_t>(std::begin(v6), std::end(v6)));
  const uint32_t network = ip("192.0.2.1").v4_network_order();
  const auto* raw = reinterpret_cast<const uint8_t*>(&network);
  CHECK(std::vector<uint8_t>(raw, raw + 4) == std::vector<uint8_t>{192, 0, 2, 1});
}

TEST_CASE("addresses order by family first: every IPv4 address sorts before every IPv6 one") {
  CHECK(ip("255.255.255.255") < ip("::"));
  CHECK(ip("10.0.0.1") < ip("10.0.0.2"));
  // The same 128-bit value in both families: different addresses.
  CHECK(ip("10.0.0.1") != ip("::a00:1"));
  CHECK(ip("10.0.0.1").value == ip("::a00:1").value);
}

TEST_CASE("next, prev and max follow the family's width") {
  CHECK(ip("10.0.0.255").next() == ip("10.0.1.0"));
  CHECK(ip("10.0.1.0").prev() == ip("10.0.0.255"));
  CHECK(ip("255.255.255.255").is_max());
  CHECK_FALSE(ip("ffff:ffff::").is_max());
  CHECK(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff").is_max());
  CHECK(ip("1.2.3.4").max_value() == Uint128{0xffffffffu});
  CHECK(ip("::1").max_value() == kV6Max);
  CHECK(ip("0.0.0.0").is_unspecified());
  CHECK(ip("::").is_unspecified());
  CHECK_FALSE(ip("0.0.0.1").is_unspecified());
}

TEST_CASE("a family names itself and its socket family") {
  CHECK(to_string(Family::kV4) == "IPv4");
  CHECK(to_string(Family::kV6) == "IPv6");
  CHECK(address_family(Family::kV4) == 2);   // AF_INET
  CHECK(address_family(Family::kV6) == 10);  // AF_INET6
}

TEST_CASE("each address is classified by its own family's special ranges") {
  struct Case {
    const char* text;
    bool loopback, multicast, link_local, reserved, v4_mapped;
  };
  const Case cases[] = {
      // text                      loop   mcast  ll     rsvd   mapped
      {"127.0.0.1",                true,  false, false, false, false},
      {"127.255.255.255",          true,  false, false, false, false},
      {"126.255.255.255",          false, false, false, false, false},
      {"128.0.0.0",                false, false, false, false, false},
      {"0.0.0.1",                  false, false, false, false, false},  // value 1, but not ::1
      {"224.0.0.1",                false, true,  false, false, false},
      {"239.255.255.255",          false, true,  false, false, false},
      {"223.255.255.255",          false, false, false, false, false},
      {"169.254.0.1",              false, false, true,  false, false},
      {"169.254.255.255",          false, false, true,  false, false},
      {"169.253.255.255",          false, false, false, false, false},
      {"169.255.0.0",              false, false, false, false, false},
      {"240.0.0.0",                false, false, false, true,  false},
      {"255.255.255.255",          false, false, false, true,  false},
      {"192.0.2.1",                false, false, false, false, false},
      {"::1",                      true,  false, false, false, false},
      {"::2",                      false, false, false, false, false},
      {"::7f00:1",                 false, false, false, false, false},  // 127.0.0.1's value, in IPv6
      {"ff02::1",                  false, true,  false, false, false},
      {"ff00::",                   false, true,  false, false, false},
      {"feff::",                   false, false, false, false, false},
      {"::e000:1",                 false, false, false, false, false},  // 224.0.0.1's value, in IPv6
      {"fe80::1",                  false, false, true,  false, false},
      {"febf:ffff::",              false, false, true,  false, false},
      {"fec0::",                   false, false, false, false, false},
      {"fe7f:ffff::",              false, false, false, false, false},
      {"::a9fe:1",                 false, false, false, false, false},  // 169.254.0.1's value, in IPv6
      {"f000::",                   false, false, false, false, false},  // 240/4's top bits, in IPv6
      {"::ffff:192.0.2.1",         false, false, false, false, true},
      {"::ffff:0:0",               false, false, false, false, true},
      {"::192.0.2.1",              false, false, false, false, false},  // IPv4-compatible, not mapped
      {"::1:ffff:0:1",             false, false, false, false, false},
      {"2001:db8::1",              false, false, false, false, false},
  };
  for (const Case& c : cases) {
    CAPTURE(std::string(c.text));
    const IpAddress a = ip(c.text);
    CHECK(a.is_loopback() == c.loopback);
    CHECK(a.is_multicast() == c.multicast);
    CHECK(a.is_link_local() == c.link_local);
    CHECK(a.is_reserved() == c.reserved);
    CHECK(a.is_v4_mapped() == c.v4_mapped);
  }
}

TEST_CASE("prefixes parse with or without a length; a bare address is the whole address") {
  struct Case {
    const char* text;
    const char* printed;
    int length;
  };
  const Case cases[] = {
      {"10.0.0.5", "10.0.0.5/32", 32},
      {"10.0.0.0/24", "10.0.0.0/24", 24},
      {"10.0.0.5/32", "10.0.0.5/32", 32},
      {"0.0.0.0/0", "0.0.0.0/0", 0},
      {"2001:db8::1", "2001:db8::1/128", 128},
      {"2001:db8::/64", "2001:db8::/64", 64},
      {"::/0", "::/0", 0},
      {"2001:DB8::/32", "2001:db8::/32", 32},
  };
  for (const Case& c : cases) {
    CAPTURE(std::string(c.text));
    const IpPrefix p = prefix(c.text);
    CHECK(p.str() == c.printed);
    CHECK(p.length == c.length);
    CHECK(p.is_host() == (c.length == p.address.bits()));
  }
  CHECK(IpPrefix::host(ip("192.0.2.1")).str() == "192.0.2.1/32");
  CHECK(IpPrefix::host(ip("2001:db8::1")).str() == "2001:db8::1/128");
  CHECK(prefix("2001:db8::/64").family() == Family::kV6);
}

TEST_CASE("malformed prefixes are rejected") {
  const std::string_view rejected[] = {
      "10.0.0.0/33", "::/129",       "10.0.0.0/",    "10.0.0.0/024", "10.0.0.0/08",  "10.0.0.0/-1",
      "10.0.0.0/+8", "10.0.0.0/8/8", "10.0.0.0/ 8",  "10.0.0.0/8 ",  "/8",           "10.0.0/8",
      "10.0.0.0/x",  "10.0.0.0//8",  "2001:db8::/1e2", "10.0.0.0/99999999999999999999", "",
  };
  for (std::string_view text : rejected) {
    CAPTURE(std::string(text));
    CHECK_FALSE(IpPrefix::parse(text).has_value());
  }
}

TEST_CASE("a prefix is canonical when no host bit is set below its length") {
  CHECK(prefix("10.0.0.0/24").is_canonical());
  CHECK_FALSE(prefix("10.0.0.5/24").is_canonical());
  CHECK(prefix("10.0.0.5/32").is_canonical());
  CHECK(prefix("0.0.0.0/0").is_canonical());
  CHECK_FALSE(prefix("0.0.0.1/0").is_canonical());
  CHECK(prefix("2001:db8::/64").is_canonical());
  CHECK_FALSE(prefix("2001:db8::1/64").is_canonical());
  CHECK_FALSE(prefix("2001:db8:0:0:8000::/64").is_canonical());
  CHECK(prefix("2001:db8::1/128").is_canonical());
  CHECK(prefix("10.0.0.0/24").mask() == Uint128{0xffffff00u});
  CHECK(prefix("0.0.0.0/0").mask() == 0);
  CHECK(prefix("10.0.0.5/32").mask() == Uint128{0xffffffffu});
  CHECK(prefix("2001:db8::/64").mask() == (kV6Max << 64));
  CHECK(prefix("::/0").mask() == 0);
  CHECK(prefix("::1/128").mask() == kV6Max);
}

TEST_CASE("a prefix spans from its first to its last address, whatever host bits it was written with") {
  struct Case {
    const char* text;
    const char* first;
    const char* last;
  };
  const Case cases[] = {
      {"10.0.0.0/24", "10.0.0.0", "10.0.0.255"},
      {"10.0.0.5/24", "10.0.0.0", "10.0.0.255"},
      {"10.0.0.5/32", "10.0.0.5", "10.0.0.5"},
      {"10.0.0.4/31", "10.0.0.4", "10.0.0.5"},
      {"0.0.0.0/0", "0.0.0.0", "255.255.255.255"},
      {"128.0.0.0/1", "128.0.0.0", "255.255.255.255"},
      {"2001:db8::/126", "2001:db8::", "2001:db8::3"},
      {"2001:db8::/64", "2001:db8::", "2001:db8::ffff:ffff:ffff:ffff"},
      {"::/0", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
      {"2001:db8::1/128", "2001:db8::1", "2001:db8::1"},
  };
  for (const Case& c : cases) {
    CAPTURE(std::string(c.text));
    const IpPrefix p = prefix(c.text);
    CHECK(p.first().str() == c.first);
    CHECK(p.last().str() == c.last);
  }
}

TEST_CASE("a prefix contains the addresses of its family between its first and last") {
  const IpPrefix p = prefix("10.0.0.0/24");
  CHECK(p.contains(ip("10.0.0.0")));
  CHECK(p.contains(ip("10.0.0.255")));
  CHECK_FALSE(p.contains(ip("10.0.1.0")));
  CHECK_FALSE(p.contains(ip("9.255.255.255")));
  // Same 128-bit values, other family: never contained.
  CHECK_FALSE(prefix("0.0.0.0/0").contains(ip("::1")));
  CHECK_FALSE(prefix("::/0").contains(ip("10.0.0.1")));
  CHECK_FALSE(prefix("10.0.0.0/8").contains(ip("::a00:1")));
  CHECK(prefix("::/0").contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
}

TEST_CASE("prefixes overlap when they share an address, and never across families") {
  struct Case {
    const char* a;
    const char* b;
    bool overlap;
  };
  const Case cases[] = {
      {"10.0.0.0/24", "10.0.0.128/25", true},
      {"10.0.0.0/24", "10.0.0.77", true},
      {"10.0.0.0/25", "10.0.0.128/25", false},
      {"10.0.0.0/24", "10.0.1.0/24", false},
      {"10.0.0.5", "10.0.0.5/32", true},
      {"0.0.0.0/0", "192.0.2.1", true},
      {"2001:db8::/64", "2001:db8::1", true},
      {"2001:db8::/64", "2001:db8:0:1::/64", false},
      {"0.0.0.0/0", "::/0", false},
      {"10.0.0.1", "::a00:1", false},
      {"10.0.0.1", "::ffff:10.0.0.1", false},
      {"10.0.0.0/8", "::a00:0/104", false},
  };
  for (const Case& c : cases) {
    CAPTURE(std::string(c.a));
    CAPTURE(std::string(c.b));
    CHECK(prefix(c.a).overlaps(prefix(c.b)) == c.overlap);
    CHECK(prefix(c.b).overlaps(prefix(c.a)) == c.overlap);
  }
}

TEST_CASE("a range prints as one address, a prefix, or first-last, as nft does") {
  struct Case {
    IpRange range;
    const char* text;
  };
  const Case cases[] = {
      {IpRange::single(ip("10.0.0.5")), "10.0.0.5"},
      {IpRange::of(prefix("10.0.0.0/24")), "10.0.0.0/24"},
      {range("10.0.0.4", "10.0.0.5"), "10.0.0.4/31"},
      {range("10.0.0.1", "10.0.0.2"), "10.0.0.1-10.0.0.2"},
      {range("10.0.0.0", "10.0.0.2"), "10.0.0.0-10.0.0.2"},
      {range("10.0.0.2", "10.0.0.5"), "10.0.0.2-10.0.0.5"},
      {IpRange::of(prefix("0.0.0.0/0")), "0.0.0.0/0"},
      {IpRange::of(prefix("128.0.0.0/1")), "128.0.0.0/1"},
      {IpRange::single(ip("255.255.255.255")), "255.255.255.255"},
      {IpRange::single(ip("2001:db8::1")), "2001:db8::1"},
      {IpRange::of(prefix("2001:db8::/64")), "2001:db8::/64"},
      {range("2001:db8::1", "2001:db8::5"), "2001:db8::1-2001:db8::5"},
      {IpRange::of(prefix("::/0")), "::/0"},
      {IpRange::of(prefix("::/1")), "::/1"},
      {range("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"), "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"},
  };
  for (const Case& c : cases) {
    CAPTURE(std::string(c.text));
    CHECK(c.range.str() == c.text);
  }
  CHECK(IpRange::of(prefix("::/0")).as_prefix() == prefix("::/0"));
  CHECK(IpRange::of(prefix("0.0.0.0/0")).as_prefix() == prefix("0.0.0.0/0"));
  CHECK_FALSE(range("10.0.0.1", "10.0.0.2").as_prefix().has_value());
  CHECK(IpRange::single(ip("10.0.0.5")).as_prefix() == prefix("10.0.0.5/32"));
}

TEST_CASE("ranges contain and overlap only within one family") {
  const IpRange v4 = range("10.0.0.1", "10.0.0.9");
  CHECK(v4.contains(ip("10.0.0.9")));
  CHECK_FALSE(v4.contains(ip("10.0.0.10")));
  CHECK_FALSE(v4.contains(ip("::a00:5")));
  CHECK(v4.overlaps(range("10.0.0.9", "10.0.0.20")));
  CHECK_FALSE(v4.overlaps(range("10.0.0.10", "10.0.0.20")));
  CHECK_FALSE(v4.overlaps(range("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
  CHECK(v4.family() == Family::kV4);
}

TEST_CASE("merge_ranges gives what sorting then joining gives, for input in any number of ordered runs") {
  // The reference: every range sorted, then each joined with the last if they overlap or touch.
  auto reference = [](std::vector<IpRange> ranges) {
    std::sort(ranges.begin(), ranges.end());
    std::vector<IpRange> out;
    for (const IpRange& r : ranges) {
      if (!out.empty() && out.back().family() == r.family() &&
          (out.back().last.is_max() || r.first.value <= out.back().last.value + 1)) {
        out.back().last = std::max(out.back().last, r.last);
      } else {
        out.push_back(r);
      }
    }
    return out;
  };
  std::mt19937 random(20261123);
  for (int trial = 0; trial < 2000; ++trial) {
    // 1 to 300 runs, each in order, of ranges of either family in a small space (so that they meet).
    const int runs = 1 + static_cast<int>(random() % (trial % 2 ? 40 : 300));
    std::vector<IpRange> in;
    for (int run = 0; run < runs; ++run) {
      std::vector<IpRange> part;
      const int length = static_cast<int>(random() % 12);
      for (int k = 0; k < length; ++k) {
        const Family family = random() % 5 == 0 ? Family::kV6 : Family::kV4;
        const uint32_t first = random() % 200;
        const uint32_t last = first + random() % 4;
        part.push_back({IpAddress{family, first}, IpAddress{family, last}});
      }
      std::sort(part.begin(), part.end());
      in.insert(in.end(), part.begin(), part.end());
    }
    CAPTURE(trial);
    CHECK(texts(merge_ranges(in)) == texts(reference(in)));
  }
}

TEST_CASE("merge_ranges sorts and joins overlapping and adjacent ranges of one family") {
  struct Case {
    const char* name;
    std::vector<IpRange> in;
    std::vector<std::string> out;
  };
  const Case cases[] = {
      {"nothing", {}, {}},
      {"adjacent ranges join", {range("10.0.0.0", "10.0.0.4"), range("10.0.0.5", "10.0.0.9")}, {"10.0.0.0-10.0.0.9"}},
      {"overlapping ranges join", {range("10.0.0.0", "10.0.0.6"), range("10.0.0.5", "10.0.0.9")}, {"10.0.0.0-10.0.0.9"}},
      {"a contained range disappears", {range("10.0.0.0", "10.0.0.9"), range("10.0.0.3", "10.0.0.4")},
       {"10.0.0.0-10.0.0.9"}},
      {"a gap of one address keeps them apart", {IpRange::single(ip("10.0.0.1")), IpRange::single(ip("10.0.0.3"))},
       {"10.0.0.1-10.0.0.1", "10.0.0.3-10.0.0.3"}},
      {"unsorted input comes out sorted",
       {IpRange::single(ip("10.0.0.9")), IpRange::single(ip("10.0.0.1")), IpRange::single(ip("10.0.0.2"))},
       {"10.0.0.1-10.0.0.2", "10.0.0.9-10.0.0.9"}},
      {"duplicates collapse", {IpRange::single(ip("10.0.0.1")), IpRange::single(ip("10.0.0.1"))},
       {"10.0.0.1-10.0.0.1"}},
      {"families never merge, even at equal values",
       {IpRange::single(ip("::a00:2")), IpRange::single(ip("10.0.0.1")), IpRange::single(ip("10.0.0.2")),
        IpRange::single(ip("::a00:1"))},
       {"10.0.0.1-10.0.0.2", "::10.0.0.1-::10.0.0.2"}},
      {"the IPv4 maximum is not adjacent to IPv6 ::",
       {IpRange::single(ip("::")), IpRange::single(ip("255.255.255.255"))},
       {"255.255.255.255-255.255.255.255", "::-::"}},
      {"IPv4 ranges up to the maximum address",
       {IpRange::of(prefix("255.255.255.0/24")), IpRange::single(ip("255.255.255.255")),
        range("255.255.255.128", "255.255.255.254")},
       {"255.255.255.0-255.255.255.255"}},
      {"IPv6 ranges up to the maximum address, without overflow",
       {IpRange::single(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")), IpRange::of(prefix("ffff::/16")),
        IpRange::single(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))},
       {"ffff::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}},
      {"whole spaces of both families stay two",
       {IpRange::of(prefix("::/0")), IpRange::of(prefix("0.0.0.0/0")), IpRange::single(ip("10.0.0.1"))},
       {"0.0.0.0-255.255.255.255", "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}},
  };
  for (const Case& c : cases) {
    CAPTURE(std::string(c.name));
    CHECK(texts(merge_ranges(c.in)) == c.out);
  }
}
