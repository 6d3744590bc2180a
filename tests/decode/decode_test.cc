// Decoding notifications from the bytes Linux sent, and folding them into the
// cache: every message kind arpguardd subscribes to, captured once from the
// real kernel (captured/*.hex, made by capture.sh from captured/*.script),
// decoded with the daemon's own entry points (decode_rtnetlink,
// decode_nftables), applied with apply_delta, and the resulting cache
// compared with exactly what the kernel held. Then duplicates, late events,
// messages to ignore, and truncated or garbage bytes.
//
// The expected values are those of the capture: links lo (1), veth1 (2) and
// veth0 (3); the commands are in the comments of the .hex files.
#include <doctest/doctest.h>

#include <fmt/format.h>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <functional>
#include <random>
#include <set>
#include <sstream>

#include "core/observed_delta.h"
#include "kernel/events.h"
#include "rules/tables.h"
#include "tests/decode/fixtures.h"

using namespace arpguard;
using namespace arpguard::decode_test;

namespace {

const Fixture& rtnl_fixture() {
  static const Fixture f = Fixture::load("rtnl");
  return f;
}

const Fixture& nft_fixture() {
  static const Fixture f = Fixture::load("nft");
  return f;
}

// The one event a message decodes to, shown; "" when none, "A\nB" when several.
std::string one(const Captured& c) {
  std::string out = show(decode(c));
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// The messages folded in order into `observed`; what they touched, merged.
Touched fold(Observed& observed, const std::vector<const Captured*>& messages) {
  Touched all;
  for (const Captured* c : messages) {
    for (const KernelEvent& e : decode(*c)) all.merge(apply_delta(observed, e.delta));
  }
  return all;
}

Observed folded(const std::vector<const Captured*>& messages) {
  Observed o;
  fold(o, messages);
  return o;
}

std::vector<const Captured*> all_of(const Fixture& f) {
  std::vector<const Captured*> out;
  for (const Captured& c : f.all()) out.push_back(&c);
  return out;
}

// The lines of view() that start with `prefix`.
std::string lines_of(const Observed& o, const std::string& prefix) {
  std::istringstream in(view(o));
  std::string out;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) out += line + "\n";
  }
  return out;
}

// nft state without rule expressions (those are checked against rules/ below).
std::string nft_state(const Observed& o) {
  std::string out;
  for (const auto& [id, t] : o.tables) {
    out += fmt::format("table {} flags {:#x}{}\n", id.str(), t.flags, t.owner ? " owned" : "");
    for (const auto& [name, s] : t.sets) {
      out += fmt::format(" set {} flags {:#x} key {}/{} data {}/{}\n", name, s.flags, s.key_type, s.key_len,
                         s.data_type, s.data_len);
      for (const auto& [key, start] : s.points) out += fmt::format("  {} {}\n", start ? "start" : "end", key.str());
      for (const nft::Element& e : s.elements) out += fmt::format("  element {}\n", e.str());
    }
    for (const auto& [name, c] : t.chains) {
      out += c.base ? fmt::format(" chain {} {} hook {} priority {} policy {}\n", name, c.type, c.hook, c.priority,
                                  c.policy)
                    : fmt::format(" chain {} regular\n", name);
    }
    for (const auto& [handle, r] : t.rules) out += fmt::format(" rule {} {} ({} expressions)\n", handle, r.chain, r.exprs.size());
  }
  return out;
}

IpAddress ip(const char* text) { return *IpAddress::parse(text); }
IpRange range(const char* a, const char* b) { return {ip(a), ip(b)}; }
nft::Element tuple(const char* first, const char* last, uint8_t proto, uint16_t p1, uint16_t p2, uint16_t to = 0) {
  return nft::Element{range(first, last), proto, p1, p2, to};
}

