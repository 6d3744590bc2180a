// peers_tests: the peer server (HTTP, agent-check, control) over real sockets.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
