#include "core/model.h"

#include <fmt/format.h>

#include <algorithm>

namespace arpguard {



std::string ManagedVip::str() const {
  return kind == VipKind::kAddress ? fmt::format("{} dev {}", prefix.str(), device)
                                   : fmt::format("{} (route) dev {}", prefix.str(), device);
}

std::string RoutingRuleKey::str() const {
  return fmt::format("from {} lookup {} priority {}", source.str(), table, priority);
}

void Observed::put_address(const AddressKey& key, const AddressInfo& info) {
  addresses[key] = info;
  const Link* link = link_at(key.link_index);
  if (!link || !link->loopback) addresses_by_link[key.link_index].insert(key);
}

void Observed::remove_address(const AddressKey& key) {
  addresses.erase(key);
  auto it = addresses_by_link.find(key.link_index);
  if (it == addresses_by_link.end()) return;
  it->second.erase(key);
  if (it->second.empty()) addresses_by_link.erase(it);
}

void Observed::set_addresses(std::map<AddressKey, AddressInfo> all) {
  addresses = std::move(all);
  addresses_by_link.clear();
  for (const auto& [key, info] : addresses) {
    const Link* link = link_at(key.link_index);
    if (!link || !link->loopback) addresses_by_link[key.link_index].insert(key);
  }
}

const Link* Observed::link_named(const std::string& name) const {
  for (const auto& [index, link] : links) {
    if (link.name == name) return &link;
  }
  return nullptr;
}

const Link* Observed::link_at(int index) const {
  auto it = links.find(index);
  return it == links.end() ? nullptr : &it->second;
}

std::vector<std::pair<AddressKey, AddressInfo>> Observed::addresses_of(const IpAddress& address) const {
  std::vector<std::pair<AddressKey, AddressInfo>> out;
  for (auto it = addresses.lower_bound(AddressKey{address, 0, 0}); it != addresses.end() && it->first.address == address;
       ++it) {
    out.emplace_back(*it);
  }
  return out;
}

bool Observed::anything_local_in(const IpRange& range) const {
  // Addresses and routes are ordered by first address (family first).
  auto address = addresses.lower_bound(AddressKey{range.first, 0, 0});
  if (address != addresses.end() && address->first.address <= range.last) return true;
  auto route = local_routes.lower_bound(RouteKey{IpPrefix{range.first, 0}, 0});
  if (route != local_routes.end() && route->first.destination.address <= range.last) return true;
  // A route starting before the range covers its first address: one lookup per prefix length.
  for (int length = 0; length < range.first.bits(); ++length) {
    IpPrefix prefix{range.first, static_cast<uint8_t>(length)};
    prefix.address = prefix.first();
    auto it = local_routes.lower_bound(RouteKey{prefix, 0});
    if (it != local_routes.end() && it->first.destination == prefix) return true;
  }
  return false;
}

std::vector<IpRange> Observed::local_ranges_in(const IpRange& range) const {
  std::vector<IpRange> out;
  for (auto it = addresses.lower_bound(AddressKey{range.first, 0, 0});
       it != addresses.end() && it->first.address <= range.last; ++it) {
    out.push_back(IpRange{it->first.address, it->first.address});
  }
  auto clipped = [&](const IpPrefix& prefix) {
    const IpRange whole = IpRange::of(prefix);
    out.push_back(IpRange{std::max(whole.first, range.first), std::min(whole.last, range.last)});
  };
  for (auto it = local_routes.lower_bound(RouteKey{IpPrefix{range.first, 0}, 0});
       it != local_routes.end() && it->first.destination.address <= range.last; ++it) {
    clipped(it->first.destination);
  }
  // A route starting before the range covers its first address: one lookup per prefix length.
  for (int length = 0; length < range.first.bits(); ++length) {
    IpPrefix prefix{range.first, static_cast<uint8_t>(length)};
    prefix.address = prefix.first();
    auto it = local_routes.lower_bound(RouteKey{prefix, 0});
    if (it != local_routes.end() && it->first.destination == prefix) clipped(prefix);
  }
  return merge_ranges(std::move(out));
}

const ObservedTable* Observed::table(const nft::TableId& id) const {
  auto it = tables.find(id);
  return it == tables.end() ? nullptr : &it->second;
}

// ---- sets ----

bool ObservedSet::matches(const nft::SetSpec& spec) const {
  const uint32_t want_data_type = spec.data ? static_cast<uint32_t>(*spec.data) : 0;
  const uint32_t want_data_len = spec.data ? 2 : 0;
  return flags == spec.flags() && key_type == spec.key_type() && key_len == spec.key_len() &&
         data_type == want_data_type && data_len == want_data_len;
}

namespace {

// Rebuilds ranges from interval points, from `it` on, until a start beyond `stop`.
// A start without an end runs to the next start (or the end of the space);
// an end without a start (nft's leading 0 marker) closes nothing.
template <class It>
void ranges_from_points(It it, It end, const IpAddress* stop, std::vector<nft::Element>& out) {
  std::optional<IpAddress> open;
  for (; it != end; ++it) {
    const auto& [key, is_start] = *it;
    if (open && key > *open) out.push_back(nft::Element{IpRange{*open, key.prev()}, 0, 0, 0, 0});
    open.reset();
    if (is_start) {
      if (stop && key > *stop) return;
      open = key;
    }
  }
  if (open) {
    IpAddress last = *open;
    last.value = last.max_value();
    out.push_back(nft::Element{IpRange{*open, last}, 0, 0, 0, 0});
  }
}

}  // namespace

std::vector<nft::Element> ObservedSet::all_elements() const {
  if (!points.empty()) {
    std::vector<nft::Element> out;
    out.reserve(points.size() / 2 + 1);
    ranges_from_points(points.begin(), points.end(), nullptr, out);
    return out;
  }
  return {elements.begin(), elements.end()};
}

std::vector<nft::Element> ObservedSet::elements_overlapping(const IpRange& range) const {
  std::vector<nft::Element> out;
  if (!points.empty()) {
    // Start at the last start point at or before range.first, if the range it opens may reach it.
    auto it = points.upper_bound({range.first, true});
    if (it != points.begin() && std::prev(it)->second) --it;
    std::vector<nft::Element> candidates;
    ranges_from_points(it, points.end(), &range.last, candidates);
    for (nft::Element& e : candidates) {
      if (e.addresses.overlaps(range)) out.push_back(std::move(e));
    }
    return out;
  }
  for (auto it = elements.begin(); it != elements.end(); ++it) {
    // Concatenated sets are small (redirect VIPs): a scan is fine.
    if (it->addresses.overlaps(range)) out.push_back(*it);
  }
  return out;
}

std::vector<nft::Element> elements_in_area(std::vector<nft::Element> sorted, const std::vector<IpRange>& area) {
  auto region = area.begin();
  size_t kept = 0;
  for (const nft::Element& e : sorted) {
    while (region != area.end() && region->last < e.addresses.first) ++region;
    if (region == area.end()) break;
    if (region->overlaps(e.addresses)) sorted[kept++] = e;
  }
  sorted.resize(kept);
  return sorted;
}

std::vector<nft::Element> ObservedSet::elements_overlapping(const std::vector<IpRange>& area) const {
  std::vector<nft::Element> out;
  if (points.empty() || area.size() * 16 >= points.size()) {
    // Few elements for the regions (or a concatenated set): one walk over all
    // of them beside the regions costs less than a search for each region.
    return elements_in_area(all_elements(), area);
  }
  for (const IpRange& range : area) {
    auto it = points.upper_bound({range.first, true});
    if (it != points.begin() && std::prev(it)->second) --it;
    const size_t before = out.size();
    ranges_from_points(it, points.end(), &range.last, out);
    // Keep the new ones that overlap; one that spans two regions was found for both.
    size_t kept = before;
    for (size_t k = before; k < out.size(); ++k) {
      if (!out[k].addresses.overlaps(range) || (kept > 0 && out[kept - 1] == out[k])) continue;
      out[kept++] = out[k];
    }
    out.resize(kept);
  }
  return out;
}

size_t ObservedSet::size() const { return points.empty() ? elements.size() : (points.size() + 1) / 2; }

}  // namespace arpguard
