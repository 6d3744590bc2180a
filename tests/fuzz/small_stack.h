// Runs a piece of a fuzz target on a thread with a deliberately small stack, so
// that recursion which would only nearly exhaust an 8 MiB main stack crashes
// the fuzzer instead: a bound that holds at 1 MiB holds with room to spare.
// Each call makes and joins its own thread; not for use from several threads.
#pragma once

#include <pthread.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace arpguard::fuzz {

inline constexpr size_t kSmallStackBytes = 1 << 20;

/// Calls work() on a new thread with a kSmallStackBytes stack and waits for it.
/// A stack overflow there is a crash (SIGSEGV, reported by ASan); any failure to
/// make the thread aborts, since the check would silently not run.
template <typename Work>
void run_on_small_stack(Work& work) {
  pthread_attr_t attributes;
  pthread_attr_init(&attributes);
  int error = pthread_attr_setstacksize(&attributes, kSmallStackBytes);
  pthread_t thread;
  if (error == 0) {
    error = pthread_create(
        &thread, &attributes,
        [](void* argument) -> void* {
          (*static_cast<Work*>(argument))();
          return nullptr;
        },
        &work);
  }
  pthread_attr_destroy(&attributes);
  if (error != 0) {
    std::fprintf(stderr, "run_on_small_stack: %s\n", std::strerror(error));
    std::abort();
  }
  pthread_join(thread, nullptr);
}

}  // namespace arpguard::fuzz
