// The captured notifications of tests/decode/captured/*.hex, and the view of
// an Observed the decode and cache suites compare. Test-only.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/model.h"
#include "core/observed_delta.h"

namespace arpguard::decode_test {

/// One captured message, exactly as the kernel sent it.
struct Captured {
  std::string label;    ///< "v4_lo_host_add.0"
  std::string step;     ///< "v4_lo_host_add": the script line that caused it
  std::string command;  ///< "ip addr add 192.0.2.10/32 dev lo scope host"
  std::string type;     ///< "RTM_NEWADDR", from the capture's comment
  bool nft = false;     ///< an nfnetlink message (else rtnetlink)
  std::vector<uint8_t> bytes;
};

class Fixture {
 public:
  /// Reads captured/<name>.hex; throws when it cannot.
  static Fixture load(const std::string& name);

  const std::vector<Captured>& all() const { return messages_; }
  /// REQUIRES: the label exists (else throws).
  const Captured& at(const std::string& label) const;
  /// Every message `step` caused, in order (empty when it caused none).
  std::vector<const Captured*> step(const std::string& step) const;
  /// Every message from the first one through those of `step`.
  std::vector<const Captured*> through(const std::string& step) const;

 private:
  std::vector<Captured> messages_;
  std::map<std::string, size_t> by_label_;
};

/// Decodes with the daemon's own entry points (decode_rtnetlink, decode_nftables).
std::vector<KernelEvent> decode(const Captured& message);
std::vector<KernelEvent> decode_bytes(bool nft, const std::vector<uint8_t>& bytes);

/// Everything the cache keeps that events can change, one fact a line, in a
/// fixed order: two caches hold the same when their views are equal. Links,
/// addresses (and the per-link index), local routes, and arpguard's tables
/// with flags, owner, sets (definition, points, elements), chains and rules
/// (chain and expressions; counters left out: they move on by themselves).
std::string view(const Observed& observed);
/// The lines of `a` not in `b` as "- ...", and of `b` not in `a` as "+ ...".
std::string diff(const std::string& a, const std::string& b);

/// "AddressUpsert 192.0.2.10/32 link 1 scope 254 flags 0x80", ...: one delta, fully.
std::string show(const Delta& delta);
std::string show(const std::vector<KernelEvent>& events);

}  // namespace arpguard::decode_test
