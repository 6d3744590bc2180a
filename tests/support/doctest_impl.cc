// doctest's implementation, compiled once into a library that every test
// program links (tests/meson.build): each copy costs tens of seconds to compile.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
