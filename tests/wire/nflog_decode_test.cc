// Decoding what nfnetlink_log hands over for the wire watch's log rules, from
// messages the real kernel sent (captured/nflog.hex, made by capture.sh from
// captured/nflog.script and captured/rules.nft), and from bytes no kernel
// should send: truncated, corrupted, random. Nothing here may read past the
// bytes it is given (the ASan build runs this suite).
#include <doctest/doctest.h>
#include <linux/netlink.h>

#include <algorithm>
#include <cstring>
#include <random>

#include <fmt/format.h>

#include "kernel/nflog.h"
#include "tests/wire/captured.h"

using namespace arpguard;
using arpguard::wire_test::captured;
using arpguard::wire_test::from_hex;
using arpguard::wire_test::load_captured;

namespace {

std::string show(WatchRule rule) {
  switch (rule) {
    case WatchRule::kClaim: return "claim";
    case WatchRule::kAsk: return "ask";
    case WatchRule::kLeak: return "leak";
  }
  return "?";
}

/// One frame, every field: "claim arp reply if 2 vip 192.0.2.80 mac 02:00:00:00:00:02 sender - plain".
std::string show(const WireFrame& frame) {
  return fmt::format("{} {} if {} vip {} mac {} sender {} {}", show(frame.rule), to_string(frame.kind), frame.ifindex,
                     frame.vip.str(), frame.mac.str(), frame.sender ? frame.sender->str() : "-",
                     frame.gratuitous ? "gratuitous" : "plain");
}

std::string decode_label(const std::string& label) {
  const std::vector<uint8_t>& bytes = captured(label).bytes;
  std::vector<WireFrame> frames;
  const size_t skipped = decode_nflog_datagram(bytes.data(), bytes.size(), frames);
  if (frames.size() == 1 && skipped == 0) return show(frames[0]);
  return fmt::format("{} frame(s), {} skipped", frames.size(), skipped);
}

std::vector<uint8_t> all_captured_in_one_datagram() {
  std::vector<uint8_t> datagram;
  for (const auto& message : load_captured()) {
    datagram.insert(datagram.end(), message.bytes.begin(), message.bytes.end());
    datagram.resize((datagram.size() + 3) & ~size_t{3});  // NLMSG_ALIGN
  }
  return datagram;
}

// A payload as decode_wire_payload takes it, from hex with spaces for reading.
std::vector<uint8_t> bytes_of(std::string hex) {
  hex.erase(std::remove(hex.begin(), hex.end(), ' '), hex.end());
  return from_hex(hex);
}

const MacAddress kFrameSource = *MacAddress::parse("02:00:00:00:00:99");

std::string decode_payload(uint8_t nfproto, WatchRule rule, const std::vector<uint8_t>& payload,
                           std::optional<MacAddress> link_source = kFrameSource) {
  std::optional<WireFrame> frame = decode_wire_payload(nfproto, rule, payload.data(), payload.size(), link_source);
  return frame ? show(*frame) : "none";
}

// ARP request over Ethernet: who-has 192.0.2.80 tell 192.0.2.2, from 02:00:00:00:00:02.
const std::string kArpRequest = "0001 0800 06 04 0001 020000000002 c0000202 000000000000 c0000250";
// IPv6 fe80::ff:fe00:2 -> ff02::1:ff00:80, ICMPv6 NS for 2001:db8::80, source link-layer option.
const std::string kIpv6ToSolicitedNode =
    "6000000000203aff fe80000000000000000000fffe000002 ff0200000000000000000001ff000080";
const std::string kSolicitation = "8700 0000 00000000 20010db8000000000000000000000080 0101 020000000002";

}  // namespace

