// The mixed-precision gemm (gemm.h, "Mixed precision"): C = bf16(op(A)) bf16(op(B)) + beta C with float32 sums.
//
// A product of two bfloat16 values (8 significant bits each) has at most 16 significant bits, so it is exact
// in float32: both ways below add the same exact products in float32; they differ only in the order of the
// additions (and dpbf16 reads inputs below the smallest normal float, 1.2e-38, as zeros, as its instructions
// do).
//
// fp32 way (gemm_rounded, gemm.cpp): the float32 gemm with op(A) and op(B) rounded as its packing copies
// them, so no pass beyond the float32 gemm's own. amx way: gemm_amx.cpp.
//
// dpbf16 way (x86-64 with AVX512-BF16, compiled for it whatever -march says and run only when the CPU has
// it): the gemm.cpp loop nest (jc, pc, ic, jr, ir; the same MC / NC blocking and thread split, and KC
// twice as long, 512 values in 256 pairs) on operands packed as bf16 pairs. A 32-bit lane holds
// (x[k], x[k + 1]) for an even k, so one VDPBF16PS adds a[i][k] b[k][j] + a[i][k + 1] b[k + 1][j]
// to each of 16 float accumulators:
//   A micro-panel: pair (i, kp) = (a(i, 2kp), a(i, 2kp + 1))             MR rows, ceil(kc / 2) pairs
//   B micro-panel: Bp[kp * NR + j] = (b(2kp, j), b(2kp + 1, j))          NR columns
// The packing rounds 32 floats at a time with VCVTNE2PS2BF16 and stores each operand in the order it reads
// it: a row-major A by rows of pairs, a transposed A (dW = dY^T X) by rows of its (K, M) storage, two rows
// interleaved into pairs; B likewise (pack_a_rows, pack_a_pairs, pack_b). The micro-kernel broadcasts A's
// pairs from either layout. An odd K is padded with a zero pair member; edge tiles run the full kernel on
// a local tile, as in gemm.cpp, so an element's bits never depend on where the tiles or the threads'
// ranges fall.
#include <cstdlib>
#include <cstring>
#include <string_view>

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
constexpr int64_t kKC = 512, kMC = kMR * 24, kNC = kNR * 128;  // KC: 256 pairs, a B panel of 32 KiB

// Rounding to bf16 is VCVTNE2PS2BF16: nearest, ties to even, a NaN kept a quiet NaN (core/bf16.h's
// round_bf16), except that a float32 subnormal becomes a zero of its sign. round_bf16 gives a bf16
// subnormal there, which VDPBF16PS reads as a zero anyway, or for the largest float32 subnormals (from
// 2^-126 - 2^-134) the smallest normal, 2^-126: those alone differ, read as zeros (a test checks it).

// The mask of the first n of 16 lanes (none for n <= 0, all for n >= 16).
inline __mmask16 first(int64_t n) { return n <= 0 ? 0 : n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1); }

// 32 floats (lo: the first 16, hi: the next 16) as 16 bf16 pairs, lane q = (x[2q], x[2q + 1]).
inline __m512i pairs_along(__m512 lo, __m512 hi) { return (__m512i)_mm512_cvtne2ps_pbh(hi, lo); }

