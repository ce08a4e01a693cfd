// The devices a test body runs on: the CPU always, and CUDA device 0 when this build has CUDA and the
// machine has a GPU. CUDA cases on a machine without one print "SKIPPED: ..." and return; CTest
// turns that line into a visible "Skipped" (SKIP_REGULAR_EXPRESSION in CMakeLists.txt).
#pragma once
#include <doctest/doctest.h>

#include <cstdio>
#include <string>

#include "core/device.h"
#include "cuda/runtime.h"

namespace mg::test {

inline bool cuda_available() { return cuda::built_with_cuda() && cuda::device_count() > 0; }

inline std::string no_cuda_reason() {
  return cuda::built_with_cuda() ? "this machine has no CUDA device" : "this build has no CUDA support";
}

}  // namespace mg::test

// First statement of a CUDA-only test case: on a machine without a GPU, says so and ends the case.
#define MG_REQUIRE_CUDA()                                                 \
  do {                                                                    \
    if (!::mg::test::cuda_available()) {                                  \
      std::printf("SKIPPED: %s\n", ::mg::test::no_cuda_reason().c_str()); \
      std::fflush(stdout);                                                \
      return;                                                             \
    }                                                                     \
  } while (0)