TEST_CASE("ARP frames the log rules hand over decode to who claims or asks for which VIP") {
  // Given the messages the kernel sent for arping between two namespaces, when decoded, then:
  // an ask names the VIP asked for and where the answer would go;
  CHECK(decode_label("arp_ask.0") == "ask arp request if 2 vip 192.0.2.80 mac 02:00:00:00:00:02 sender 192.0.2.2 plain");
  // an ARP probe (sender 0.0.0.0) has nowhere to answer to;
  CHECK(decode_label("arp_ask_probe.0") == "ask arp request if 2 vip 192.0.2.81 mac 02:00:00:00:00:02 sender - plain");
  // a reply from the other host claims the VIP;
  CHECK(decode_label("arp_claim_reply.0") == "claim arp reply if 2 vip 192.0.2.80 mac 02:00:00:00:00:02 sender - plain");
  // a gratuitous request matches the claim rule and the ask rule: two messages;
  CHECK(decode_label("arp_claim_gratuitous.0") ==
        "claim arp request if 2 vip 192.0.2.80 mac 02:00:00:00:00:02 sender - gratuitous");
  CHECK(decode_label("arp_claim_gratuitous.1") ==
        "ask arp request if 2 vip 192.0.2.80 mac 02:00:00:00:00:02 sender 192.0.2.80 gratuitous");
  CHECK(decode_label("arp_claim_gratuitous_reply.0") ==
        "claim arp reply if 2 vip 192.0.2.80 mac 02:00:00:00:00:02 sender - gratuitous");
  // this host answering for its VIP leaks it: on output the payload starts at
  // the Ethernet header, and the interface is the output device.
  CHECK(decode_label("arp_leak_reply.0") == "ask arp request if 2 vip 192.0.2.82 mac 02:00:00:00:00:02 sender 192.0.2.2 plain");
  CHECK(decode_label("arp_leak_reply.1") == "leak arp reply if 2 vip 192.0.2.82 mac 02:00:00:00:00:01 sender - plain");
}

TEST_CASE("NDP frames the log rules hand over decode to who claims or asks for which VIP") {
  // A solicitation names the link-layer address in its option, and its IPv6 source.
  CHECK(decode_label("ndp_ask.0") ==
        "ask neighbour solicitation if 2 vip 2001:db8::80 mac 02:00:00:00:00:02 sender fe80::ff:fe00:2 plain");
  // Duplicate address detection: from ::, no option; the MAC is the frame's source (NFULA_HWADDR).
  CHECK(decode_label("ndp_ask_dad.0") ==
        "ask neighbour solicitation if 2 vip 2001:db8::81 mac 02:00:00:00:00:02 sender - plain");
  // A solicited advertisement claims its target, named in the target link-layer option.
  CHECK(decode_label("ndp_claim_solicited.0") ==
        "claim neighbour advertisement if 2 vip 2001:db8::81 mac 02:00:00:00:00:02 sender - plain");
  // An unsolicited one (S clear, to ff02::1 after DAD with ndisc_notify) is gratuitous.
  CHECK(decode_label("ndp_claim_unsolicited.0") ==
        "ask neighbour solicitation if 2 vip 2001:db8::83 mac 02:00:00:00:00:02 sender - plain");
  CHECK(decode_label("ndp_claim_unsolicited.1") ==
        "claim neighbour advertisement if 2 vip 2001:db8::83 mac 02:00:00:00:00:02 sender - gratuitous");
  // This host's own advertisement on output: the payload starts at the IPv6 header.
  CHECK(decode_label("ndp_leak_advert.0") ==
        "ask neighbour solicitation if 2 vip 2001:db8::82 mac 02:00:00:00:00:02 sender fe80::ff:fe00:2 plain");
  CHECK(decode_label("ndp_leak_advert.1") ==
        "leak neighbour advertisement if 2 vip 2001:db8::82 mac 02:00:00:00:00:01 sender - plain");
}

TEST_CASE("a log message with another prefix is skipped and counted, never decoded") {
  CHECK(decode_label("other_prefix.0") == "0 frame(s), 1 skipped");
  const std::vector<uint8_t>& bytes = captured("other_prefix.0").bytes;
  CHECK_FALSE(decode_nflog_packet(reinterpret_cast<const nlmsghdr*>(bytes.data())));
}

TEST_CASE("one datagram holding every captured message decodes each in order") {
  const std::vector<uint8_t> datagram = all_captured_in_one_datagram();
  std::vector<WireFrame> frames;
  const size_t skipped = decode_nflog_datagram(datagram.data(), datagram.size(), frames);
  CHECK(skipped == 1);
  CHECK(frames.size() == load_captured().size() - 1);
  REQUIRE_FALSE(frames.empty());
  CHECK(show(frames.front()) == decode_label("arp_ask.0"));
  CHECK(show(frames.back()) == decode_label("ndp_leak_advert.1"));
}