// Two rows of 16 floats as 16 bf16 pairs, lane q = (lo[q], hi[q]).
inline __m512i pairs_across(__m512 lo, __m512 hi) {
  const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22,
                                              6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(interleave, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}

// A row of kc floats as ceil(kc / 2) pairs (x[2q], x[2q + 1]) at dst, a zero member past an odd kc.
void pairs_along_row(const float* src, int64_t kc, uint32_t* dst) {
  for (int64_t k = 0; k < kc; k += 32) {
    const int64_t left = kc - k;
    const __m512 lo = _mm512_maskz_loadu_ps(first(left), src + k);
    const __m512 hi = _mm512_maskz_loadu_ps(first(left - 16), src + k + 16);
    _mm512_mask_storeu_epi32(dst + k / 2, first((left + 1) / 2), pairs_along(lo, hi));
  }
}

// Two rows as width pairs (lo[j], hi[j]) at dst: zeros from j = n on, and hi members of zero where hi is null
// (past an odd kc). width is a multiple of 16 or the last pairs are masked off.
void pairs_across_rows(const float* lo, const float* hi, int64_t n, int64_t width, uint32_t* dst) {
  for (int64_t j = 0; j < width; j += 16) {
    const __mmask16 m = first(n - j);
    const __m512 l = _mm512_maskz_loadu_ps(m, lo + j);
    const __m512 h = hi ? _mm512_maskz_loadu_ps(m, hi + j) : _mm512_setzero_ps();
    _mm512_mask_storeu_epi32(dst + j, first(width - j), pairs_across(l, h));
  }
}

// Packed A, two layouts; element (i, p) of a panel is the pair (op(A)(i, 2p), op(A)(i, 2p + 1)):
//   by rows (A stored by rows, pairs along each row): panel r at dst + r MR np, element (i, p) at [i np + p];
//   by pairs (A stored transposed, pairs across two rows): the whole block at dst, element (i, p) of the
//     row block's i-th row at [p ldp + i], ldp = mc rounded up to MR; panel r starts at dst + r MR.
// Each is the order in which its source is read; zeros past mc and kc.
inline int64_t a_block_stride(int64_t mc) { return (mc + kMR - 1) / kMR * kMR; }

void pack_a_rows(const float* A, int64_t lda, int64_t i0, int64_t k0, int64_t mc, int64_t kc, uint32_t* dst) {
  const int64_t np = (kc + 1) / 2, rows = a_block_stride(mc);
  for (int64_t i = 0; i < rows; ++i) {
    if (i < mc)
      pairs_along_row(A + (i0 + i) * lda + k0, kc, dst + i * np);
    else
      std::memset(dst + i * np, 0, size_t(np) * 4);
  }
}

void pack_a_pairs(const float* A, int64_t lda, int64_t i0, int64_t k0, int64_t mc, int64_t kc, uint32_t* dst) {
  const int64_t np = (kc + 1) / 2, ldp = a_block_stride(mc);
  for (int64_t p = 0; p < np; ++p) {
    const float* lo_row = A + (k0 + 2 * p) * lda + i0;
    pairs_across_rows(lo_row, 2 * p + 1 < kc ? lo_row + lda : nullptr, mc, ldp, dst + p * ldp);
  }
}

// op(B)[k0:k0+kc, j0:j0+nc] into ceil(nc / NR) panels of ceil(kc / 2) pairs x NR columns (zeros past the edges):
// Bp[p * NR + j] = (op(B)(2p, j), op(B)(2p + 1, j)).
void pack_b(bool trans, const float* B, int64_t ldb, int64_t k0, int64_t j0, int64_t kc, int64_t nc, uint32_t* dst) {
  const int64_t np = (kc + 1) / 2;
  alignas(64) uint32_t col[kKC / 2];
  for (int64_t jp = 0; jp < nc; jp += kNR, dst += kNR * np) {
    const int64_t nr = nc - jp < kNR ? nc - jp : kNR;
    if (!trans) {  // op(B)(k, j) = B[k * ldb + j]: two rows of B give a row of pairs
      for (int64_t p = 0; p < np; ++p) {
        const float* lo_row = B + (k0 + 2 * p) * ldb + j0 + jp;
        pairs_across_rows(lo_row, 2 * p + 1 < kc ? lo_row + ldb : nullptr, nr, kNR, dst + p * kNR);
      }
      continue;
    }
    // op(B)(k, j) = B[j * ldb + k] (a weight in x W^T): each column's pairs lie along its row of B, then go
    // to their rows of the panel one by one. B is the operand every row block of C reuses.
    for (int64_t j = 0; j < kNR; ++j) {
      if (j < nr) pairs_along_row(B + (j0 + jp + j) * ldb + k0, kc, col);
      for (int64_t p = 0; p < np; ++p) dst[p * kNR + j] = j < nr ? col[p] : 0;
    }
  }
}

enum class Store { overwrite, scale, accumulate };

// C[0:MR, 0:NV*16] <- an A panel times a B panel over np pairs (the B panel keeps stride NR when NV = 1).
// A's pair (i, p) is Ap[i * np + p] (kRows: packed by rows) or Ap[p * lda + i] (packed by pairs).
template <int NV, bool kRows>
void micro_kernel(int64_t np, const uint32_t* __restrict Ap, int64_t lda, const uint32_t* __restrict Bp,
                  float* __restrict C, int64_t ldc, Store mode, float beta) {
  __m512 acc[kMR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < kMR; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  const uint32_t* a_row[kMR];
#pragma GCC unroll 8
  for (int i = 0; i < kMR; ++i) a_row[i] = Ap + (kRows ? i * np : i);
  for (int64_t p = 0; p < np; ++p) {
    __m512i b[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) b[v] = _mm512_loadu_si512(Bp + v * 16);
#pragma GCC unroll 8
    for (int i = 0; i < kMR; ++i) {
      const __m512i a = _mm512_set1_epi32(int(kRows ? a_row[i][p] : a_row[i][p * lda]));
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], (__m512bh)a, (__m512bh)b[v]);
    }
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

template <int NV>
void micro_kernel(bool rows, int64_t np, const uint32_t* Ap, int64_t lda, const uint32_t* Bp, float* C, int64_t ldc,
                  Store mode, float beta) {
  if (rows)
    micro_kernel<NV, true>(np, Ap, lda, Bp, C, ldc, mode, beta);
  else
    micro_kernel<NV, false>(np, Ap, lda, Bp, C, ldc, mode, beta);
}

// The loop nest for one (M, N) slice of C, on one thread.
void serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
            int64_t ldb, float beta, float* C, int64_t ldc) {
  const int64_t kc_max = K < kKC ? K : kKC, np_max = (kc_max + 1) / 2;
  const int64_t n_round = (N + kNR - 1) / kNR * kNR, m_round = (M + kMR - 1) / kMR * kMR;
  const int64_t nc_max = n_round < kNC ? n_round : kNC, mc_max = m_round < kMC ? m_round : kMC;
  uint32_t* bp = thread_scratch<uint32_t>(0, size_t(np_max * nc_max));
  uint32_t* ap = thread_scratch<uint32_t>(1, size_t(np_max * mc_max));
  const bool rows = !trans_a;
  alignas(64) float tile[kMR * kNR];
  for (int64_t jc = 0; jc < N; jc += kNC) {
    const int64_t nc = N - jc < kNC ? N - jc : kNC;
    for (int64_t pc = 0; pc < K; pc += kKC) {
      const int64_t kc = K - pc < kKC ? K - pc : kKC, np = (kc + 1) / 2;
      pack_b(trans_b, B, ldb, pc, jc, kc, nc, bp);
      const Store mode = pc > 0 ? Store::accumulate : beta == 0.0f ? Store::overwrite : Store::scale;
      for (int64_t ic = 0; ic < M; ic += kMC) {
        const int64_t mc = M - ic < kMC ? M - ic : kMC, ldp = a_block_stride(mc);
        if (rows)
          pack_a_rows(A, lda, ic, pc, mc, kc, ap);
        else
          pack_a_pairs(A, lda, ic, pc, mc, kc, ap);
        for (int64_t jr = 0; jr < nc; jr += kNR) {
          const int64_t nr = nc - jr < kNR ? nc - jr : kNR;
          const uint32_t* b_panel = bp + (jr / kNR) * kNR * np;
          for (int64_t ir = 0; ir < mc; ir += kMR) {
            const int64_t mr = mc - ir < kMR ? mc - ir : kMR;
            const uint32_t* a_panel = ap + (rows ? ir * np : ir);
            float* c = C + (ic + ir) * ldc + jc + jr;
            if (mr == kMR && nr == kNR) {
              micro_kernel<2>(rows, np, a_panel, ldp, b_panel, c, ldc, mode, beta);
              continue;
            }
            if (mr == kMR && nr == 16) {  // a last panel of exactly 16 columns (N = 16, 48, ...): straight into C
              micro_kernel<1>(rows, np, a_panel, ldp, b_panel, c, ldc, mode, beta);
              continue;
            }
            // Edge: the same kernel on a local tile (holding C's values when it must read them).
            if (mode != Store::overwrite)
              for (int64_t i = 0; i < mr; ++i)
                for (int64_t j = 0; j < nr; ++j) tile[i * kNR + j] = c[i * ldc + j];
            if (nr <= 16)
              micro_kernel<1>(rows, np, a_panel, ldp, b_panel, tile, kNR, mode, beta);
            else
              micro_kernel<2>(rows, np, a_panel, ldp, b_panel, tile, kNR, mode, beta);
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
