// A small world for the pure core's tests: the machine Observed values start
// from, a stand-in for the kernel that carries out a Plan on an Observed the
// way Linux 6.x and arpguard's Engine would, and policy shorthands.
//
// The stand-in keeps what the kernel keeps: an address brings its own local
// route (proto kernel), an IPv6 local route added with metric 0 is stored at
// 1024, interval elements are held as start/end points, rules come back with
// registers renumbered as the kernel dumps them, and a batch that deletes
// something absent, or adds an element overlapping another, is refused whole.
// Not thread-safe; test-only.
#pragma once

#include <doctest/doctest.h>

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/desired.h"
#include "core/diff.h"
#include "core/model.h"
#include "core/plan.h"
#include "core/policy.h"

namespace doctest {

template <>
struct StringMaker<std::vector<std::string>> {
  static String convert(const std::vector<std::string>& lines) {
    std::string out = "{";
    for (const std::string& line : lines) out += "\n    \"" + line + "\"";
    out += lines.empty() ? "}" : "\n  }";
    return String(out.c_str());
  }
};

template <>
struct StringMaker<std::multiset<std::string>> {
  static String convert(const std::multiset<std::string>& lines) {
    return StringMaker<std::vector<std::string>>::convert({lines.begin(), lines.end()});
  }
};

}  // namespace doctest

namespace arpguard::world {

using Lines = std::vector<std::string>;

inline constexpr int kLo = 1;
inline constexpr int kEth0 = 2;
inline constexpr uint32_t kOurPort = 4242;  ///< arpguard's nfnetlink port in every Observed here

IpAddress ip(std::string_view text);
IpPrefix prefix(std::string_view text);
IpRange range(std::string_view first, std::string_view last);

/// REQUIRES: `text` is a valid policy.
Policy policy_of(std::string_view text);
/// "[[vip]]\naddress = \"A\"\n" plus `extra` lines for that VIP.
std::string vip(std::string_view address, std::string_view extra = "");

/// lo (1) with 127.0.0.1/8 and ::1, eth0 (2) with 192.0.2.1/24, their kernel
/// local routes, every ARP sysctl at 0, PERSIST known, no tables, no record.
Observed fresh_machine();

/// An address as `ip addr add` leaves it (and its kernel local route).
void add_address(Observed& observed, const IpPrefix& prefix, int link, uint8_t scope = kScopeGlobal,
                 bool deprecated = false);
void remove_address(Observed& observed, const IpPrefix& prefix, int link);
/// The interval points or elements of a set, as the kernel would add or delete them.
void add_elements(ObservedSet& set, const std::vector<nft::Element>& elements);
void remove_elements(ObservedSet& set, const std::vector<nft::Element>& elements);

/// What the kernel reports for rule expressions it was sent: registers as
/// nft_dump_register() numbers them, then normalized as the codec does.
std::vector<nft::Expr> as_dumped(const std::vector<nft::Expr>& sent);

/// Carries out `plan` on `observed` in the Engine's phases, and records
/// ownership and sysctl origins as the Engine's state record would. With
/// `desired`, a VIP addition whose protection is not verified first (I1) is
/// skipped and reported. Returns what the kernel (or I1) refused; empty when
/// everything was done.
Lines apply_to(Observed& observed, const Plan& plan, const Desired* desired = nullptr);

Desired desired_of(const Policy& policy, const Observed& observed, bool daemon = false);
Plan plan_of(const Policy& policy, const Observed& observed, bool daemon = false,
             const DiffScope& scope = DiffScope::all());
Lines lines_of(const Policy& policy, const Observed& observed, bool daemon = false,
               const DiffScope& scope = DiffScope::all());

/// Applies one Diff of `policy` to `observed`; REQUIRES that the kernel refused nothing.
void converge_once(Observed& observed, const Policy& policy, bool daemon = false);
/// A fresh machine after one apply of `policy`.
Observed converged(const Policy& policy, bool daemon = false);

/// The arp arpguard set of VIPs (REQUIRES: it exists).
ObservedSet& arp_vips(Observed& observed);
ObservedSet& ndp_vips(Observed& observed);

/// Each plan broken into the smallest changes it makes: one line per element
/// added or deleted, describe() for every other action. For comparing plans
/// that batch the same changes differently.
std::multiset<std::string> facts(const Plan& plan);

template <class... More>
Lines cat(Lines first, const More&... more) {
  (first.insert(first.end(), more.begin(), more.end()), ...);
  return first;
}

}  // namespace arpguard::world
