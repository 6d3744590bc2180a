// Records the kernel's notifications as fixtures for the decode suite.
//
//   capture SCRIPT > FIXTURE.hex
//
// Subscribes to the rtnetlink groups and the nftables group arpguardd uses
// (lib/kernel/events.cc), then runs SCRIPT line by line ("label: shell
// command"; '#' lines and blank lines are skipped), and after each command
// writes every message that arrived, one per line, as
//
//   # $ the command
//   # RTM_NEWADDR rtnl len 72 flags 0x0 pid 0
//   label.0 48000000140000...
//
// Meant to run in a private network namespace (tests/decode/capture.sh), as
// root. Not run by the tests: its output is checked in under captured/.
#include <libmnl/libmnl.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace {

const char* rtnl_type(uint16_t type) {
  switch (type) {
    case RTM_NEWLINK: return "RTM_NEWLINK";
    case RTM_DELLINK: return "RTM_DELLINK";
    case RTM_NEWADDR: return "RTM_NEWADDR";
    case RTM_DELADDR: return "RTM_DELADDR";
    case RTM_NEWROUTE: return "RTM_NEWROUTE";
    case RTM_DELROUTE: return "RTM_DELROUTE";
    case RTM_NEWNETCONF: return "RTM_NEWNETCONF";
    case RTM_DELNETCONF: return "RTM_DELNETCONF";
    default: return "RTM_?";
  }
}

const char* nft_type(uint16_t type) {
  if ((type >> 8) != NFNL_SUBSYS_NFTABLES) return "NFNL_?";
  switch (type & 0xff) {
    case NFT_MSG_NEWTABLE: return "NFT_MSG_NEWTABLE";
    case NFT_MSG_DELTABLE: return "NFT_MSG_DELTABLE";
    case NFT_MSG_NEWCHAIN: return "NFT_MSG_NEWCHAIN";
    case NFT_MSG_DELCHAIN: return "NFT_MSG_DELCHAIN";
    case NFT_MSG_NEWRULE: return "NFT_MSG_NEWRULE";
    case NFT_MSG_DELRULE: return "NFT_MSG_DELRULE";
    case NFT_MSG_NEWSET: return "NFT_MSG_NEWSET";
    case NFT_MSG_DELSET: return "NFT_MSG_DELSET";
    case NFT_MSG_NEWSETELEM: return "NFT_MSG_NEWSETELEM";
    case NFT_MSG_DELSETELEM: return "NFT_MSG_DELSETELEM";
    case NFT_MSG_NEWGEN: return "NFT_MSG_NEWGEN";
    default: return "NFT_MSG_?";
  }
}

mnl_socket* subscribe(int bus, const std::vector<int>& groups) {
  mnl_socket* sock = mnl_socket_open(bus);
  if (!sock || mnl_socket_bind(sock, 0, MNL_SOCKET_AUTOPID) < 0) {
    std::perror("netlink socket");
    std::exit(1);
  }
  for (int group : groups) {
    if (mnl_socket_setsockopt(sock, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) < 0) {
      std::perror("NETLINK_ADD_MEMBERSHIP");
      std::exit(1);
    }
  }
  int buffer = 8 << 20;
  setsockopt(mnl_socket_get_fd(sock), SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof(buffer));
  return sock;
}

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

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: capture SCRIPT > FIXTURE.hex\n");
    return 2;
  }
  std::ifstream script(argv[1]);
  if (!script) {
    std::fprintf(stderr, "capture: cannot read %s\n", argv[1]);
    return 2;
  }
  mnl_socket* rtnl = subscribe(NETLINK_ROUTE, {RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR,
                                               RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE});
  mnl_socket* nft = subscribe(NETLINK_NETFILTER, {NFNLGRP_NFTABLES});
  std::vector<char> buffer(1 << 20);
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
    // Its own output goes to stderr: stdout is the fixture.
    const int status = std::system(("{ " + command + "\n} 1>&2").c_str());
    if (status != 0) {
      std::fprintf(stderr, "capture: `%s` failed (%d)\n", command.c_str(), status);
      ++failures;
    }
    std::printf("\n# $ %s\n", command.c_str());
    int index = 0;
    // Everything the command caused: until both sockets stay quiet for a while.
    for (;;) {
      pollfd fds[2] = {{mnl_socket_get_fd(rtnl), POLLIN, 0}, {mnl_socket_get_fd(nft), POLLIN, 0}};
      if (poll(fds, 2, 200) <= 0) break;
      for (int i = 0; i < 2; ++i) {
        if (!(fds[i].revents & POLLIN)) continue;
        const ssize_t n = recv(fds[i].fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
        if (n < 0) {
          std::fprintf(stderr, "capture: recv: %s\n", std::strerror(errno));
          return 1;
        }
        int remaining = static_cast<int>(n);
        for (auto* nlh = reinterpret_cast<const nlmsghdr*>(buffer.data()); mnl_nlmsg_ok(nlh, remaining);
             nlh = mnl_nlmsg_next(nlh, &remaining)) {
          std::printf("# %s %s len %u flags 0x%x pid %u\n", i == 0 ? rtnl_type(nlh->nlmsg_type) : nft_type(nlh->nlmsg_type),
                      i == 0 ? "rtnl" : "nft", nlh->nlmsg_len, nlh->nlmsg_flags, nlh->nlmsg_pid);
          std::printf("%s.%d %s\n", label.c_str(), index++, hex(nlh, nlh->nlmsg_len).c_str());
        }
      }
    }
  }
  mnl_socket_close(rtnl);
  mnl_socket_close(nft);
  return failures == 0 ? 0 : 1;
}
