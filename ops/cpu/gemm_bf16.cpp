// The mixed-precision gemm (gemm.h, "Mixed precision"): C = bf16(op(A)) bf16(op(B)) + beta C with float32 sums.
//
// A product of two bfloat16 values (8 significant bits each) has at most 16 significant bits, so it is exact
// in float32: both ways below add the same exact products in float32; they differ only in the order of the
// additions (and dpbf16 flushes bf16 subnormals, below 1.2e-38, to zero, as the instruction does).
//
// fp32 way (gemm_rounded, gemm.cpp): the float32 gemm with op(A) and op(B) rounded as its packing copies
// them, so no pass beyond the float32 gemm's own. amx way: gemm_amx.cpp.
//
// dpbf16 way (x86-64 with AVX512-BF16, compiled for it whatever -march says and run only when the CPU has
// it): the gemm.cpp loop nest (jc, pc, ic, jr, ir; the same KC / MC / NC blocking and thread split) on
// operands packed as bf16 pairs. A 32-bit lane holds (x[k], x[k + 1]) for an even k, so one
// VDPBF16PS adds a[i][k] b[k][j] + a[i][k + 1] b[k + 1][j] to each of 16 float accumulators:
//   A micro-panel: Ap[kp * MR + i] = (a(i, 2kp), a(i, 2kp + 1))          MR rows, ceil(kc / 2) pairs
//   B micro-panel: Bp[kp * NR + j] = (b(2kp, j), b(2kp + 1, j))          NR columns
// An odd K is padded with a zero pair member; edge tiles run the full kernel on a local tile, as in
// gemm.cpp, so an element's bits never depend on where the tiles or the threads' ranges fall.
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>

#include "core/bf16.h"
#include "core/error.h"
#include "core/parallel.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/scratch.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define MG_BF16_KERNEL 1
#endif

namespace mg::cpu {

namespace {

#if MG_BF16_KERNEL
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")

constexpr int kMR = 6, kNR = 32;                               // a 6 x 32 tile: 12 accumulators of 16 floats
constexpr int64_t kKC = 256, kMC = kMR * 24, kNC = kNR * 128;  // as gemm.cpp's float blocking

inline uint32_t pair(float lo, float hi) { return uint32_t(bf16_bits(lo)) | uint32_t(bf16_bits(hi)) << 16; }

// op(A)[i0:i0+mc, k0:k0+kc] into ceil(mc / MR) panels of MR rows x ceil(kc / 2) pairs (zeros past the edges).
void pack_a(bool trans, const float* A, int64_t lda, int64_t i0, int64_t k0, int64_t mc, int64_t kc, uint32_t* dst) {
  const int64_t np = (kc + 1) / 2;
  for (int64_t ip = 0; ip < mc; ip += kMR, dst += kMR * np) {
    const int64_t mr = mc - ip < kMR ? mc - ip : kMR;
    for (int64_t i = 0; i < kMR; ++i) {
      if (i >= mr) {
        for (int64_t p = 0; p < np; ++p) dst[p * kMR + i] = 0;
        continue;
      }
      const int64_t row = i0 + ip + i;
      for (int64_t p = 0; p < np; ++p) {
        const int64_t k = k0 + 2 * p;
        const float lo = trans ? A[k * lda + row] : A[row * lda + k];
        const float hi = 2 * p + 1 < kc ? (trans ? A[(k + 1) * lda + row] : A[row * lda + k + 1]) : 0.0f;
        dst[p * kMR + i] = pair(lo, hi);
      }
    }
  }
}

// op(B)[k0:k0+kc, j0:j0+nc] into ceil(nc / NR) panels of ceil(kc / 2) pairs x NR columns.
void pack_b(bool trans, const float* B, int64_t ldb, int64_t k0, int64_t j0, int64_t kc, int64_t nc, uint32_t* dst) {
  const int64_t np = (kc + 1) / 2;
  for (int64_t jp = 0; jp < nc; jp += kNR, dst += kNR * np) {
    const int64_t nr = nc - jp < kNR ? nc - jp : kNR;
    for (int64_t p = 0; p < np; ++p) {
      const int64_t k = k0 + 2 * p;
      const bool has_hi = 2 * p + 1 < kc;
      uint32_t* d = dst + p * kNR;
      for (int64_t j = 0; j < nr; ++j) {
        const int64_t col = j0 + jp + j;
        const float lo = trans ? B[col * ldb + k] : B[k * ldb + col];
        const float hi = has_hi ? (trans ? B[col * ldb + k + 1] : B[(k + 1) * ldb + col]) : 0.0f;
        d[j] = pair(lo, hi);
      }
      for (int64_t j = nr; j < kNR; ++j) d[j] = 0;
    }
  }
}

enum class Store { overwrite, scale, accumulate };

// C[0:MR, 0:NV*16] <- an A panel times a B panel over np pairs (the B panel keeps stride NR when NV = 1).
template <int NV>
void micro_kernel(int64_t np, const uint32_t* __restrict Ap, const uint32_t* __restrict Bp, float* __restrict C,
                  int64_t ldc, Store mode, float beta) {
  __m512 acc[kMR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < kMR; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int64_t p = 0; p < np; ++p) {
    __m512i b[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) b[v] = _mm512_loadu_si512(Bp + v * 16);
#pragma GCC unroll 8
    for (int i = 0; i < kMR; ++i) {
      const __m512i a = _mm512_set1_epi32(int(Ap[i]));
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], (__m512bh)a, (__m512bh)b[v]);
    }
    Ap += kMR;
    Bp += kNR;
  }
  const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 8
  for (int i = 0; i < kMR; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      float* c = C + i * ldc + v * 16;
      if (mode == Store::overwrite)
        _mm512_storeu_ps(c, acc[i][v]);
      else if (mode == Store::scale)
        _mm512_storeu_ps(c, _mm512_add_ps(acc[i][v], _mm512_mul_ps(vb, _mm512_loadu_ps(c))));
      else
        _mm512_storeu_ps(c, _mm512_add_ps(_mm512_loadu_ps(c), acc[i][v]));
    }
}

