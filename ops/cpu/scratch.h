// Per-thread, 64-byte-aligned scratch buffers for the CPU kernels, grown on demand and kept for the
// thread's lifetime (a training step calls the gemm hundreds of times). Slot `which` (0..3) of element
// type T is one buffer; callers that nest (the bf16 gemm's rounded copies around the float gemm's
// packing buffers) use different slots.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <memory>

#include "core/error.h"

namespace mg::cpu {

template <class T>
T* thread_scratch(int which, size_t n) {
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  thread_local std::unique_ptr<T, Free> buf[4];
  thread_local size_t cap[4] = {0, 0, 0, 0};
  if (cap[which] < n) {
    buf[which].reset(static_cast<T*>(std::aligned_alloc(64, (n * sizeof(T) + 63) / 64 * 64)));
    MG_CHECK(buf[which], "[matmul] out of memory for a {}-element scratch buffer", n);
    cap[which] = n;
  }
  return buf[which].get();
}

}  // namespace mg::cpu
