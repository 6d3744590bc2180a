// From a Policy and what the kernel holds to what the kernel should hold.
// Pure: the kernel is only read through the Observed value.
#pragma once

#include <string>
#include <vector>

#include "core/model.h"
#include "core/policy.h"

namespace arpguard {

/// Checks of the policy that need the kernel's view: a VIP that is an
/// interface's own address. Located at the VIP's address value.
std::vector<Diagnostic> check_against_kernel(const Policy& policy, const Observed& observed);

/// True when `name` is ARP-facing under `patterns` (names or fnmatch globs;
/// "*" means all): never lo, never a NOARP link.
bool is_arp_facing(const Link& link, const std::vector<std::string>& patterns);

/// The desired state. `daemon`: the caller runs for long and can hold the nft table.
Desired make_desired(const Policy& policy, const Observed& observed, bool daemon);

/// The kernel's effective value of an ARP sysctl on `interface`:
/// max(all, interface) for arp_ignore and arp_announce, all OR interface for arp_filter.
int effective_sysctl(const SysctlValues& values, const std::string& interface, const std::string& name);

/// True when an effective arp_ignore keeps the kernel from answering ARP for a VIP on lo.
bool arp_ignore_protects(int value);

}  // namespace arpguard