TEST_CASE("a control message in the datagram (NLMSG_DONE) is neither a frame nor skipped") {
  std::vector<uint8_t> datagram = captured("arp_ask.0").bytes;
  nlmsghdr done{};
  done.nlmsg_len = NLMSG_HDRLEN + 4;
  done.nlmsg_type = NLMSG_DONE;
  const size_t at = datagram.size();
  datagram.resize(at + done.nlmsg_len);
  std::memcpy(datagram.data() + at, &done, sizeof(done));
  std::vector<WireFrame> frames;
  CHECK(decode_nflog_datagram(datagram.data(), datagram.size(), frames) == 0);
  CHECK(frames.size() == 1);
}

TEST_CASE("every truncation of every captured message is decoded safely or not at all") {
  for (const auto& message : load_captured()) {
    CAPTURE(message.label);
    for (size_t len = 0; len <= message.bytes.size(); ++len) {
      // Cut short as received (the header still claims the whole length: not a message)...
      std::vector<uint8_t> cut(message.bytes.begin(), message.bytes.begin() + static_cast<long>(len));
      std::vector<WireFrame> frames;
      decode_nflog_datagram(cut.data(), cut.size(), frames);
      if (len < message.bytes.size()) CHECK(frames.empty());
      // ...and with the header's length cut to match: attributes end early.
      if (len >= sizeof(nlmsghdr)) {
        const uint32_t claimed = static_cast<uint32_t>(len);
        std::memcpy(cut.data(), &claimed, sizeof(claimed));
        frames.clear();
        decode_nflog_datagram(cut.data(), cut.size(), frames);
        for (const WireFrame& frame : frames) CHECK(frame.ifindex >= 0);
      }
    }
  }
}

TEST_CASE("captured messages with corrupted bytes never crash the decoder") {
  std::mt19937 random(4247);
  const auto messages = load_captured();
  for (int round = 0; round < 20000; ++round) {
    std::vector<uint8_t> bytes = messages[random() % messages.size()].bytes;
    for (int flips = 1 + static_cast<int>(random() % 4); flips > 0; --flips) {
      bytes[random() % bytes.size()] = static_cast<uint8_t>(random());
    }
    std::vector<WireFrame> frames;
    decode_nflog_datagram(bytes.data(), bytes.size(), frames);
    CHECK(frames.size() <= 1);
  }
}

TEST_CASE("random bytes never crash the decoder") {
  std::mt19937 random(7);
  for (int round = 0; round < 20000; ++round) {
    std::vector<uint8_t> bytes(random() % 300);
    for (uint8_t& byte : bytes) byte = static_cast<uint8_t>(random());
    if (bytes.size() >= 4 && round % 2 == 0) {
      // Mostly well-framed: a plausible length and the log packet type.
      const uint32_t len = static_cast<uint32_t>(bytes.size());
      std::memcpy(bytes.data(), &len, 4);
      if (bytes.size() >= 6) bytes[4] = 0, bytes[5] = 4;
    }
    std::vector<WireFrame> frames;
    decode_nflog_datagram(bytes.data(), bytes.size(), frames);
    for (uint8_t nfproto : {uint8_t{3}, uint8_t{10}}) {
      decode_wire_payload(nfproto, WatchRule::kAsk, bytes.data(), bytes.size(), std::nullopt);
    }
  }
}

TEST_CASE("an ARP payload needs all 28 bytes, Ethernet and IPv4 sizes, and a request or reply") {
  const std::vector<uint8_t> request = bytes_of(kArpRequest);
  CHECK(decode_payload(3, WatchRule::kAsk, request) ==
        "ask arp request if 0 vip 192.0.2.80 mac 02:00:00:00:00:02 sender 192.0.2.2 plain");
  // For a claim, the VIP is the sender's address.
  CHECK(decode_payload(3, WatchRule::kClaim, request) ==
        "claim arp request if 0 vip 192.0.2.2 mac 02:00:00:00:00:02 sender - plain");
  for (size_t len = 0; len < request.size(); ++len) {
    CHECK(decode_wire_payload(3, WatchRule::kAsk, request.data(), len, std::nullopt) == std::nullopt);
  }
  std::vector<uint8_t> rarp = request;
  rarp[7] = 3;
  CHECK(decode_payload(3, WatchRule::kAsk, rarp) == "none");
  std::vector<uint8_t> long_hardware = request;
  long_hardware[4] = 8;
  CHECK(decode_payload(3, WatchRule::kAsk, long_hardware) == "none");
  std::vector<uint8_t> not_ipv4 = request;
  not_ipv4[2] = 0x86;
  CHECK(decode_payload(3, WatchRule::kAsk, not_ipv4) == "none");
  // Neither ARP nor IPv6: nothing.
  CHECK(decode_payload(2, WatchRule::kAsk, request) == "none");
}

