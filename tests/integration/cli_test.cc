// The CLI's contract: exit codes and messages.
#include <doctest/doctest.h>

#include "guarded.h"

using namespace arpguard::testing;

TEST_CASE("check-config: 0 for a valid policy, 1 with located errors, 2 for usage") {
  TempDir dir;
  const std::string good = dir.write("good.toml", "[[vip]]\naddress = \"198.51.100.20\"\n");
  CommandResult ok = run(arpguard_bin() + " check-config " + good);
  CHECK(ok.exit_code == 0);
  CHECK(ok.out == good + ": valid (1 VIP(s), method both)\n");

  const std::string bad = dir.write("bad.toml", "[arp]\narp_announce = 0\n[[vip]]\naddress = \"fe80::1\"\n");
  CommandResult invalid = run(arpguard_bin() + " check-config " + bad);
  CHECK(invalid.exit_code == 1);
  CHECK(invalid.err == bad + ":2:16: arp.arp_announce: 0 would not protect VIPs (allowed: 1, 2)\n" + bad +
                           ":4:11: vip.address: fe80::1 is a link-local address, not a usable VIP\n");

  CommandResult usage = run(arpguard_bin() + " check-config");
  CHECK(usage.exit_code == 2);
  CHECK(usage.err.find("FILE is required") != std::string::npos);
  CHECK(run(arpguard_bin() + " frobnicate").exit_code == 2);
  CHECK(run(arpguard_bin() + " apply").exit_code == 2);
  // The monitoring checks say UNKNOWN for a usage error, never CRITICAL.
  CHECK(run(arpguard_bin() + " status --bogus").exit_code == 3);
  CHECK(run(arpguard_bin() + " probe 192.0.2.80 --interface").exit_code == 3);
}

TEST_CASE("--version names the program and version") {
  CommandResult r = run(arpguard_bin() + " --version");
  CHECK(r.exit_code == 0);
  CHECK(r.out.rfind("arpguard 0.", 0) == 0);
}

TEST_CASE("output that cannot be written fails the command: never an abort, never a silent success") {
  TempDir dir;
  const std::string good = dir.write("good.toml", "[[vip]]\naddress = \"198.51.100.20\"\n");
  const std::string bad = dir.write("bad.toml", "[[vip]]\naddress = \"198.51.100.\xff\"\n");
  // Its errors cannot be told (stderr on a full disk, or closed): still 1, not SIGABRT.
  CHECK(run(arpguard_bin() + " check-config " + bad + " 2>/dev/full").exit_code == 1);
  CHECK(run(arpguard_bin() + " check-config " + bad + " 2>&-").exit_code == 1);
  // "valid" that cannot be said is not a pass.
  CommandResult full = run(arpguard_bin() + " check-config " + good + " >/dev/full");
  CHECK(full.exit_code == 1);
  CHECK(full.err == "arpguard: cannot write to standard output: No space left on device\n");
  CommandResult closed = run(arpguard_bin() + " check-config " + good + " >&-");
  CHECK(closed.exit_code == 1);
  CHECK(closed.err == "arpguard: cannot write to standard output: Bad file descriptor\n");
  CHECK(run(arpguard_bin() + " --version >/dev/full").exit_code == 1);
  // A monitoring check that cannot report says UNKNOWN.
  CHECK(run(arpguard_bin() + " status --socket " + dir.path() + "/none.sock >/dev/full 2>&-").exit_code == 3);
  // A reader that has gone (`| head -1` done reading): the same, not death by SIGPIPE (141).
  auto gone_reader = [&](const std::string& args) {
    return run("{ sleep 0.3; " + arpguard_bin() + " " + args + "; echo \"exit=$?\" >&2; } | true").err;
  };
  CHECK(gone_reader("check-config " + good).find("exit=1\n") != std::string::npos);
  CHECK(gone_reader("status --socket " + dir.path() + "/none.sock").find("exit=3\n") != std::string::npos);
}
