// The integration suite: real namespaces, the real kernel. Needs root.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>

#include "tests/support/netlab.h"

int main(int argc, char** argv) {
  if (geteuid() != 0) {
    std::fprintf(stderr, "integration tests need root (network namespaces); skipped\n");
    return 77;  // meson: skipped
  }
  arpguard::testing::sweep_stale_namespaces();
  doctest::Context context(argc, argv);
  return context.run();
}
