// What `arpguard probe` hears: only ARP replies and neighbour advertisements
// count as answers, decoded from the network header on as its packet socket
// receives them. And where a neighbour solicitation goes.
#include <doctest/doctest.h>

#include <algorithm>

#include "kernel/prober.h"
#include "tests/wire/captured.h"

using namespace arpguard;
using arpguard::wire_test::from_hex;

namespace {

std::vector<uint8_t> bytes_of(std::string hex) {
  hex.erase(std::remove(hex.begin(), hex.end(), ' '), hex.end());
  return from_hex(hex);
}

const MacAddress kSource = *MacAddress::parse("02:00:00:00:00:03");

}  // namespace

TEST_CASE("an ARP reply is an answer: the VIP is its sender address, the MAC its sender hardware address") {
  // 192.0.2.80 is-at 02:00:00:00:00:03, to 192.0.2.1 at 02:00:00:00:00:01.
  const auto reply = bytes_of("0001 0800 06 04 0002 020000000003 c0000250 020000000001 c0000201");
  std::optional<HeardAnswer> heard = decode_answer(0x0806, reply.data(), reply.size(), kSource, 7);
  REQUIRE(heard);
  CHECK(heard->frame.kind == FrameKind::kArpReply);
  CHECK(heard->frame.vip.str() == "192.0.2.80");
  CHECK(heard->frame.mac.str() == "02:00:00:00:00:03");
  CHECK(heard->frame.ifindex == 7);
  CHECK(heard->link_source == kSource);

  // A request asks, it does not answer.
  auto request = reply;
  request[7] = 1;
  CHECK_FALSE(decode_answer(0x0806, request.data(), request.size(), kSource, 7));
  // The wrong ethertype for the bytes: nothing.
  CHECK_FALSE(decode_answer(0x86dd, reply.data(), reply.size(), kSource, 7));
  CHECK_FALSE(decode_answer(0x0800, reply.data(), reply.size(), kSource, 7));
}

TEST_CASE("a neighbour advertisement is an answer; a solicitation is not") {
  const auto advert = bytes_of(
      "6000000000203aff 20010db8000000000000000000000080 fe80000000000000000000fffe000001"
      "8800 0000 60000000 20010db8000000000000000000000080 0201 020000000003");
  std::optional<HeardAnswer> heard = decode_answer(0x86dd, advert.data(), advert.size(), kSource, 2);
  REQUIRE(heard);
  CHECK(heard->frame.kind == FrameKind::kNeighbourAdvertisement);
  CHECK(heard->frame.vip.str() == "2001:db8::80");
  CHECK(heard->frame.mac.str() == "02:00:00:00:00:03");
  CHECK_FALSE(heard->frame.gratuitous);

  auto solicitation = advert;
  solicitation[40] = 135;
  CHECK_FALSE(decode_answer(0x86dd, solicitation.data(), solicitation.size(), kSource, 2));
  for (size_t len = 0; len < 64; ++len) CHECK_FALSE(decode_answer(0x86dd, advert.data(), len, kSource, 2));
}

TEST_CASE("a solicitation goes to the target's solicited-node group") {
  CHECK(solicited_node_group(*IpAddress::parse("2001:db8::80")).str() == "ff02::1:ff00:80");
  CHECK(solicited_node_group(*IpAddress::parse("2001:db8::1:2345:6789")).str() == "ff02::1:ff45:6789");
}
