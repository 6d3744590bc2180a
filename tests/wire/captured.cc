#include "tests/wire/captured.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

#ifndef WIRE_FIXTURES_DIR
#error "WIRE_FIXTURES_DIR: tests/wire/meson.build sets it"
#endif

namespace arpguard::wire_test {

namespace {

int nibble(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::vector<uint8_t> from_hex(const std::string& hex) {
  if (hex.size() % 2 != 0) throw std::runtime_error("odd hex length");
  std::vector<uint8_t> bytes;
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int high = nibble(hex[i]);
    const int low = nibble(hex[i + 1]);
    if (high < 0 || low < 0) throw std::runtime_error("not hex: " + hex.substr(i, 2));
    bytes.push_back(static_cast<uint8_t>(high * 16 + low));
  }
  return bytes;
}

std::vector<Captured> load_captured() {
  const std::string path = std::string(WIRE_FIXTURES_DIR) + "/nflog.hex";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read fixture " + path);
  std::vector<Captured> messages;
  std::string command;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    if (line.rfind("# $ ", 0) == 0) {
      command = line.substr(4);
      continue;
    }
    if (line[0] == '#') continue;
    std::istringstream words(line);
    Captured message;
    std::string hex;
    if (!(words >> message.label >> hex)) throw std::runtime_error("bad fixture line: " + line);
    message.command = command;
    message.bytes = from_hex(hex);
    messages.push_back(std::move(message));
  }
  return messages;
}

const Captured& captured(const std::string& label) {
  static const std::vector<Captured> all = load_captured();
  for (const Captured& message : all) {
    if (message.label == label) return message;
  }
  throw std::runtime_error("no captured message " + label);
}

}  // namespace arpguard::wire_test
