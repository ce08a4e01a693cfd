// Threading. The thread count comes from set_num_threads (the CLI's --threads), else from the
// MG_NUM_THREADS environment variable, else OpenMP's default.
#pragma once
#include <algorithm>
#include <cstdint>

namespace mg {

int num_threads();
void set_num_threads(int n);

// Runs f(begin, end) over [0, n) split into contiguous ranges across threads; serial when the work
// (n * cost_per_item) is small. Each index is processed exactly once.
template <class F>
void parallel_for(int64_t n, int64_t cost_per_item, F&& f);

}  // namespace mg

#include <omp.h>

namespace mg {

template <class F>
void parallel_for(int64_t n, int64_t cost_per_item, F&& f) {
  if (n <= 0) return;
  constexpr int64_t kGrain = 32768;  // below this much work a thread costs more than it saves
  int nt = num_threads();
  if (nt <= 1 || n * cost_per_item < kGrain || omp_in_parallel()) {
    f(int64_t(0), n);
    return;
  }
  int64_t chunks = std::min<int64_t>(nt, n);
#pragma omp parallel for num_threads(chunks) schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    int64_t b = n * c / chunks, e = n * (c + 1) / chunks;
    f(b, e);
  }
}

}  // namespace mg
