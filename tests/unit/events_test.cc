// Netlink notification decoding, on bytes captured from the kernel (Linux 6.18,
// in a namespace: `ip link set lo up`, `ip addr add 192.0.2.10/32 dev lo`,
// `nft add table arp arpguard`, `nft add set arp arpguard vips ...`,
// `nft add table ip other`).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "kernel/netlink_events.h"

using namespace arpguard;

namespace {

std::vector<unsigned char> bytes(const std::string& hex) {
  std::vector<unsigned char> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<unsigned char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

// RTM_NEWADDR 127.0.0.1/8 lo, sent by the kernel itself (nlmsg_pid 0).
const std::string kLoopbackUp =
    "4c000000140000000000000000000000020880fe01000000080001007f000001080002007f000001070003006c6f00000800080080000000"
    "14000600fffffffffffffffff8d00400f8d00400";
// RTM_NEWADDR 192.0.2.10/32 lo, caused by `ip` on port 0x5c58.
const std::string kVipAdded =
    "4c000000140000005d69026b585c0000022080000100000008000100c000020a08000200c000020a070003006c6f00000800080080000000"
    "14000600fffffffffffffffff8d00400f8d00400";
// NFT_MSG_NEWTABLE arp arpguard, port 0x5c5a.
const std::string kTableAdded =
    "40000000000a0000010000005a5c0000030000020d00010061727067756172640000000008000300000000000c0004000000000000000001"
    "0800020000000000";
// NFT_MSG_NEWGEN: a transaction ended.
const std::string kNewGen = "2c0000000f0a0000010000005a5c00000000000208000100000000020800020000005c5a080003006e667400";
// NFT_MSG_NEWSET arp arpguard vips, port 0x5c5b.
const std::string kSetAdded =
    "84000000090a0004010000005b5c0000030000030d0001006172706775617264000000000900020076697073000000000c00100000000000"
    "000000010800030000000004080004000000000708000500000000040a000d000004020000000000040009001700130030786666666666"
    "666666383235303930653000000800140000000000";
// NFT_MSG_NEWTABLE ip other: another family, another table.
const std::string kOtherTable =
    "3c000000000a0000010000005c5c0000020000040a0001006f7468657200000008000300000000000c0004000000000000000002080002"
    "0000000000";

template <class Decode>
std::vector<std::pair<uint32_t, std::string>> decoded(Decode decode, const std::string& hex) {
  const std::vector<unsigned char> data = bytes(hex);
  std::vector<std::pair<uint32_t, std::string>> out;
  for (const KernelEvent& e : decode(data.data(), data.size())) out.emplace_back(e.sender_portid, e.what);
  return out;
}

using Events = std::vector<std::pair<uint32_t, std::string>>;

}  // namespace

TEST_CASE("address notifications name the address, its device and who caused them") {
  CHECK(decoded(decode_rtnetlink, kLoopbackUp) == Events{{0, "RTM_NEWADDR 127.0.0.1/8 lo"}});
  CHECK(decoded(decode_rtnetlink, kVipAdded) == Events{{0x5c58, "RTM_NEWADDR 192.0.2.10/32 lo"}});
}

TEST_CASE("several messages in one datagram are all decoded") {
  CHECK(decoded(decode_rtnetlink, kLoopbackUp + kVipAdded) ==
        Events{{0, "RTM_NEWADDR 127.0.0.1/8 lo"}, {0x5c58, "RTM_NEWADDR 192.0.2.10/32 lo"}});
}

TEST_CASE("nftables notifications about arpguard's table are kept, others dropped") {
  CHECK(decoded(decode_nftables, kTableAdded) == Events{{0x5c5a, "NFT_MSG_NEWTABLE arp arpguard"}});
  CHECK(decoded(decode_nftables, kSetAdded) == Events{{0x5c5b, "NFT_MSG_NEWSET arp arpguard"}});
  CHECK(decoded(decode_nftables, kNewGen).empty());
  CHECK(decoded(decode_nftables, kOtherTable).empty());
  CHECK(decoded(decode_nftables, kTableAdded + kNewGen + kOtherTable + kSetAdded) ==
        Events{{0x5c5a, "NFT_MSG_NEWTABLE arp arpguard"}, {0x5c5b, "NFT_MSG_NEWSET arp arpguard"}});
}

TEST_CASE("a truncated or foreign datagram decodes to nothing, harmlessly") {
  const std::vector<unsigned char> data = bytes(kVipAdded);
  for (size_t len = 0; len < data.size(); ++len) {
    CAPTURE(len);
    CHECK(decode_rtnetlink(data.data(), len).size() <= 1);
  }
  CHECK(decoded(decode_rtnetlink, kTableAdded).empty());  // nftables bytes on the rtnetlink socket
  CHECK(decoded(decode_nftables, kVipAdded).empty());
}