TEST_CASE("an NDP payload: the option's MAC, else the frame's; extension headers skipped; lengths checked") {
  const std::vector<uint8_t> solicitation = bytes_of(kIpv6ToSolicitedNode + kSolicitation);
  CHECK(decode_payload(10, WatchRule::kAsk, solicitation) ==
        "ask neighbour solicitation if 0 vip 2001:db8::80 mac 02:00:00:00:00:02 sender fe80::ff:fe00:2 plain");

  // Cut inside the option: the frame's source stands in; cut inside the target: nothing.
  const size_t without_option = 40 + 24;
  for (size_t len = 0; len < solicitation.size(); ++len) {
    CAPTURE(len);
    std::optional<WireFrame> frame = decode_wire_payload(10, WatchRule::kAsk, solicitation.data(), len, kFrameSource);
    CHECK(frame.has_value() == (len >= without_option));
    if (frame) CHECK(frame->mac == kFrameSource);
  }
  // No option and no frame source: the MAC stays all zero.
  CHECK(decode_payload(10, WatchRule::kAsk, std::vector<uint8_t>(solicitation.begin(), solicitation.begin() + 64),
                       std::nullopt) ==
        "ask neighbour solicitation if 0 vip 2001:db8::80 mac 00:00:00:00:00:00 sender fe80::ff:fe00:2 plain");

  // An option of length 0 is invalid: the options end there.
  std::vector<uint8_t> zero_length = solicitation;
  zero_length[40 + 25] = 0;
  CHECK(decode_payload(10, WatchRule::kAsk, zero_length).find("mac 02:00:00:00:00:99") != std::string::npos);

  // A hop-by-hop options header (8 bytes, next header 58) before ICMPv6 is skipped.
  const std::vector<uint8_t> with_hop_by_hop =
      bytes_of("6000000000283a00" "fe80000000000000000000fffe000002 ff0200000000000000000001ff000080"
               "3a00 010400000000" + kSolicitation);
  std::vector<uint8_t> hop = with_hop_by_hop;
  hop[6] = 0;  // next header: hop-by-hop
  CHECK(decode_payload(10, WatchRule::kAsk, hop).find("vip 2001:db8::80 mac 02:00:00:00:00:02") != std::string::npos);
  // A fragment header is not: nothing.
  std::vector<uint8_t> fragment = hop;
  fragment[6] = 44;
  CHECK(decode_payload(10, WatchRule::kAsk, fragment) == "none");

  // Not ICMPv6, another ICMPv6 type, a code other than 0, not IPv6: nothing.
  std::vector<uint8_t> udp = solicitation;
  udp[6] = 17;
  CHECK(decode_payload(10, WatchRule::kAsk, udp) == "none");
  std::vector<uint8_t> echo = solicitation;
  echo[40] = 128;
  CHECK(decode_payload(10, WatchRule::kAsk, echo) == "none");
  std::vector<uint8_t> code = solicitation;
  code[41] = 1;
  CHECK(decode_payload(10, WatchRule::kAsk, code) == "none");
  std::vector<uint8_t> version4 = solicitation;
  version4[0] = 0x45;
  CHECK(decode_payload(10, WatchRule::kAsk, version4) == "none");
}

TEST_CASE("an advertisement: solicited or not, its target link-layer option after any other option") {
  // NA from 2001:db8::81 to fe80::ff:fe00:1, flags S|O, a nonce option (14) first, then the target's MAC.
  const std::vector<uint8_t> advert =
      bytes_of("6000000000283aff 20010db8000000000000000000000081 fe80000000000000000000fffe000001"
               "8800 0000 60000000 20010db8000000000000000000000081 0e01 112233445566 0201 020000000003");
  CHECK(decode_payload(10, WatchRule::kClaim, advert) ==
        "claim neighbour advertisement if 0 vip 2001:db8::81 mac 02:00:00:00:00:03 sender - plain");
  std::vector<uint8_t> unsolicited = advert;
  unsolicited[44] = 0x20;  // O only
  CHECK(decode_payload(10, WatchRule::kClaim, unsolicited) ==
        "claim neighbour advertisement if 0 vip 2001:db8::81 mac 02:00:00:00:00:03 sender - gratuitous");
}
