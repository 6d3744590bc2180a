// Records what nfnetlink_log hands over for the wire watch's log rules, as
// fixtures for the wire suite.
//
//   capture GROUP SCRIPT > FIXTURE.hex
//
// Binds nflog GROUP with arpguard's own settings (NflogSocket::open: copy
// range, queue threshold 1), then runs SCRIPT line by line ("label: shell
// command"; '#' lines and blank lines are skipped), and after each command
// writes every message that arrived, one per line, exactly as received:
//
//   # $ the command
//   # NFULNL_MSG_PACKET family 3 len 172 prefix "arpguard claim"
//   label.0 ac000000000401000000...
//
// Meant to run in a private network namespace (tests/wire/capture.sh), as
// root. Not run by the tests: its output is checked in under captured/.
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "kernel/nflog.h"

namespace {

std::string hex(const void* data, size_t len) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < len; ++i) {
    out += digits[p[i] >> 4];
    out += digits[p[i] & 15];
  }
  return out;
}

struct Summary {
  std::string prefix;
};

int summarize(const nlattr* attr, void* data) {
  if (mnl_attr_get_type(attr) == NFULA_PREFIX) {
    const char* text = static_cast<const char*>(mnl_attr_get_payload(attr));
    static_cast<Summary*>(data)->prefix.assign(text, strnlen(text, mnl_attr_get_payload_len(attr)));
  }
  return MNL_CB_OK;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: capture GROUP SCRIPT > FIXTURE.hex\n");
    return 2;
  }
  std::ifstream script(argv[2]);
  if (!script) {
    std::fprintf(stderr, "capture: cannot read %s\n", argv[2]);
    return 2;
  }
  auto nflog = arpguard::NflogSocket::open(static_cast<uint16_t>(std::atoi(argv[1])), 1 << 20);
  if (!nflog) {
    std::fprintf(stderr, "capture: %s\n", nflog.error().message().c_str());
    return 1;
  }
  std::vector<char> buffer(1 << 16);
  int failures = 0;

  for (std::string line; std::getline(script, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t colon = line.find(": ");
    if (colon == std::string::npos) {
      std::fprintf(stderr, "capture: not 'label: command': %s\n", line.c_str());
      return 2;
    }
    const std::string label = line.substr(0, colon);
    const std::string command = line.substr(colon + 2);
    std::fflush(stdout);
    if (std::system(command.c_str()) != 0) {
      std::fprintf(stderr, "capture: %s: command failed: %s\n", label.c_str(), command.c_str());
      ++failures;
    }
    std::printf("\n# $ %s\n", command.c_str());
    // Whatever the command caused arrives within a few hundred milliseconds.
    int index = 0;
    for (;;) {
      pollfd readable{nflog->fd(), POLLIN, 0};
      if (poll(&readable, 1, 300) <= 0) break;
      const ssize_t n = recv(nflog->fd(), buffer.data(), buffer.size(), 0);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        std::perror("recv");
        return 1;
      }
      int remaining = static_cast<int>(n);
      for (auto* nlh = reinterpret_cast<const nlmsghdr*>(buffer.data()); mnl_nlmsg_ok(nlh, remaining);
           nlh = mnl_nlmsg_next(nlh, &remaining)) {
        const auto* nfg = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(nlh));
        Summary summary;
        mnl_attr_parse(nlh, sizeof(nfgenmsg), summarize, &summary);
        std::printf("# %s family %u len %u prefix \"%s\"\n",
                    nlh->nlmsg_type == ((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET) ? "NFULNL_MSG_PACKET" : "other",
                    nfg->nfgen_family, nlh->nlmsg_len, summary.prefix.c_str());
        std::printf("%s.%d %s\n", label.c_str(), index++, hex(nlh, nlh->nlmsg_len).c_str());
      }
    }
  }
  return failures == 0 ? 0 : 1;
}
