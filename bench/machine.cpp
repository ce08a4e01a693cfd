// The machine's practical limits, measured in the same run as a benchmark: fp32 FMA throughput on
// every thread (and VDPBF16PS throughput where the CPU has AVX512-BF16), and memory bandwidth (a parallel copy far
// larger than the caches).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include "core/format.h"

#if defined(__x86_64__)  // the AVX-512 chains below are compiled for their target whatever -march says
#include <immintrin.h>
#endif

#include "bench/bench.h"
#include "bench/timing.h"
#include "core/cpu_allocator.h"
#include "core/parallel.h"
#include "ops/cpu/gemm.h"

namespace mg::bench {

// The best of 3 trials of chains(seed) run on every thread at once (seed: the thread number + 1; it
// returns a sum of its results, which keeps the loop), in GFLOP/s for `flop` per thread.
template <class F>
double best_gflops(int threads, double flop, F&& chains) {
  double best = 0;
  for (int trial = 0; trial < 3; ++trial) {
    auto t0 = Clock::now();
    float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    sink += chains(omp_get_thread_num() + 1);
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (sink == 42.0f) mg::print("");  // keep the loop
    best = std::max(best, double(threads) * flop / s / 1e9);
  }
  return best;
}

namespace {

// The fp32 lanes of the widest vector the build targets. x * m + a on it compiles to one fused
// multiply-add where the target has FMA (GCC contracts it: -ffp-contract=fast is the GNU default).
#if defined(__AVX512F__)
constexpr int kFmaLanes = 16;
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int kFmaLanes = 8;
#else
constexpr int kFmaLanes = 4;
#endif
typedef float FmaVec __attribute__((vector_size(4 * kFmaLanes)));

}  // namespace

// FLOP/s of independent fp32 FMA chains on every thread: the machine's practical peak.
double measure_peak_gflops(int threads) {
  constexpr int64_t iters = 20'000'000;
  return best_gflops(threads, double(iters) * 12 * kFmaLanes * 2, [](int seed) {
    FmaVec acc[12];
    const FmaVec m = FmaVec{} + 0.9999f, a = FmaVec{} + 1e-7f;
    for (auto& x : acc) x = FmaVec{} + float(seed);
    for (int64_t i = 0; i < iters; ++i)
#pragma GCC unroll 12  // keep the 12 chains in registers (without it GCC spills them: a third of the peak)
      for (auto& x : acc) x = x * m + a;
    float sink = 0;
    for (auto& x : acc)
      for (int k = 0; k < kFmaLanes; ++k) sink += x[k];
    return sink;
  });
}

#if defined(__x86_64__) && defined(__GNUC__)
namespace {
// One thread's VDPBF16PS chains (12 independent accumulators, 32 multiply-adds per instruction):
// compiled for AVX512-BF16 whatever -march says, run only where the CPU has it.
__attribute__((target("avx512f,avx512bf16"))) float dpbf16_chains(int64_t iters, int seed) {
  __m512 acc[12];
  for (auto& x : acc) x = _mm512_set1_ps(float(seed));
  const __m512i a = _mm512_set1_epi32(0x3f803f80), b = _mm512_set1_epi32(0x33d633d6);  // (1, 1) x (1e-7, 1e-7)
  for (int64_t i = 0; i < iters; ++i)
#pragma GCC unroll 12
    for (auto& x : acc) x = _mm512_dpbf16_ps(x, (__m512bh)a, (__m512bh)b);
  float sink = 0;
  alignas(64) float t[16];
  for (auto& x : acc) {
    _mm512_store_ps(t, x);
    for (float v : t) sink += v;
  }
  return sink;
}
}  // namespace
#endif

double measure_bf16_peak_gflops(int threads) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (!cpu::cpu_has_avx512_bf16()) return 0;
  constexpr int64_t iters = 10'000'000;
  return best_gflops(threads, double(iters) * 12 * 32 * 2, [](int seed) { return dpbf16_chains(iters, seed); });
#else
  return 0;
#endif
}

double measure_memory_bandwidth_gbs(int threads) {
  const size_t bytes = size_t(256) << 20;  // per buffer: far beyond any cache
  char* src = static_cast<char*>(cpu_alloc(bytes, "bench"));
  char* dst = static_cast<char*>(cpu_alloc(bytes, "bench"));
  // One contiguous range per thread: glibc's memcpy streams a copy this large past the caches
  // (non-temporal stores, no read for ownership) but not one of a few tens of MiB, so cutting the copy
  // into parallel_for's smaller pieces would measure a different copy (about half the rate here).
  const int64_t blocks = std::max(1, threads), block = bytes / blocks;
  auto copy = [&] {
    parallel_for(blocks, block,
                 [&](int64_t lo, int64_t hi) { std::memcpy(dst + lo * block, src + lo * block, (hi - lo) * block); });
  };
  parallel_for(blocks, block, [&](int64_t lo, int64_t hi) {  // fault the pages in
    std::memset(src + lo * block, 1, (hi - lo) * block);
    std::memset(dst + lo * block, 0, (hi - lo) * block);
  });
  double best = 0;
  for (int trial = 0; trial < 4; ++trial) {
    auto t0 = Clock::now();
    copy();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, 2.0 * bytes / s / 1e9);  // bytes read + bytes written, as STREAM counts a copy
  }
  cpu_free(src, bytes);
  cpu_free(dst, bytes);
  return best;
}

const char* openblas_coretype() {
#if defined(__x86_64__)
  const bool skylakex = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  return skylakex ? "SkylakeX" : nullptr;
#else
  return nullptr;
#endif
}

}  // namespace mg::bench
