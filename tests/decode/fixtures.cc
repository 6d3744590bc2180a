#include "tests/decode/fixtures.h"

#include <fmt/format.h>

#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "core/overloaded.h"
#include "kernel/events.h"

#ifndef DECODE_FIXTURES_DIR
#error "DECODE_FIXTURES_DIR: tests/decode/meson.build sets it"
#endif

namespace arpguard::decode_test {

namespace {

int nibble(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string hex(const std::string& bytes) {
  std::string out;
  for (unsigned char c : bytes) out += fmt::format("{:02x}", c);
  return out;
}

std::string show_exprs(const std::vector<nft::Expr>& exprs) {
  std::string out;
  for (const nft::Expr& e : exprs) {
    out += " " + e.name + "{";
    for (size_t i = 0; i < e.attrs.size(); ++i) {
      out += fmt::format("{}{}={}", i ? "," : "", e.attrs[i].type, hex(e.attrs[i].bytes));
    }
    out += "}";
  }
  return out;
}

std::string show_points(const std::vector<std::pair<IpAddress, bool>>& points) {
  std::string out;
  for (const auto& [key, start] : points) out += fmt::format(" {}{}", start ? "start:" : "end:", key.str());
  return out;
}

std::string show_elements(const std::vector<nft::Element>& elements) {
  std::string out;
  for (const nft::Element& e : elements) {
    out += fmt::format(" [{}-{} proto {} port {}-{} to {}]", e.addresses.first.str(), e.addresses.last.str(),
                       e.protocol, e.port_first, e.port_last, e.to_port);
  }
  return out;
}

}  // namespace

Fixture Fixture::load(const std::string& name) {
  const std::string path = std::string(DECODE_FIXTURES_DIR) + "/" + name + ".hex";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read fixture " + path);
  Fixture fixture;
  std::string command, type;
  bool nft = false;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    if (line.rfind("# $ ", 0) == 0) {
      command = line.substr(4);
      continue;
    }
    if (line[0] == '#') {
      // "# RTM_NEWADDR rtnl len 76 ..." names the next message.
      std::istringstream words(line.substr(2));
      std::string bus;
      if (words >> type >> bus && (bus == "rtnl" || bus == "nft")) nft = bus == "nft";
      continue;
    }
    const size_t space = line.find(' ');
    if (space == std::string::npos) throw std::runtime_error(path + ": not 'label hex': " + line);
    Captured c;
    c.label = line.substr(0, space);
    c.step = c.label.substr(0, c.label.rfind('.'));
    c.command = command;
    c.type = type;
    c.nft = nft;
    const std::string digits = line.substr(space + 1);
    if (digits.size() % 2 != 0) throw std::runtime_error(path + ": odd hex in " + c.label);
    for (size_t i = 0; i < digits.size(); i += 2) {
      const int hi = nibble(digits[i]), lo = nibble(digits[i + 1]);
      if (hi < 0 || lo < 0) throw std::runtime_error(path + ": bad hex in " + c.label);
      c.bytes.push_back(static_cast<uint8_t>(hi << 4 | lo));
    }
    if (fixture.by_label_.count(c.label)) throw std::runtime_error(path + ": duplicate label " + c.label);
    fixture.by_label_[c.label] = fixture.messages_.size();
    fixture.messages_.push_back(std::move(c));
  }
  return fixture;
}

const Captured& Fixture::at(const std::string& label) const {
  auto it = by_label_.find(label);
  if (it == by_label_.end()) throw std::runtime_error("no captured message " + label);
  return messages_[it->second];
}

std::vector<const Captured*> Fixture::step(const std::string& step) const {
  std::vector<const Captured*> out;
  for (const Captured& c : messages_) {
    if (c.step == step) out.push_back(&c);
  }
  return out;
}

std::vector<const Captured*> Fixture::through(const std::string& step) const {
  std::vector<const Captured*> out;
  bool seen = false;
  for (const Captured& c : messages_) {
    if (seen && c.step != step) break;
    seen |= c.step == step;
    out.push_back(&c);
  }
  if (!seen) throw std::runtime_error("no captured step " + step);
  return out;
}

std::vector<KernelEvent> decode_bytes(bool nft, const std::vector<uint8_t>& bytes) {
  return nft ? decode_nftables(bytes.data(), bytes.size()) : decode_rtnetlink(bytes.data(), bytes.size());
}

std::vector<KernelEvent> decode(const Captured& message) { return decode_bytes(message.nft, message.bytes); }

std::string view(const Observed& o) {
  std::string out;
  for (const auto& [index, l] : o.links) {
    out += fmt::format("link {} {}{}{}{}\n", index, l.name, l.loopback ? " loopback" : "", l.noarp ? " noarp" : "",
                       l.up ? " up" : " down");
  }
  for (const auto& [k, i] : o.addresses) {
    out += fmt::format("address {} link {} scope {} flags {:#x}\n", k.prefix().str(), k.link_index, i.scope, i.flags);
  }
  for (const auto& [link, keys] : o.addresses_by_link) {
    for (const AddressKey& k : keys) out += fmt::format("address-index link {} {}\n", link, k.prefix().str());
  }
  for (const auto& [k, i] : o.local_routes) {
    out += fmt::format("route local {} metric {} link {} proto {} scope {}\n", k.destination.str(), k.priority,
                       i.link_index, i.protocol, i.scope);
  }
  for (const auto& [id, t] : o.tables) {
    out += fmt::format("table {} flags {:#x} owner {}\n", id.str(), t.flags, t.owner ? std::to_string(*t.owner) : "none");
    for (const auto& [name, s] : t.sets) {
      out += fmt::format("table {} set {} flags {:#x} key {}/{} data {}/{}\n", id.str(), name, s.flags, s.key_type,
                         s.key_len, s.data_type, s.data_len);
      for (const auto& [key, start] : s.points) {
        out += fmt::format("table {} set {} point {} {}\n", id.str(), name, start ? "start" : "end", key.str());
      }
      for (const nft::Element& e : s.elements) {
        out += fmt::format("table {} set {} element{}\n", id.str(), name, show_elements({e}));
      }
    }
    for (const auto& [name, c] : t.chains) {
      out += c.base ? fmt::format("table {} chain {} type {} hook {} priority {} policy {}\n", id.str(), name, c.type,
                                  c.hook, c.priority, c.policy)
                    : fmt::format("table {} chain {} regular\n", id.str(), name);
    }
    for (const auto& [handle, r] : t.rules) {
      out += fmt::format("table {} rule {} chain {}:{}\n", id.str(), handle, r.chain, show_exprs(r.exprs));
    }
  }
  return out;
}

std::string diff(const std::string& a, const std::string& b) {
  auto lines = [](const std::string& text) {
    std::multiset<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out.insert(line);
    return out;
  };
  const auto la = lines(a), lb = lines(b);
  std::string out;
  for (const std::string& line : la) {
    if (la.count(line) > lb.count(line)) out += "- " + line + "\n";
  }
  for (const std::string& line : lb) {
    if (lb.count(line) > la.count(line)) out += "+ " + line + "\n";
  }
  return out;
}

std::string show(const Delta& delta) {
  return std::visit(
      Overloaded{
          [](const delta::LinkUpsert& d) {
            return fmt::format("LinkUpsert {} {}{}{}{}", d.link.index, d.link.name, d.link.loopback ? " loopback" : "",
                               d.link.noarp ? " noarp" : "", d.link.up ? " up" : " down");
          },
          [](const delta::LinkRemoved& d) { return fmt::format("LinkRemoved {}", d.index); },
          [](const delta::AddressUpsert& d) {
            return fmt::format("AddressUpsert {} link {} scope {} flags {:#x}", d.key.prefix().str(), d.key.link_index,
                               d.info.scope, d.info.flags);
          },
          [](const delta::AddressRemoved& d) {
            return fmt::format("AddressRemoved {} link {}", d.key.prefix().str(), d.key.link_index);
          },
          [](const delta::RouteUpsert& d) {
            return fmt::format("RouteUpsert {} metric {} link {} proto {} scope {}", d.key.destination.str(),
                               d.key.priority, d.info.link_index, d.info.protocol, d.info.scope);
          },
          [](const delta::RouteRemoved& d) {
            return fmt::format("RouteRemoved {} metric {}", d.key.destination.str(), d.key.priority);
          },
          [](const delta::TableUpsert& d) {
            return fmt::format("TableUpsert {} flags {:#x} owner {}", d.table.str(), d.flags,
                               d.owner ? std::to_string(*d.owner) : "none");
          },
          [](const delta::TableRemoved& d) { return fmt::format("TableRemoved {}", d.table.str()); },
          [](const delta::ChainUpsert& d) {
            return d.chain.base ? fmt::format("ChainUpsert {} {} type {} hook {} priority {} policy {}", d.table.str(),
                                              d.name, d.chain.type, d.chain.hook, d.chain.priority, d.chain.policy)
                                : fmt::format("ChainUpsert {} {} regular", d.table.str(), d.name);
          },
          [](const delta::ChainRemoved& d) { return fmt::format("ChainRemoved {} {}", d.table.str(), d.name); },
          [](const delta::SetUpsert& d) {
            return fmt::format("SetUpsert {} {} flags {:#x} key {}/{} data {}/{}", d.table.str(), d.name, d.set.flags,
                               d.set.key_type, d.set.key_len, d.set.data_type, d.set.data_len);
          },
          [](const delta::SetRemoved& d) { return fmt::format("SetRemoved {} {}", d.table.str(), d.name); },
          [](const delta::RuleUpsert& d) {
            return fmt::format("RuleUpsert {} handle {} chain {}:{}", d.table.str(), d.rule.handle, d.rule.chain,
                               show_exprs(d.rule.exprs));
          },
          [](const delta::RuleRemoved& d) { return fmt::format("RuleRemoved {} handle {}", d.table.str(), d.handle); },
          [](const delta::ElementsAdded& d) {
            return fmt::format("ElementsAdded {}{}{}", d.set.str(), show_points(d.points), show_elements(d.elements));
          },
          [](const delta::ElementsRemoved& d) {
            return fmt::format("ElementsRemoved {}{}{}", d.set.str(), show_points(d.points), show_elements(d.elements));
          },
          // Kinds this suite does not look into (routing rules, other tables' routes): named only.
          [&](const auto&) { return "(other) " + describe(delta, Observed{}); },
      },
      delta);
}

std::string show(const std::vector<KernelEvent>& events) {
  std::string out;
  for (const KernelEvent& e : events) out += show(e.delta) + "\n";
  return out;
}

}  // namespace arpguard::decode_test