// The loop nest for one (M, N) slice of C, on one thread.
void serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
            int64_t ldb, float beta, float* C, int64_t ldc) {
  const int64_t kc_max = K < kKC ? K : kKC, np_max = (kc_max + 1) / 2;
  const int64_t n_round = (N + kNR - 1) / kNR * kNR, m_round = (M + kMR - 1) / kMR * kMR;
  const int64_t nc_max = n_round < kNC ? n_round : kNC, mc_max = m_round < kMC ? m_round : kMC;
  uint32_t* bp = thread_scratch<uint32_t>(0, size_t(np_max * nc_max));
  uint32_t* ap = thread_scratch<uint32_t>(1, size_t(np_max * mc_max));
  alignas(64) float tile[kMR * kNR];
  for (int64_t jc = 0; jc < N; jc += kNC) {
    const int64_t nc = N - jc < kNC ? N - jc : kNC;
    for (int64_t pc = 0; pc < K; pc += kKC) {
      const int64_t kc = K - pc < kKC ? K - pc : kKC, np = (kc + 1) / 2;
      pack_b(trans_b, B, ldb, pc, jc, kc, nc, bp);
      const Store mode = pc > 0 ? Store::accumulate : beta == 0.0f ? Store::overwrite : Store::scale;
      for (int64_t ic = 0; ic < M; ic += kMC) {
        const int64_t mc = M - ic < kMC ? M - ic : kMC;
        pack_a(trans_a, A, lda, ic, pc, mc, kc, ap);
        for (int64_t jr = 0; jr < nc; jr += kNR) {
          const int64_t nr = nc - jr < kNR ? nc - jr : kNR;
          const uint32_t* b_panel = bp + (jr / kNR) * kNR * np;
          for (int64_t ir = 0; ir < mc; ir += kMR) {
            const int64_t mr = mc - ir < kMR ? mc - ir : kMR;
            const uint32_t* a_panel = ap + (ir / kMR) * kMR * np;
            float* c = C + (ic + ir) * ldc + jc + jr;
            if (mr == kMR && nr == kNR) {
              micro_kernel<2>(np, a_panel, b_panel, c, ldc, mode, beta);
              continue;
            }
            // Edge: the same kernel on a local tile (holding C's values when it must read them).
            if (mode != Store::overwrite)
              for (int64_t i = 0; i < mr; ++i)
                for (int64_t j = 0; j < nr; ++j) tile[i * kNR + j] = c[i * ldc + j];
            if (nr <= 16)
              micro_kernel<1>(np, a_panel, b_panel, tile, kNR, mode, beta);
            else
              micro_kernel<2>(np, a_panel, b_panel, tile, kNR, mode, beta);
            for (int64_t i = 0; i < mr; ++i)
              for (int64_t j = 0; j < nr; ++j) c[i * ldc + j] = tile[i * kNR + j];
          }
        }
      }
    }
  }
}

#pragma GCC pop_options