// Whether bytes that cannot be decoded are reported, so that the daemon reads
// everything again. decode_rtnetlink() and decode_nftables() return events and
// nothing else: today the only report they can make is an event that
// apply_delta() answers with `resync`.
bool reported_as_undecodable(bool nft, const std::vector<uint8_t>& bytes, const Observed& cache) {
  Observed copy = cache;
  for (const KernelEvent& e : decode_bytes(nft, bytes)) {
    if (apply_delta(copy, e.delta).resync) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("print every captured message decoded" * doctest::skip()) {
  for (const Fixture* fixture : {&rtnl_fixture(), &nft_fixture()}) {
    for (const Captured& c : fixture->all()) {
      std::printf("%s %s (%s)\n%s", c.label.c_str(), c.type.c_str(), c.command.c_str(), show(decode(c)).c_str());
    }
  }
}

TEST_CASE("decode: the fixtures hold every message kind arpguardd subscribes to") {
  std::set<std::string> types;
  for (const Fixture* fixture : {&rtnl_fixture(), &nft_fixture()}) {
    for (const Captured& c : fixture->all()) types.insert(c.type);
  }
  for (const char* type : {"RTM_NEWLINK", "RTM_DELLINK", "RTM_NEWADDR", "RTM_DELADDR", "RTM_NEWROUTE", "RTM_DELROUTE",
                           "NFT_MSG_NEWTABLE", "NFT_MSG_DELTABLE", "NFT_MSG_NEWCHAIN", "NFT_MSG_DELCHAIN",
                           "NFT_MSG_NEWRULE", "NFT_MSG_DELRULE", "NFT_MSG_NEWSET", "NFT_MSG_DELSET",
                           "NFT_MSG_NEWSETELEM", "NFT_MSG_DELSETELEM", "NFT_MSG_NEWGEN"}) {
    CAPTURE(type);
    CHECK(types.count(type) == 1);
  }
}

// ---- rtnetlink ----

TEST_CASE("decode: RTM_NEWLINK and RTM_DELLINK") {
  const Fixture& f = rtnl_fixture();
  CHECK(one(f.at("lo_up.0")) == "LinkUpsert 1 lo loopback up");
  CHECK(one(f.at("veth_add.0")) == "LinkUpsert 2 veth1 down");
  CHECK(one(f.at("veth_add.1")) == "LinkUpsert 3 veth0 down");
  CHECK(one(f.at("veth0_up.0")) == "LinkUpsert 3 veth0 up");
  CHECK(one(f.at("veth0_down.0")) == "LinkUpsert 3 veth0 down");
  CHECK(one(f.at("veth_del.12")) == "LinkRemoved 3");
  CHECK(one(f.at("veth_del.13")) == "LinkRemoved 2");
  // The kernel's own doing: no sender.
  CHECK(decode(f.at("veth0_up.0")).at(0).sender_portid == 0);
}

TEST_CASE("decode: RTM_NEWADDR and RTM_DELADDR, IPv4, scope host and global") {
  const Fixture& f = rtnl_fixture();
  CHECK(one(f.at("v4_lo_host_add.0")) == "AddressUpsert 192.0.2.10/32 link 1 scope 254 flags 0x80");
  CHECK(one(f.at("v4_veth_global_add.0")) == "AddressUpsert 192.0.2.20/24 link 3 scope 0 flags 0x80");
  CHECK(one(f.at("lo_up.1")) == "AddressUpsert 127.0.0.1/8 link 1 scope 254 flags 0x80");
  CHECK(one(f.at("v4_lo_host_del.0")) == "AddressRemoved 192.0.2.10/32 link 1");
  CHECK(one(f.at("v4_veth_global_del.0")) == "AddressRemoved 192.0.2.20/24 link 3");
  // Made by `ip`: the event carries its netlink port (arpguardd tells its own changes by it).
  const Captured& added = f.at("v4_lo_host_add.0");
  const uint32_t pid = added.bytes[12] | added.bytes[13] << 8 | added.bytes[14] << 16 | uint32_t(added.bytes[15]) << 24;
  CHECK(pid != 0);
  CHECK(decode(added).at(0).sender_portid == pid);
}

TEST_CASE("decode: RTM_NEWADDR and RTM_DELADDR, IPv6, nodad, deprecated, global and link-local") {
  const Fixture& f = rtnl_fixture();
  // nodad (0x02) | deprecated (0x20) | permanent (0x80): a VIP as arpguard configures one.
  CHECK(one(f.at("v6_lo_deprecated_add.1")) == "AddressUpsert 2001:db8::10/128 link 1 scope 0 flags 0xa2");
  CHECK(one(f.at("v6_veth_global_add.1")) == "AddressUpsert 2001:db8:1::20/64 link 3 scope 0 flags 0x82");
  CHECK(one(f.at("veth1_up.9")) == "AddressUpsert fe80::ff:fe00:3/64 link 3 scope 253 flags 0x80");
  CHECK(one(f.at("lo_up.5")) == "AddressUpsert ::1/128 link 1 scope 254 flags 0x80");
  CHECK(one(f.at("v6_lo_deprecated_del.0")) == "AddressRemoved 2001:db8::10/128 link 1");
  // A link going down takes its IPv6 addresses with it, each notified.
  CHECK(one(f.at("veth0_down.6")) == "AddressRemoved 2001:db8:1::20/64 link 3");
  CHECK(one(f.at("veth0_down.7")) == "AddressRemoved fe80::ff:fe00:3/64 link 3");

  Observed o;
  fold(o, f.step("lo_up"));
  fold(o, f.step("veth_add"));
  fold(o, f.step("v6_lo_deprecated_add"));
  const AddressInfo& info = o.addresses.at(AddressKey{ip("2001:db8::10"), 128, 1});
  CHECK(info.deprecated());
  CHECK((info.flags & kAddrFlagNoDad) != 0);
  CHECK(!info.secondary());
}

TEST_CASE("decode: RTM_NEWROUTE and RTM_DELROUTE of type local in table local, both families, with and without proto 247") {
  const Fixture& f = rtnl_fixture();
  CHECK(one(f.at("route4_arpguard_add.0")) == "RouteUpsert 198.51.100.0/24 metric 0 link 1 proto 247 scope 254");
  CHECK(one(f.at("route6_arpguard_add.0")) == "RouteUpsert 2001:db8:2::/64 metric 1024 link 1 proto 247 scope 0");
  CHECK(one(f.at("route4_boot_add.0")) == "RouteUpsert 203.0.113.0/24 metric 0 link 1 proto 3 scope 254");
  CHECK(one(f.at("route6_boot_add.0")) == "RouteUpsert 2001:db8:3::/64 metric 1024 link 1 proto 3 scope 0");
  // The kernel's own local routes of addresses (proto kernel).
  CHECK(one(f.at("v4_lo_host_add.1")) == "RouteUpsert 192.0.2.10/32 metric 0 link 1 proto 2 scope 254");
  CHECK(one(f.at("v6_lo_deprecated_add.2")) == "RouteUpsert 2001:db8::10/128 metric 0 link 1 proto 2 scope 0");
  CHECK(one(f.at("lo_up.3")) == "RouteUpsert 127.0.0.0/8 metric 0 link 1 proto 2 scope 254");
  CHECK(one(f.at("route4_arpguard_del.0")) == "RouteRemoved 198.51.100.0/24 metric 0");
  CHECK(one(f.at("route6_arpguard_del.0")) == "RouteRemoved 2001:db8:2::/64 metric 1024");
  CHECK(one(f.at("route4_boot_del.0")) == "RouteRemoved 203.0.113.0/24 metric 0");
  CHECK(one(f.at("route6_boot_del.0")) == "RouteRemoved 2001:db8:3::/64 metric 1024");
  CHECK(one(f.at("v4_lo_host_del.1")) == "RouteRemoved 192.0.2.10/32 metric 0");
  CHECK(one(f.at("v6_lo_deprecated_del.1")) == "RouteRemoved 2001:db8::10/128 metric 0");
}

TEST_CASE("decode: routes other than type local in table local leave the cache alone") {
  const Fixture& f = rtnl_fixture();
  const Observed before = folded(f.through("route6_boot_add"));
  // Another table (main, 100), another type (unicast, broadcast, multicast).
  std::vector<const Captured*> ignored;
  for (const char* step : {"ignored_route_main", "ignored_route_other_table", "ignored_route6_other_table",
                           "ignored_route_unicast_local"}) {
    for (const Captured* c : f.step(step)) ignored.push_back(c);
  }
  for (const char* label : {"lo_up.4", "v4_veth_global_add.2", "v4_veth_global_add.3", "v6_lo_deprecated_add.0",
                            "veth1_up.1", "veth1_up.2", "veth0_down.1", "veth0_down.5"}) {
    ignored.push_back(&f.at(label));
  }
  REQUIRE(ignored.size() == 12);
  for (const Captured* c : ignored) {
    CAPTURE(c->label);
    CAPTURE(c->command);
    CHECK(c->type.find("ROUTE") != std::string::npos);
    Observed after = before;
    const Touched t = fold(after, {c});
    CHECK(view(after) == view(before));
    CHECK(!t.resync);
  }
}

TEST_CASE("decode: the rtnetlink capture folded in order is what the kernel held") {
  const Fixture& f = rtnl_fixture();
  // Everything added: ip -d addr / ip route show table local, at that point of capture.sh.
  CHECK(view(folded(f.through("route6_boot_add"))) ==
        "link 1 lo loopback up\n"
        "link 2 veth1 up\n"
        "link 3 veth0 up\n"
        "address 127.0.0.1/8 link 1 scope 254 flags 0x80\n"
        "address 192.0.2.10/32 link 1 scope 254 flags 0x80\n"
        "address 192.0.2.20/24 link 3 scope 0 flags 0x80\n"
        "address ::1/128 link 1 scope 254 flags 0x80\n"
        "address 2001:db8::10/128 link 1 scope 0 flags 0xa2\n"
        "address 2001:db8:1::20/64 link 3 scope 0 flags 0x82\n"
        "address fe80::ff:fe00:2/64 link 2 scope 253 flags 0x80\n"
        "address fe80::ff:fe00:3/64 link 3 scope 253 flags 0x80\n"
        "address-index link 2 fe80::ff:fe00:2/64\n"
        "address-index link 3 192.0.2.20/24\n"
        "address-index link 3 2001:db8:1::20/64\n"
        "address-index link 3 fe80::ff:fe00:3/64\n"
        "route local 127.0.0.0/8 metric 0 link 1 proto 2 scope 254\n"
        "route local 127.0.0.1/32 metric 0 link 1 proto 2 scope 254\n"
        "route local 192.0.2.10/32 metric 0 link 1 proto 2 scope 254\n"
        "route local 192.0.2.20/32 metric 0 link 3 proto 2 scope 254\n"
        "route local 198.51.100.0/24 metric 0 link 1 proto 247 scope 254\n"
        "route local 203.0.113.0/24 metric 0 link 1 proto 3 scope 254\n"
        "route local ::1/128 metric 0 link 1 proto 2 scope 0\n"
        "route local 2001:db8::10/128 metric 0 link 1 proto 2 scope 0\n"
        "route local 2001:db8:1::20/128 metric 0 link 3 proto 2 scope 0\n"
        "route local 2001:db8:2::/64 metric 1024 link 1 proto 247 scope 0\n"
        "route local 2001:db8:3::/64 metric 1024 link 1 proto 3 scope 0\n"
        "route local fe80::ff:fe00:2/128 metric 0 link 2 proto 2 scope 0\n"
        "route local fe80::ff:fe00:3/128 metric 0 link 3 proto 2 scope 0\n");
  // veth0 down: its IPv6 addresses and their routes go, its IPv4 address and local route stay.
  CHECK(view(folded(f.through("veth0_down"))) ==
        "link 1 lo loopback up\n"
        "link 2 veth1 up\n"
        "link 3 veth0 down\n"
        "address 127.0.0.1/8 link 1 scope 254 flags 0x80\n"
        "address 192.0.2.20/24 link 3 scope 0 flags 0x80\n"
        "address ::1/128 link 1 scope 254 flags 0x80\n"
        "address fe80::ff:fe00:2/64 link 2 scope 253 flags 0x80\n"
        "address-index link 2 fe80::ff:fe00:2/64\n"
        "address-index link 3 192.0.2.20/24\n"
        "route local 127.0.0.0/8 metric 0 link 1 proto 2 scope 254\n"
        "route local 127.0.0.1/32 metric 0 link 1 proto 2 scope 254\n"
        "route local 192.0.2.20/32 metric 0 link 3 proto 2 scope 254\n"
        "route local ::1/128 metric 0 link 1 proto 2 scope 0\n"
        "route local fe80::ff:fe00:2/128 metric 0 link 2 proto 2 scope 0\n");
  // The veth pair deleted: only lo is left.
  CHECK(view(folded(all_of(f))) ==
        "link 1 lo loopback up\n"
        "address 127.0.0.1/8 link 1 scope 254 flags 0x80\n"
        "address ::1/128 link 1 scope 254 flags 0x80\n"
        "route local 127.0.0.0/8 metric 0 link 1 proto 2 scope 254\n"
        "route local 127.0.0.1/32 metric 0 link 1 proto 2 scope 254\n"
        "route local ::1/128 metric 0 link 1 proto 2 scope 0\n");
}

TEST_CASE("decode: RTM_DELLINK alone takes the link's addresses and routes out of the cache") {
  // The kernel notifies them one by one as well; the cache must not depend on it.
  const Fixture& f = rtnl_fixture();
  Observed o = folded(f.through("v4_veth_readd"));
  REQUIRE(o.addresses.count(AddressKey{ip("192.0.2.21"), 24, 3}) == 1);
  fold(o, {&f.at("veth_del.12"), &f.at("veth_del.13")});
  CHECK(lines_of(o, "link") == "link 1 lo loopback up\n");
  CHECK(lines_of(o, "address") ==
        "address 127.0.0.1/8 link 1 scope 254 flags 0x80\n"
        "address ::1/128 link 1 scope 254 flags 0x80\n");
  CHECK(lines_of(o, "route") ==
        "route local 127.0.0.0/8 metric 0 link 1 proto 2 scope 254\n"
        "route local 127.0.0.1/32 metric 0 link 1 proto 2 scope 254\n"
        "route local ::1/128 metric 0 link 1 proto 2 scope 0\n");
}

// ---- nftables ----

TEST_CASE("decode: NFT_MSG_NEWTABLE of arpguard's tables, owned and persistent, with their owner") {
  const Fixture& f = nft_fixture();
  for (const char* label : {"apply.1", "apply.11", "apply.19", "apply.31"}) {
    CAPTURE(label);
    const std::vector<KernelEvent> events = decode(f.at(label));
    REQUIRE(events.size() == 1);
    const auto* up = std::get_if<delta::TableUpsert>(&events[0].delta);
    REQUIRE(up);
    CHECK(up->flags == (nft::kTableFlagOwner | nft::kTableFlagPersist));
    // The owner is the port of the process that made it: the sender of the message.
    REQUIRE(up->owner.has_value());
    CHECK(*up->owner == events[0].sender_portid);
    CHECK(*up->owner != 0);
  }
  CHECK(std::get<delta::TableUpsert>(decode(f.at("apply.1")).at(0).delta).table == rules::arp_table_id());
  CHECK(std::get<delta::TableUpsert>(decode(f.at("apply.11")).at(0).delta).table == rules::ndp_table_id());
  CHECK(std::get<delta::TableUpsert>(decode(f.at("apply.19")).at(0).delta).table == rules::nat_table_id(Family::kV4));
  CHECK(std::get<delta::TableUpsert>(decode(f.at("apply.31")).at(0).delta).table == rules::nat_table_id(Family::kV6));
}

TEST_CASE("decode: NFT_MSG_NEWSET and NFT_MSG_DELSET, plain interval sets, concatenations and maps") {
  const Fixture& f = nft_fixture();
  CHECK(one(f.at("apply.2")) == "SetUpsert arp arpguard vips flags 0x4 key 7/4 data 0/0");
  CHECK(one(f.at("apply.12")) == "SetUpsert ip6 arpguard vips flags 0x4 key 8/16 data 0/0");
  CHECK(one(f.at("apply.20")) == "SetUpsert ip arpguard_nat keep flags 0x84 key 29453/12 data 0/0");
  CHECK(one(f.at("apply.21")) == "SetUpsert ip arpguard_nat to flags 0x8c key 29453/12 data 13/2");
  CHECK(one(f.at("apply.32")) == "SetUpsert ip6 arpguard_nat keep flags 0x84 key 33549/24 data 0/0");
  CHECK(one(f.at("apply.33")) == "SetUpsert ip6 arpguard_nat to flags 0x8c key 33549/24 data 13/2");
  CHECK(one(f.at("set_add.0")) == "SetUpsert arp arpguard extra_set flags 0x0 key 7/4 data 0/0");
  CHECK(one(f.at("set_del.0")) == "SetRemoved arp arpguard extra_set");
  CHECK(one(f.at("table_ip6_del.2")) == "SetRemoved ip6 arpguard vips");

  // Each decoded definition is the one arpguard asks for (so it is recognised as its own).
  const Observed o = folded(f.through("apply"));
  const nft::TableSpec arp = rules::arp_table({}, {{"veth0", ip("192.0.2.1")}});
  const nft::TableSpec ndp = rules::ndp_table({});
  const nft::TableSpec nat4 = rules::nat_table(Family::kV4, {}, {});
  const nft::TableSpec nat6 = rules::nat_table(Family::kV6, {}, {});
  for (const nft::TableSpec* spec : {&arp, &ndp, &nat4, &nat6}) {
    CAPTURE(spec->id.str());
    const ObservedTable* table = o.table(spec->id);
    REQUIRE(table);
    CHECK(table->sets.size() == spec->sets.size());
    for (const nft::SetSpec& set : spec->sets) {
      CAPTURE(set.name);
      REQUIRE(table->sets.count(set.name) == 1);
      CHECK(table->sets.at(set.name).matches(set));
    }
  }
}

TEST_CASE("decode: NFT_MSG_NEWCHAIN and NFT_MSG_DELCHAIN, base and regular chains") {
  const Fixture& f = nft_fixture();
  CHECK(one(f.at("apply.3")) == "ChainUpsert arp arpguard input type filter hook 0 priority 0 policy 1");
  CHECK(one(f.at("apply.4")) == "ChainUpsert arp arpguard output type filter hook 1 priority 0 policy 1");
  CHECK(one(f.at("apply.13")) == "ChainUpsert ip6 arpguard input type filter hook 1 priority 0 policy 1");
  CHECK(one(f.at("apply.14")) == "ChainUpsert ip6 arpguard output type filter hook 3 priority 0 policy 1");
  CHECK(one(f.at("apply.22")) == "ChainUpsert ip arpguard_nat prerouting type nat hook 0 priority -100 policy 1");
  CHECK(one(f.at("chain_regular_add.0")) == "ChainUpsert arp arpguard extra regular");
  CHECK(one(f.at("chain_base_add.0")) == "ChainUpsert arp arpguard extra_base type filter hook 0 priority 10 policy 0");
  CHECK(one(f.at("chain_regular_del.0")) == "ChainRemoved arp arpguard extra");
  CHECK(one(f.at("chain_base_del.0")) == "ChainRemoved arp arpguard extra_base");

  const Observed o = folded(f.through("apply"));
  const nft::TableSpec arp = rules::arp_table({}, {{"veth0", ip("192.0.2.1")}});
  const nft::TableSpec ndp = rules::ndp_table({});
  const nft::TableSpec nat4 = rules::nat_table(Family::kV4, {}, {});
  for (const nft::TableSpec* spec : {&arp, &ndp, &nat4}) {
    for (const nft::ChainSpec& chain : spec->chains) {
      CAPTURE(spec->id.str() + " " + chain.name);
      REQUIRE(o.table(spec->id)->chains.count(chain.name) == 1);
      CHECK(o.table(spec->id)->chains.at(chain.name).matches(chain));
    }
  }
}

TEST_CASE("decode: NFT_MSG_NEWRULE decodes arpguard's rules to exactly what it would install") {
  const Fixture& f = nft_fixture();
  const Observed o = folded(f.through("apply"));
  // The policy of the capture: VIPs 192.0.2.10/31 and 198.51.100.0/28, ARP-facing veth0 (192.0.2.1),
  // 2001:db8::10, and redirected ones.
  const nft::TableSpec arp = rules::arp_table({rules::vip_element(range("192.0.2.10", "192.0.2.11")),
                                               rules::vip_element(range("198.51.100.0", "198.51.100.15"))},
                                              {{"veth0", ip("192.0.2.1")}});
  const nft::TableSpec ndp = rules::ndp_table({rules::vip_element(IpRange::single(ip("2001:db8::10")))});
  const nft::TableSpec nat4 =
      rules::nat_table(Family::kV4,
                       {tuple("192.0.2.30", "192.0.2.30", kProtoTcp, 0, 65535),
                        tuple("192.0.2.30", "192.0.2.30", kProtoUdp, 0, 65535),
                        tuple("192.0.2.31", "192.0.2.31", kProtoTcp, 80, 80)},
                       {tuple("192.0.2.31", "192.0.2.31", kProtoTcp, 8080, 8080, 18080)});
  const nft::TableSpec nat6 =
      rules::nat_table(Family::kV6, {}, {tuple("2001:db8::31", "2001:db8::31", kProtoTcp, 8080, 8080, 18080)});
  for (const nft::TableSpec* spec : {&arp, &ndp, &nat4, &nat6}) {
    CAPTURE(spec->id.str());
    const ObservedTable* table = o.table(spec->id);
    REQUIRE(table);
    // The capture predates the ip6 output rule against solicitations from a VIP:
    // each decoded rule is the one at its place, and only that rule may be missing.
    REQUIRE(table->rules.size() <= spec->rules.size());
    size_t i = 0;
    for (const auto& [handle, rule] : table->rules) {
      CAPTURE(handle);
      CHECK(spec->rules[i].same_as(rule.chain, rule.exprs));
      ++i;
    }
    for (; i < spec->rules.size(); ++i) CHECK(spec->rules[i].role == nft::RuleRole::kNdpDropVipSolicitation);
  }
  CHECK(one(f.at("rule_add.0")) == "RuleUpsert arp arpguard handle 6 chain input: counter{}");
  CHECK(one(f.at("rule_del.0")) == "RuleRemoved arp arpguard handle 7");
  CHECK(one(f.at("chain_flush.0")) == "RuleRemoved arp arpguard handle 5");
}

TEST_CASE("decode: NFT_MSG_NEWSETELEM and NFT_MSG_DELSETELEM, interval points and concatenated elements") {
  const Fixture& f = nft_fixture();
  // Plain interval sets: a start, and an end one past the range, flagged.
  CHECK(one(f.at("apply.5")) == "ElementsAdded arp arpguard @vips start:192.0.2.10");
  CHECK(one(f.at("apply.6")) == "ElementsAdded arp arpguard @vips end:192.0.2.12");
  CHECK(one(f.at("elem_arp_add_range.0")) == "ElementsAdded arp arpguard @vips start:192.0.2.60");
  CHECK(one(f.at("elem_arp_add_range.1")) == "ElementsAdded arp arpguard @vips end:192.0.2.71");
  CHECK(one(f.at("elem_arp_del_single.0")) == "ElementsRemoved arp arpguard @vips start:192.0.2.50");
  CHECK(one(f.at("elem_arp_del_single.1")) == "ElementsRemoved arp arpguard @vips end:192.0.2.51");
  CHECK(one(f.at("elem_ip6_add.0")) == "ElementsAdded ip6 arpguard @vips start:2001:db8:5::");
  CHECK(one(f.at("elem_ip6_add.1")) == "ElementsAdded ip6 arpguard @vips end:2001:db8:5:1::");
  CHECK(one(f.at("elem_ip6_del.1")) == "ElementsRemoved ip6 arpguard @vips end:2001:db8:5:1::");
  // Concatenations (address . protocol . port ranges) and the map's target port.
  CHECK(one(f.at("apply.23")) == "ElementsAdded ip arpguard_nat @keep [192.0.2.30-192.0.2.30 proto 6 port 0-65535 to 0]");
  CHECK(one(f.at("elem_keep_range_add.0")) ==
        "ElementsAdded ip arpguard_nat @keep [192.0.2.41-192.0.2.42 proto 17 port 1000-2000 to 0]");
  CHECK(one(f.at("elem_to_add.0")) == "ElementsAdded ip arpguard_nat @to [192.0.2.40-192.0.2.40 proto 6 port 8080-8080 to 18080]");
  CHECK(one(f.at("elem_to6_add.0")) ==
        "ElementsAdded ip6 arpguard_nat @to [2001:db8::40-2001:db8::40 proto 6 port 8080-8080 to 18080]");
  CHECK(one(f.at("elem_keep_del.0")) == "ElementsRemoved ip arpguard_nat @keep [192.0.2.40-192.0.2.40 proto 6 port 80-80 to 0]");
  // A map element's deletion carries its data: it erases the very element.
  CHECK(one(f.at("elem_to_del.0")) == "ElementsRemoved ip arpguard_nat @to [192.0.2.40-192.0.2.40 proto 6 port 8080-8080 to 18080]");
}

TEST_CASE("decode: the nftables capture folded in order is what the kernel held") {
  const Fixture& f = nft_fixture();
  // `arpguard apply` of captured/policy.toml: four tables, owned and persistent.
  CHECK(nft_state(folded(f.through("apply"))) ==
        "table ip arpguard_nat flags 0x6 owned\n"
        " set keep flags 0x84 key 29453/12 data 0/0\n"
        "  element 192.0.2.30 . tcp . 0-65535\n"
        "  element 192.0.2.30 . udp . 0-65535\n"
        "  element 192.0.2.31 . tcp . 80\n"
        " set to flags 0x8c key 29453/12 data 13/2\n"
        "  element 192.0.2.31 . tcp . 8080 : 18080\n"
        " chain prerouting nat hook 0 priority -100 policy 1\n"
        " rule 4 prerouting (7 expressions)\n"
        " rule 5 prerouting (9 expressions)\n"
        " rule 6 prerouting (9 expressions)\n"
        "table arp arpguard flags 0x6 owned\n"
        " set vips flags 0x4 key 7/4 data 0/0\n"
        "  start 192.0.2.10\n"
        "  end 192.0.2.12\n"
        "  start 198.51.100.0\n"
        "  end 198.51.100.16\n"
        " chain input filter hook 0 priority 0 policy 1\n"
        " chain output filter hook 1 priority 0 policy 1\n"
        " rule 4 input (6 expressions)\n"
        " rule 5 output (7 expressions)\n"
        "table ip6 arpguard flags 0x6 owned\n"
        " set vips flags 0x4 key 8/16 data 0/0\n"
        "  start 2001:db8::10\n"
        "  end 2001:db8::11\n"
        " chain input filter hook 1 priority 0 policy 1\n"
        " chain output filter hook 3 priority 0 policy 1\n"
        " rule 4 input (8 expressions)\n"
        " rule 5 output (8 expressions)\n"
        "table ip6 arpguard_nat flags 0x6 owned\n"
        " set keep flags 0x84 key 33549/24 data 0/0\n"
        " set to flags 0x8c key 33549/24 data 13/2\n"
        "  element 2001:db8::31 . tcp . 8080 : 18080\n"
        " chain prerouting nat hook 0 priority -100 policy 1\n"
        " rule 4 prerouting (7 expressions)\n"
        " rule 5 prerouting (9 expressions)\n"
        " rule 6 prerouting (9 expressions)\n");
  // After the element, rule, chain and set changes (and the other tables'), before the flushes.
  const Observed middle = folded(f.through("ignored_table_del"));
  CHECK(nft_state(middle) ==
        "table ip arpguard_nat flags 0x6 owned\n"
        " set keep flags 0x84 key 29453/12 data 0/0\n"
        "  element 192.0.2.30 . tcp . 0-65535\n"
        "  element 192.0.2.30 . udp . 0-65535\n"
        "  element 192.0.2.31 . tcp . 80\n"
        "  element 192.0.2.41-192.0.2.42 . udp . 1000-2000\n"
        " set to flags 0x8c key 29453/12 data 13/2\n"
        "  element 192.0.2.31 . tcp . 8080 : 18080\n"
        " chain prerouting nat hook 0 priority -100 policy 1\n"
        " rule 4 prerouting (7 expressions)\n"
        " rule 5 prerouting (9 expressions)\n"
        " rule 6 prerouting (9 expressions)\n"
        "table arp arpguard flags 0x6 owned\n"
        " set vips flags 0x4 key 7/4 data 0/0\n"
        "  start 192.0.2.10\n"
        "  end 192.0.2.12\n"
        "  start 192.0.2.60\n"
        "  end 192.0.2.71\n"
        "  start 198.51.100.0\n"
        "  end 198.51.100.16\n"
        " chain input filter hook 0 priority 0 policy 1\n"
        " chain output filter hook 1 priority 0 policy 1\n"
        " rule 4 input (6 expressions)\n"
        " rule 5 output (7 expressions)\n"
        " rule 6 input (1 expressions)\n"
        "table ip6 arpguard flags 0x6 owned\n"
        " set vips flags 0x4 key 8/16 data 0/0\n"
        "  start 2001:db8::10\n"
        "  end 2001:db8::11\n"
        " chain input filter hook 1 priority 0 policy 1\n"
        " chain output filter hook 3 priority 0 policy 1\n"
        " rule 4 input (8 expressions)\n"
        " rule 5 output (8 expressions)\n"
        "table ip6 arpguard_nat flags 0x6 owned\n"
        " set keep flags 0x84 key 33549/24 data 0/0\n"
        " set to flags 0x8c key 33549/24 data 13/2\n"
        "  element 2001:db8::31 . tcp . 8080 : 18080\n"
        "  element 2001:db8::40 . tcp . 8080 : 18080\n"
        " chain prerouting nat hook 0 priority -100 policy 1\n"
        " rule 4 prerouting (7 expressions)\n"
        " rule 5 prerouting (9 expressions)\n"
        " rule 6 prerouting (9 expressions)\n");
  const ObservedSet& vips = middle.table(rules::arp_table_id())->sets.at("vips");
  CHECK(vips.all_elements() == std::vector<nft::Element>{rules::vip_element(range("192.0.2.10", "192.0.2.11")),
                                                          rules::vip_element(range("192.0.2.60", "192.0.2.70")),
                                                          rules::vip_element(range("198.51.100.0", "198.51.100.15"))});
  // The output chain flushed, the set flushed (each point notified), then three tables deleted
  // (their rules, sets and chains notified first).
  const Observed flushed = folded(f.through("set_flush"));
  CHECK(flushed.table(rules::arp_table_id())->sets.at("vips").points.empty());
  CHECK(flushed.table(rules::arp_table_id())->rules.size() == 2);
  CHECK(nft_state(folded(all_of(f))) ==
        "table ip6 arpguard_nat flags 0x6 owned\n"
        " set keep flags 0x84 key 33549/24 data 0/0\n"
        " set to flags 0x8c key 33549/24 data 13/2\n"
        "  element 2001:db8::31 . tcp . 8080 : 18080\n"
        "  element 2001:db8::40 . tcp . 8080 : 18080\n"
        " chain prerouting nat hook 0 priority -100 policy 1\n"
        " rule 4 prerouting (7 expressions)\n"
        " rule 5 prerouting (9 expressions)\n"
        " rule 6 prerouting (9 expressions)\n");
}

TEST_CASE("decode: other tables, other families and NFT_MSG_NEWGEN leave the cache alone") {
  const Fixture& f = nft_fixture();
  const Observed before = folded(f.through("set_del"));
  size_t seen = 0;
  for (const Captured& c : f.all()) {
    const bool other_table = c.step.rfind("ignored_", 0) == 0;
    if (!other_table && c.type != "NFT_MSG_NEWGEN") continue;
    CAPTURE(c.label);
    CAPTURE(c.command);
    ++seen;
    CHECK(decode(c).empty());
    Observed after = before;
    fold(after, {&c});
    CHECK(view(after) == view(before));
  }
  CHECK(seen > 40);
}

TEST_CASE("decode: a datagram ending with NFT_MSG_NEWGEN ends a transaction; any other does not") {
  const Fixture& f = nft_fixture();
  size_t ends = 0, others = 0;
  for (const Captured& c : f.all()) {
    CAPTURE(c.label);
    bool ended = !(c.type == "NFT_MSG_NEWGEN");  // the opposite of what the decoder must say
    decode_nftables(c.bytes.data(), c.bytes.size(), &ended);
    CHECK(ended == (c.type == "NFT_MSG_NEWGEN"));
    ++(ended ? ends : others);
  }
  CHECK(ends > 10);
  CHECK(others > 40);
  // A commit's messages, then its NEWGEN, in one datagram: whole.
  std::vector<uint8_t> datagram;
  for (const Captured* c : f.step("set_del")) datagram.insert(datagram.end(), c->bytes.begin(), c->bytes.end());
  REQUIRE_FALSE(datagram.empty());
  bool ended = false;
  decode_nftables(datagram.data(), datagram.size(), &ended);
  CHECK(ended == (f.step("set_del").back()->type == "NFT_MSG_NEWGEN"));
}

TEST_CASE("decode: the generation a datagram's last NFT_MSG_NEWGEN names; none from other messages") {
  const Fixture& f = nft_fixture();
  std::vector<uint32_t> generations;  // in the order the capture heard them
  for (const Captured& c : f.all()) {
    CAPTURE(c.label);
    std::optional<uint32_t> generation;
    decode_nftables(c.bytes.data(), c.bytes.size(), nullptr, &generation);
    CHECK(generation.has_value() == (c.type == "NFT_MSG_NEWGEN"));
    if (generation) generations.push_back(*generation);
  }
  REQUIRE(generations.size() > 10);
  // Each commit moves it on: the capture's commits were one after the other.
  for (size_t i = 1; i < generations.size(); ++i) CHECK(static_cast<int32_t>(generations[i] - generations[i - 1]) > 0);
}

// ---- duplicates and late events ----

TEST_CASE("decode: a duplicate event changes nothing, for every captured message") {
  for (const Fixture* fixture : {&rtnl_fixture(), &nft_fixture()}) {
    Observed o;
    for (const Captured& c : fixture->all()) {
      CAPTURE(c.label);
      fold(o, {&c});
      const std::string once = view(o);
      const Touched again = fold(o, {&c});
      CHECK(view(o) == once);
      CHECK(!again.changed);
    }
  }
  // The kernel itself repeats one: `ip addr replace` of an address as it is.
  const Fixture& f = rtnl_fixture();
  CHECK(one(f.at("v4_lo_host_dup.0")) == one(f.at("v4_lo_host_add.0")));
  Observed o = folded(f.through("v4_lo_host_add"));
  const std::string before = view(o);
  CHECK(!fold(o, f.step("v4_lo_host_dup")).changed);
  CHECK(view(o) == before);
}

TEST_CASE("decode: a deletion of something never seen changes nothing") {
  const Fixture& r = rtnl_fixture();
  Observed o = folded(r.through("veth1_up"));
  const std::string before = view(o);
  for (const char* label : {"v4_lo_host_del.0", "v4_lo_host_del.1", "v6_lo_deprecated_del.0", "route4_arpguard_del.0",
                            "route6_arpguard_del.0"}) {
    CAPTURE(label);
    const Touched t = fold(o, {&r.at(label)});
    CHECK(!t.changed);
    CHECK(!t.resync);
    CHECK(view(o) == before);
  }
  Observed empty;
  CHECK(!fold(empty, {&r.at("veth_del.12")}).changed);
  CHECK(view(empty).empty());

  // nftables: a rule, chain, set or table never seen.
  const Fixture& n = nft_fixture();
  Observed tables = folded(n.through("apply"));
  const std::string had = view(tables);
  for (const char* label : {"rule_del.0", "chain_regular_del.0", "set_del.0", "ignored_table_del.3"}) {
    CAPTURE(label);
    const Touched t = fold(tables, {&n.at(label)});
    CHECK(!t.changed);
    CHECK(!t.resync);
    CHECK(view(tables) == had);
  }
}

TEST_CASE("decode: events for a table deleted before are harmless: a resync, never an invented table") {
  const Fixture& f = nft_fixture();
  Observed o = folded(all_of(f));
  REQUIRE(!o.table(rules::arp_table_id()));
  const std::string before = view(o);
  // NEW after DEL of the table: elements, a rule, a chain, a set of arp arpguard.
  for (const char* label : {"elem_arp_add_single.0", "elem_arp_add_range.1", "rule_add.0", "chain_regular_add.0",
                            "chain_base_add.0", "set_add.0", "elem_arp_del_single.0"}) {
    CAPTURE(label);
    const Touched t = fold(o, {&f.at(label)});
    CHECK(t.resync);  // the cache cannot place it: read everything again
    CHECK(!t.changed);
    CHECK(view(o) == before);
  }
  // DEL after DEL: nothing to do.
  for (const char* label : {"rule_del.0", "chain_regular_del.0", "set_del.0", "table_arp_del.5"}) {
    CAPTURE(label);
    const Touched t = fold(o, {&f.at(label)});
    CHECK(!t.changed);
    CHECK(view(o) == before);
  }
}

TEST_CASE("decode: replaying any suffix of the capture on the state it leads to leaves that state") {
  // What the daemon does after a dump: events queued before it are applied to it.
  for (const Fixture* fixture : {&rtnl_fixture(), &nft_fixture()}) {
    const std::vector<const Captured*> messages = all_of(*fixture);
    const std::string end = view(folded(messages));
    for (size_t k = 0; k < messages.size(); ++k) {
      CAPTURE(messages[k]->label);
      Observed o = folded(messages);
      fold(o, {messages.begin() + static_cast<long>(k), messages.end()});
      CHECK(view(o) == end);
    }
  }
}

// ---- truncated and garbage bytes ----

// In a child: die of a crash as a process does, not through doctest's handlers
// (they would report and carry on with the other test cases, in the child).
void plain_signals() {
  for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL}) std::signal(sig, SIG_DFL);
}

