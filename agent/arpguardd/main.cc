// arpguardd: the agent. Runs in the foreground, systemd style.
#include <CLI/CLI.hpp>
#include <malloc.h>

#include <cstdio>

#include "agent/common/parse_args.h"
#include "agent/common/standard_fds.h"
#include "agent/arpguardd/daemon.h"
#include "arpguard_config.h"

int main(int argc, char** argv) {
  arpguard::hold_standard_fds();
  // One heap: the thread that reads the nft tables during a full read would
  // otherwise get an arena of its own, resident for the daemon's lifetime.
  mallopt(M_ARENA_MAX, 1);
  // Blocks of a megabyte or more (a status reply of every VIP: 18 MB at
  // 100,000) are mapped and handed back when freed. glibc would otherwise
  // raise this bound after the first such block and keep the next ones.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  CLI::App app{"arpguardd - keep this real server's VIPs local and hidden from ARP"};
  app.set_version_flag("--version", std::string("arpguardd ") + ARPGUARD_VERSION);
  std::string policy_file = "/etc/arpguard/policy.toml";
  app.add_option("--policy", policy_file, "Policy file")->capture_default_str();
  if (auto exit_code = arpguard::parse_args(app, argc, argv)) {
    // --help or --version that could not be written is not a success.
    const bool flushed = std::fflush(stdout) == 0 && !std::ferror(stdout);
    return flushed || *exit_code != 0 ? *exit_code : 1;
  }
  return arpguard::Daemon(policy_file).run();
}
