#include <doctest/doctest.h>

#include "core/ipv4.h"

using namespace arpguard;

TEST_CASE("IPv4 text is parsed strictly") {
  CHECK(Ipv4::parse("192.0.2.1")->str() == "192.0.2.1");
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "1.2.3.256", "01.2.3.4", "1.2.3.4 ", "a.b.c.d", "1..2.3", "-1.2.3.4"}) {
    CAPTURE(bad);
    CHECK_FALSE(Ipv4::parse(bad).has_value());
  }
}

TEST_CASE("prefixes carry their length; a bare address is /32") {
  CHECK(Ipv4Prefix::parse("10.0.0.5")->str() == "10.0.0.5/32");
  CHECK(Ipv4Prefix::parse("10.0.0.0/8")->length == 8);
  CHECK(Ipv4Prefix::parse("10.0.0.0/8")->last().str() == "10.255.255.255");
  for (const char* bad : {"10.0.0.0/33", "10.0.0.0/", "10.0.0.0/08", "10.0.0.0/x"}) {
    CAPTURE(bad);
    CHECK_FALSE(Ipv4Prefix::parse(bad).has_value());
  }
}
