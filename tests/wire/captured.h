// The captured nflog messages of tests/wire/captured/nflog.hex, and frames
// built by hand for the decoders. Test-only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace arpguard::wire_test {

/// One captured message, exactly as the kernel sent it.
struct Captured {
  std::string label;    ///< "arp_claim_reply.0"
  std::string command;  ///< the script line that caused it
  std::vector<uint8_t> bytes;
};

/// Reads captured/nflog.hex; throws when it cannot.
std::vector<Captured> load_captured();
/// REQUIRES: the label exists (else throws).
const Captured& captured(const std::string& label);

/// "0a0b..." to bytes; throws on odd length or a non-hex digit.
std::vector<uint8_t> from_hex(const std::string& hex);

}  // namespace arpguard::wire_test