// Threads over whole MR row panels or NR column panels of C, as gemm_packed; K is never split.
void gemm_bf16_dpbf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                      const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const int64_t m_panels = (M + kMR - 1) / kMR, n_panels = (N + kNR - 1) / kNR;
  if (m_panels >= n_panels) {
    parallel_for(m_panels, kMR * N * K, [&](int64_t b, int64_t e) {
      const int64_t i0 = b * kMR, i1 = e * kMR < M ? e * kMR : M;
      const float* a = trans_a ? A + i0 : A + i0 * lda;
      serial(trans_a, trans_b, i1 - i0, N, K, a, lda, B, ldb, beta, C + i0 * ldc, ldc);
    });
  } else {
    parallel_for(n_panels, kNR * M * K, [&](int64_t b, int64_t e) {
      const int64_t j0 = b * kNR, j1 = e * kNR < N ? e * kNR : N;
      const float* bb = trans_b ? B + j0 * ldb : B + j0;
      serial(trans_a, trans_b, M, j1 - j0, K, A, lda, bb, ldb, beta, C + j0, ldc);
    });
  }
}
#endif  // MG_BF16_KERNEL

Bf16Gemm automatic_choice() {
  if (const char* env = std::getenv("MG_BF16_GEMM")) {
    const std::string_view v(env);
    if (v == "fp32") return Bf16Gemm::fp32;
    if (v == "amx-emu") return Bf16Gemm::amx_emulated;
    if (v == "amx") {
      MG_CHECK(cpu_has_amx(),
               "[matmul] MG_BF16_GEMM=amx, but this CPU has no AMX-BF16 / AMX-TILE (or Linux refused "
               "the tile data); use amx-emu, fp32 or auto");
      return Bf16Gemm::amx;
    }
    if (v == "dpbf16") {
      MG_CHECK(cpu_has_avx512_bf16(),
               "[matmul] MG_BF16_GEMM=dpbf16, but this CPU (or this build) has no AVX512-BF16; use fp32 or auto");
      return Bf16Gemm::dpbf16;
    }
    MG_CHECK(v == "auto" || v.empty(), "[matmul] MG_BF16_GEMM={} is not one of auto, amx, amx-emu, dpbf16, fp32", v);
  }
  if (cpu_has_amx()) return Bf16Gemm::amx;
#if MG_BF16_KERNEL
  // Zen 4 and later run VDPBF16PS at the float FMA's instruction rate (twice its multiply-adds); the
  // Sapphire Rapids Xeon measured here at half that rate, so below the float kernel (docs/perf.md).
  if (cpu_has_avx512_bf16() && __builtin_cpu_is("amd")) return Bf16Gemm::dpbf16;
#endif
  return Bf16Gemm::fp32;
}

}  // namespace

bool cpu_has_avx512_bf16() {
#if MG_BF16_KERNEL
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
  }();
  return has;
#else
  return false;
#endif
}

Bf16Gemm bf16_gemm_choice() {
  static const Bf16Gemm choice = automatic_choice();
  return choice;
}

const char* bf16_gemm_name(Bf16Gemm way) {
  switch (way) {
    case Bf16Gemm::automatic:
      return bf16_gemm_name(bf16_gemm_choice());
    case Bf16Gemm::amx:
      return "amx";
    case Bf16Gemm::amx_emulated:
      return "amx-emulated";
    case Bf16Gemm::dpbf16:
      return "avx512-bf16";
    case Bf16Gemm::fp32:
      return "fp32-on-rounded";
  }
  return "?";
}

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
               int64_t ldb, float beta, float* C, int64_t ldc, Bf16Gemm way) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {  // no products: C = beta C (or zeros), as the float gemm does
    gemm<float>(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  if (way == Bf16Gemm::automatic) way = bf16_gemm_choice();
  if (way == Bf16Gemm::amx || way == Bf16Gemm::amx_emulated)
    return gemm_bf16_amx(way == Bf16Gemm::amx_emulated ? AmxTiles::emulated : AmxTiles::real, trans_a, trans_b, M, N, K,
                         A, lda, B, ldb, beta, C, ldc);
#if MG_BF16_KERNEL
  if (way == Bf16Gemm::dpbf16) {
    MG_CHECK(cpu_has_avx512_bf16(), "[matmul] the dpbf16 gemm needs a CPU with AVX512-BF16");
    gemm_bf16_dpbf16(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
    return;
  }
#else
  MG_CHECK(way != Bf16Gemm::dpbf16, "[matmul] the dpbf16 gemm is only built for x86-64");
#endif
  gemm_rounded(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace mg::cpu
