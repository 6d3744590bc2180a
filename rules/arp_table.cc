#include "rules/arp_table.h"

#include <fmt/format.h>

namespace arpguard::rules {

std::string ArpRule::nft_text(uint64_t packets, uint64_t bytes) const {
  const std::string counter = fmt::format("counter packets {} bytes {}", packets, bytes);
  switch (kind) {
    case Kind::kInputDrop:
      return fmt::format("arp operation request arp daddr ip @{} {} drop", kSet, counter);
    case Kind::kOutputMangle:
      return fmt::format("oifname \"{}\" arp saddr ip @{} {} arp saddr ip set {}", interface, kSet, counter,
                         real_ip.str());
    case Kind::kOutputDrop:
      return fmt::format("oifname \"{}\" arp saddr ip @{} {} drop", interface, kSet, counter);
  }
  return {};
}

std::string render_nft(const ArpTableSpec& spec) {
  std::string out = fmt::format("table arp {} {{\n", kTable);
  out += fmt::format("\tset {} {{\n\t\ttype ipv4_addr\n\t\tflags interval\n", kSet);
  if (!spec.vips.empty()) {
    out += "\t\telements = { ";
    for (size_t i = 0; i < spec.vips.size(); ++i) {
      // nft prints IPv4 elements two to a line.
      if (i > 0) out += (i % 2 == 0) ? ",\n\t\t\t     " : ", ";
      out += spec.vips[i].str();
    }
    out += " }\n";
  }
  out += "\t}\n";
  for (std::string_view chain : {kInputChain, kOutputChain}) {
    out += fmt::format("\n\tchain {} {{\n\t\ttype filter hook {} priority filter; policy accept;\n", chain, chain);
    for (const ArpRule& rule : spec.rules) {
      if (rule.chain() == chain) out += "\t\t" + rule.nft_text() + "\n";
    }
    out += "\t}\n";
  }
  out += "}\n";
  return out;
}

}  // namespace arpguard::rules