// One input that made the child crash, as "label, mutation, hex".
struct Crash {
  bool crashed = false;
  std::string how;    ///< "killed by signal 11"
  std::string input;  ///< the last input the child announced before it died
};

// Runs `body` in a child process, so that a crash is a failed check and not the
// end of the suite; `body` announces each input through `announce` first.
Crash isolated(const std::function<void(const std::function<void(const std::string&)>& announce)>& body) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    plain_signals();
    ::close(fds[0]);
    try {
      body([&](const std::string& input) {
      const std::string line = input + "\n";
      (void)!::write(fds[1], line.data(), line.size());
    });
    } catch (...) {
      ::_exit(3);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string announced;
  char buffer[4096];
  for (ssize_t n; (n = ::read(fds[0], buffer, sizeof(buffer))) > 0;) announced.append(buffer, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  Crash out;
  out.crashed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  out.how = WIFSIGNALED(status) ? fmt::format("killed by signal {}", WTERMSIG(status))
                                : fmt::format("exited {}", WEXITSTATUS(status));
  if (!announced.empty()) announced.pop_back();
  out.input = announced.substr(announced.rfind('\n') + 1);
  return out;
}

std::string hex_of(const std::vector<uint8_t>& bytes) {
  std::string out;
  for (uint8_t b : bytes) out += fmt::format("{:02x}", b);
  return out;
}

// A header, among those decode_each reaches, whose nlmsg_len has its top bit set:
// the known crash (the BUG case below), left out here.
bool huge_length(const std::vector<uint8_t>& bytes) {
  for (size_t at = 0; at + 16 <= bytes.size();) {
    const uint32_t len = bytes[at] | bytes[at + 1] << 8 | bytes[at + 2] << 16 | uint32_t(bytes[at + 3]) << 24;
    if (len & 0x80000000u) return true;
    if (len < 16 || len > bytes.size() - at) return false;
    at += (len + 3u) & ~3u;
  }
  return false;
}

struct Input {
  std::string what;
  bool nft = false;
  std::vector<uint8_t> bytes;
};

// Every captured message mutated 60 ways (cut, bits flipped, a length made to
// lie, bytes replaced), then pure garbage of every length up to a page. Seeded.
std::vector<Input> mutated_inputs() {
  std::vector<Input> out;
  std::mt19937 rng(20240611);
  for (const Fixture* fixture : {&rtnl_fixture(), &nft_fixture()}) {
    for (const Captured& c : fixture->all()) {
      for (int round = 0; round < 60; ++round) {
        std::vector<uint8_t> bytes = c.bytes;
        switch (round % 4) {
          case 0: bytes.resize(std::uniform_int_distribution<size_t>(0, bytes.size())(rng)); break;
          case 1:
            for (int flips = 0; flips < 4; ++flips) {
              bytes[std::uniform_int_distribution<size_t>(0, bytes.size() - 1)(rng)] ^=
                  static_cast<uint8_t>(1u << std::uniform_int_distribution<int>(0, 7)(rng));
            }
            break;
          case 2: {
            const size_t at = std::uniform_int_distribution<size_t>(0, (bytes.size() - 2) / 4)(rng) * 4;
            bytes[at] = static_cast<uint8_t>(std::uniform_int_distribution<int>(0, 255)(rng));
            bytes[at + 1] = static_cast<uint8_t>(std::uniform_int_distribution<int>(0, 3)(rng));
            break;
          }
          default:
            for (uint8_t& b : bytes) {
              if (std::uniform_int_distribution<int>(0, 15)(rng) == 0) b = static_cast<uint8_t>(rng());
            }
        }
        out.push_back({fmt::format("{} mutation {}", c.label, round), c.nft, std::move(bytes)});
      }
    }
  }
  for (size_t len = 0; len <= 4096; len += 7) {
    std::vector<uint8_t> bytes(len);
    for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
    out.push_back({fmt::format("garbage of {} bytes", len), len % 2 == 1, std::move(bytes)});
  }
  return out;
}

struct Death {
  const Input* input = nullptr;
  std::string how;     ///< "killed by signal 11", "exited 1"
  std::string output;  ///< what it wrote to stderr
};

// Decodes and applies every input in child processes; when one dies, the next
// starts after the input that killed it. Every death, in order.
std::vector<Death> deaths(const std::vector<Input>& inputs) {
  const Observed rtnl_base = folded(all_of(rtnl_fixture()));
  const Observed nft_base = folded(all_of(nft_fixture()));
  std::vector<Death> out;
  for (size_t start = 0; start < inputs.size();) {
    int progress[2];
    REQUIRE(::pipe(progress) == 0);
    // The child's stderr goes to a file: a pipe could fill up while the progress pipe is read.
    char errors_path[] = "/tmp/agt-decode-XXXXXX";
    const int errors = ::mkstemp(errors_path);
    REQUIRE(errors >= 0);
    ::unlink(errors_path);
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      plain_signals();
      ::alarm(60);  // a decoder that loops for ever is a death too (SIGALRM)
      ::close(progress[0]);
      ::dup2(errors, 2);
      for (size_t i = start; i < inputs.size(); ++i) {
        const std::string line = std::to_string(i) + "\n";
        (void)!::write(progress[1], line.data(), line.size());
        try {
          Observed o = inputs[i].nft ? nft_base : rtnl_base;
          for (const KernelEvent& e : decode_bytes(inputs[i].nft, inputs[i].bytes)) apply_delta(o, e.delta);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "threw %s\n", e.what());
          ::_exit(3);
        }
      }
      (void)!::write(progress[1], "done\n", 5);
      ::_exit(0);
    }
    ::close(progress[1]);
    std::string announced;
    char buffer[65536];
    for (ssize_t n; (n = ::read(progress[0], buffer, sizeof(buffer))) > 0;) announced.append(buffer, static_cast<size_t>(n));
    ::close(progress[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    std::string output;
    ::lseek(errors, 0, SEEK_SET);
    for (ssize_t n; (n = ::read(errors, buffer, sizeof(buffer))) > 0;) output.append(buffer, static_cast<size_t>(n));
    ::close(errors);
    if (announced.size() >= 5 && announced.compare(announced.size() - 5, 5, "done\n") == 0) break;
    // The last index announced is the input it died on.
    std::string body = announced;
    if (!body.empty() && body.back() == '\n') body.pop_back();
    const size_t last = body.empty() ? start : std::stoul(body.substr(body.rfind('\n') + 1));
    out.push_back({&inputs[last],
                   WIFSIGNALED(status) ? fmt::format("killed by signal {}", WTERMSIG(status))
                                       : fmt::format("exited {}", WEXITSTATUS(status)),
                   output});
    start = last + 1;
  }
  return out;
}

// nftables messages are parsed by libnftnl, which trusts them: it ends the
// process on an attribute of the wrong size (abi_breakage, the BUG case below)
// and reads past unterminated strings. arpguardd therefore decodes only what
// the kernel sent (EventSocket::drain drops datagrams whose sender is not port
// 0), and the kernel's own messages are well formed. Every rtnetlink death, and
// any nftables one that is not a crash or exit, is ours.
bool known_death(const Death& d) {
  return d.input->nft && (d.how == "exited 1" || d.how.rfind("killed by signal", 0) == 0);
}

TEST_CASE("decode: truncated, mutated and garbage bytes crash neither the decoders nor the cache (but in the known ways)") {
  const std::vector<Input> inputs = mutated_inputs();
  const std::vector<Death> all = deaths(inputs);
  size_t known = 0;
  for (const Death& d : all) {
    if (known_death(d)) {
      ++known;
      continue;
    }
    CAPTURE(d.output);
    FAIL_CHECK("the decoders " << d.how << " on " << d.input->what << ": " << hex_of(d.input->bytes));
  }
  MESSAGE(inputs.size() << " inputs, " << all.size() << " deaths, " << known << " of them the known bugs");
}

// BUG: a message whose nlmsg_len has its top bit set crashes decode_rtnetlink
// and decode_nftables (SIGSEGV): decode_each (lib/kernel/events.cc) trusts
// mnl_nlmsg_ok(), which compares `(int)nlh->nlmsg_len <= len` and so takes a
// length of 2^31 or more, negative as an int, for one that fits; the message
// is then decoded over that length and mnl_nlmsg_next() steps ~4 GiB ahead.
// The kernel never sends one, but the event sockets accept datagrams from any
// sender with CAP_NET_ADMIN in the namespace (EventSocket::drain reads with
// recv() and never checks that nl_pid is 0, the kernel).
TEST_CASE("decode: a message claiming a length of 2^31 bytes or more is rejected, not followed") {
  for (const char* label : {"v4_lo_host_add.0", "elem_arp_add_single.0"}) {
    CAPTURE(label);
    const bool nft = std::string(label).rfind("elem", 0) == 0;
    std::vector<uint8_t> bytes = (nft ? nft_fixture() : rtnl_fixture()).at(label).bytes;
    bytes[3] = 0x80;  // nlmsg_len = 0x800000xx
    const Crash crash = isolated([&](const auto& announce) {
      announce(hex_of(bytes));
      decode_bytes(nft, bytes);
    });
    CHECK_MESSAGE(!crash.crashed, "the decoder " << crash.how << " on " << crash.input);
  }
}

// BUG: an nftables message with a malformed attribute ends the daemon:
// nftcodec::decode (lib/kernel/nft_codec.cc) hands every message to
// nftnl_{table,chain,set,rule}_nlmsg_parse / nftnl_set_elems_nlmsg_parse, and
// libnftnl answers an attribute of the wrong size with abi_breakage(), which
// prints "nf_tables kernel ABI is broken, contact your vendor." and calls
// exit(EXIT_FAILURE). Here: the NFT_MSG_NEWTABLE of `arp arpguard` whose
// NFTA_TABLE_FLAGS is 2 bytes long instead of 4.
TEST_CASE("decode: an nftables message with an attribute of the wrong size is rejected, and the process lives on" *
          doctest::may_fail()) {
  std::vector<uint8_t> bytes = nft_fixture().at("apply.1").bytes;
  bool cut = false;
  // nfgenmsg (4 bytes) after the header (16): then NFTA_TABLE_NAME (1), NFTA_TABLE_FLAGS (2), ...
  for (size_t at = 20; at + 4 <= bytes.size();) {
    const uint16_t len = static_cast<uint16_t>(bytes[at] | bytes[at + 1] << 8);
    const uint16_t type = static_cast<uint16_t>((bytes[at + 2] | bytes[at + 3] << 8) & 0x3fff);
    if (type == 2 && len == 8) {
      bytes[at] = 6;
      cut = true;
    }
    if (len < 4) break;
    at += (len + 3u) & ~3u;
  }
  REQUIRE(cut);
  const Crash crash = isolated([&](const auto& announce) {
    announce(hex_of(bytes));
    decode_bytes(true, bytes);
  });
  CHECK_MESSAGE(!crash.crashed, "the decoder " << crash.how << " on " << crash.input);
}

// BUG: bytes that cannot be decoded are dropped without a word, so the daemon
// never learns that it missed a change and keeps a stale cache until the next
// audit (5 minutes by default) instead of reading everything again at once:
//   - a datagram cut inside a message ends the loop of decode_each
//     (lib/kernel/events.cc, `mnl_nlmsg_ok`), the message is skipped;
//   - a malformed message of a kind arpguardd cares about makes rtnl::decode
//     (lib/kernel/rtnl_decode.cc) or nftcodec::decode (lib/kernel/nft_codec.cc)
//     return nullopt, which is also their answer for "not about arpguard";
// and decode_rtnetlink/decode_nftables return events and nothing else, so
// EventSocket::drain cannot set `lost` (or an error) for them.
TEST_CASE("decode: truncated or malformed messages of the kinds arpguardd follows are reported, for a resync" *
          doctest::may_fail()) {
  const Fixture& r = rtnl_fixture();
  const Fixture& n = nft_fixture();
  const Observed rtnl_cache = folded(r.through("v6_veth_global_add"));
  const Observed nft_cache = folded(n.through("elem_arp_add_range"));

  SUBCASE("a datagram cut inside an RTM_DELADDR") {
    std::vector<uint8_t> bytes = r.at("v4_lo_host_del.0").bytes;
    bytes.resize(bytes.size() - 12);
    CHECK(reported_as_undecodable(false, bytes, rtnl_cache));
  }
  SUBCASE("an RTM_NEWADDR whose address attribute is 3 bytes long") {
    std::vector<uint8_t> bytes = r.at("v4_lo_host_add.0").bytes;
    // ifaddrmsg (8 bytes) after the header (16): the first attribute is IFA_ADDRESS, then IFA_LOCAL.
    for (size_t at = 24; at + 4 <= bytes.size();) {
      const uint16_t len = static_cast<uint16_t>(bytes[at] | bytes[at + 1] << 8);
      const uint16_t type = static_cast<uint16_t>(bytes[at + 2] | bytes[at + 3] << 8);
      if (type == 1 || type == 2) bytes[at] = 7;  // IFA_ADDRESS, IFA_LOCAL: 4 + 3 bytes
      if (len < 4) break;
      at += (len + 3u) & ~3u;
    }
    CHECK(reported_as_undecodable(false, bytes, rtnl_cache));
  }
  SUBCASE("an RTM_DELROUTE of a local route whose attributes run past the message") {
    std::vector<uint8_t> bytes = r.at("v4_lo_host_del.1").bytes;
    bytes[28] = 0xf0;  // the first attribute's length, after rtmsg (12 bytes)
    CHECK(reported_as_undecodable(false, bytes, rtnl_cache));
  }
  SUBCASE("an NFT_MSG_DELSETELEM of arpguard's set cut short") {
    std::vector<uint8_t> bytes = n.at("elem_arp_del_single.0").bytes;
    const size_t keep = bytes.size() - 8;
    bytes.resize(keep);
    bytes[0] = static_cast<uint8_t>(keep);  // a consistent header over a truncated element list
    CHECK(reported_as_undecodable(true, bytes, nft_cache));
  }
  SUBCASE("a datagram cut inside an NFT_MSG_NEWSETELEM") {
    std::vector<uint8_t> bytes = n.at("elem_arp_add_single.0").bytes;
    bytes.resize(bytes.size() / 2);
    CHECK(reported_as_undecodable(true, bytes, nft_cache));
  }
}
