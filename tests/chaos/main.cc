// The chaos suite: real namespaces, the real kernel, one arpguardd under fire. Needs root.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>

#include "tests/support/netlab.h"

int main(int argc, char** argv) {
  if (geteuid() != 0) {
    std::fprintf(stderr, "chaos tests need root (network namespaces); skipped\n");
    return 77;  // meson: skipped
  }
  arpguard::testing::sweep_stale_namespaces();
  doctest::Context context(argc, argv);
  return context.run();
}
