// Packed, register-blocked GEMM in the BLIS / GotoBLAS structure. No BLAS: this is the library's matmul.
//
//   C (M, N) = op(A) (M, K) · op(B) (K, N) + beta · C          (row-major C, any ldc >= N)
//
// Loop nest, outermost first (one thread runs all of it on its own slice of C, see "Threads"):
//
//   for jc in N step NC:                    B block (KC x NC) lives in L3 / L2
//     for pc in K step KC:                  pack op(B)[pc:pc+KC, jc:jc+NC] into KC x NR micro-panels
//       for ic in M step MC:                A block (MC x KC) lives in L2
//         pack op(A)[ic:ic+MC, pc:pc+KC] into MR x KC micro-panels
//         for jr in NC step NR:             one B micro-panel (KC x NR) stays in L1 for the whole ir loop
//           for ir in MC step MR:
//             micro-kernel: an MR x NR tile of C held in vector registers, KC rank-1 updates
//             (per k: NR/W vector loads of B, MR broadcasts of A, MR*NR/W FMAs; C is touched once per KC)
//
// Packed layouts: an A micro-panel is Ap[k * MR + i] (the MR values of column k contiguous), a B
// micro-panel is Bp[k * NR + j] (the NR values of row k contiguous), both zero-padded to full MR / NR,
// so the kernel never branches on the edge. The packing routines read op(A) / op(B) through their
// transposition flag and leading dimension (0 for broadcast rows), so the caller never copies an operand.
// When C has at most MG_GEMM_DIRECT_PANELS NR-wide column panels (x_proj, dt_proj with N = 16..64), a
// packed A block would be used once or twice, so the kernel reads op(A) in place (full MR-row panels).
// The last columns of C, when they fit one vector (N = 16, 48 in float), use a one-vector kernel.
//
// Edge tiles (fewer than MR rows or NR columns of C left) run the same kernel on a local MR x NR tile
// (a copy of the C edge when it must be read) and copy the valid part back: the same arithmetic as a
// full tile, so an element's value never depends on where the tiles fall.
//
// beta: applied when the first K block is written. beta == 0 overwrites C (never reads it, so NaN or
// garbage in C is ignored); otherwise C = acc + beta * C; later K blocks do C += acc.
//
// Vector width (set at compile time): one register of the target, ops/cpu/vec.h's Reg<T>: AVX-512
// (W = 16 floats / 8 doubles), AVX (8 / 4), else 16 bytes (SSE2 on plain x86-64, NEON elsewhere); its
// fma rounds once where the target has FMA. The tile is MR x (NV * W).
//
// Threads: C is split into contiguous ranges of whole MR row panels (or NR column panels when C has more
// of those), parallel_for's pieces (a few per thread). K is never split and the KC blocking is fixed, so
// every element of C is summed over K in the same order whatever the thread count: results are
// bit-identical for 1 or many threads.
#include "ops/cpu/gemm.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>

#include "core/bf16.h"
#include "core/parallel.h"
#include "ops/cpu/bf16_vec.h"
#include "ops/cpu/scratch.h"
#include "ops/cpu/vec.h"

namespace mg::cpu {

namespace {

// The vector of the kernels: Reg<T>, one register of the target (ops/cpu/vec.h), W = kRegLanes<T> lanes.
// The tile is MR x (NV * W): 12 accumulators (of 32 registers with AVX-512, else 16).
constexpr int kMRf = 6, kNVf = 2;

// Tile and cache-block sizes per type. MC is a multiple of MR, NC of NR.
#ifndef MG_GEMM_KC
#define MG_GEMM_KC 256
#endif
#ifndef MG_GEMM_MC_PANELS
#define MG_GEMM_MC_PANELS 24
#endif
#ifndef MG_GEMM_NC_PANELS
#define MG_GEMM_NC_PANELS 128
#endif
template <class T>
struct Blocking {
  static constexpr int MR = kMRf, NV = kNVf, NR = NV * kRegLanes<T>;
  static constexpr int64_t KC = MG_GEMM_KC;              // KC x NR of B: 32 KiB in float with AVX-512 (L1)
  static constexpr int64_t MC = MR * MG_GEMM_MC_PANELS;  // MC x KC of A: 144 KiB in float (L2)
  static constexpr int64_t NC = NR * MG_GEMM_NC_PANELS;  // KC x NC of B: 4 MiB in float (L3)
};

// How the micro-kernel writes its tile: C = acc (first K block, beta 0), C = acc + beta C (first
// block, beta != 0), C += acc (later blocks).
enum class Store { overwrite, scale, accumulate };

// acc[i][v] = sum over k < kc of A(i, k) * row k of B, lanes v*W .. (v+1)*W, in k order with one fma per
// step: A(i, k) is A[i * rsa + k * csa], row k of B starts at B + k * ldb. The register-blocked core of
// the packed micro-kernel (MR x NV) and of the small-M axpy blocks.
template <class T, int MR, int NV>
[[gnu::always_inline]] inline void rank1_updates(int64_t kc, const T* __restrict A, int64_t rsa, int64_t csa,
                                                 const T* __restrict B, int64_t ldb, Reg<T> (&acc)[MR][NV]) {
  using V = Reg<T>;
  constexpr int W = kRegLanes<T>;
  const T* a_row[MR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) a_row[i] = A + i * rsa;
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[i][v] = V{};
  for (int64_t k = 0; k < kc; ++k) {
    V b[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) b[v] = loadu<T, V>(B + v * W);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const V a = splat<V>(a_row[i][k * csa]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] = vfma(a, b[v], acc[i][v]);
    }
    B += ldb;
  }
}

// C[0:MR, 0:NV*W] (row stride ldc) <- the product of an MR x kc panel of A and one packed B micro-panel.
// A element (i, k) is Ap[i * rsa + k * csa]: a packed panel (rsa 1, csa MR) or op(A) read in place.
// NV < the full Blocking::NV is the narrow kernel for the last columns of C (the B panel keeps stride NR).
template <class T, int NV>
inline void micro_kernel(int64_t kc, const T* __restrict Ap, int64_t rsa, int64_t csa, const T* __restrict Bp,
                         T* __restrict C, int64_t ldc, Store mode, T beta) {
  using V = Reg<T>;
  constexpr int MR = Blocking<T>::MR, W = kRegLanes<T>, NR = Blocking<T>::NR;
  V acc[MR][NV];
  rank1_updates<T, MR, NV>(kc, Ap, rsa, csa, Bp, NR, acc);
  const V vb = splat<V>(beta);
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      T* c = C + i * ldc + v * W;
      if (mode == Store::overwrite)
        storeu(c, acc[i][v]);
      else if (mode == Store::scale)
        storeu(c, acc[i][v] + vb * loadu<T, V>(c));
      else
        storeu(c, loadu<T, V>(c) + acc[i][v]);
    }
}

// A value as packed: itself, or rounded to bf16 (Round: the bf16 gemm's fp32 way, gemm_rounded).
template <class T, bool Round>
inline T packed(T x) {
  if constexpr (Round) return round_bf16(x);
  return x;
}

// dst[0:n] = src[0:n] rounded to bf16, eight values at a time.
inline void round_span(const float* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    Bits8 u;
    std::memcpy(&u, src + i, sizeof u);
    u = round_bits(u);
    std::memcpy(dst + i, &u, sizeof u);
  }
  for (; i < n; ++i) dst[i] = round_bf16(src[i]);
}
inline void round_span(float* p, int64_t n) { round_span(p, p, n); }

#if defined(__AVX__)
// Eight rows of 8 floats (row i at rows[i] + k, read for i < Distinct) transposed in registers:
// c[e] = column k + e, rows 0..7, rounded to bf16 when Round (round_span's operations, on the rows).
template <bool Round, int Distinct = 8>
inline void transpose8(const float* const (&rows)[8], int64_t k, __m256 (&c)[8]) {
  __m256 r[8], t[8], s[8];
  for (int i = 0; i < Distinct; ++i) {  // rows from Distinct on repeat the last distinct one
    r[i] = _mm256_loadu_ps(rows[i] + k);
    if constexpr (Round) r[i] = (__m256)round_bits((Bits8)r[i]);
  }
  for (int i = Distinct; i < 8; ++i) r[i] = r[Distinct - 1];
  for (int i = 0; i < 8; i += 2) {  // per 128-bit half: (i, q) (i + 1, q) for two columns q
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int h = 0; h < 8; h += 4) {  // s[h + e]: column e | column e + 4 of rows h .. h + 3
    s[h + 0] = _mm256_shuffle_ps(t[h], t[h + 2], _MM_SHUFFLE(1, 0, 1, 0));
    s[h + 1] = _mm256_shuffle_ps(t[h], t[h + 2], _MM_SHUFFLE(3, 2, 3, 2));
    s[h + 2] = _mm256_shuffle_ps(t[h + 1], t[h + 3], _MM_SHUFFLE(1, 0, 1, 0));
    s[h + 3] = _mm256_shuffle_ps(t[h + 1], t[h + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int e = 0; e < 4; ++e) {
    c[e] = _mm256_permute2f128_ps(s[e], s[4 + e], 0x20);
    c[e + 4] = _mm256_permute2f128_ps(s[e], s[4 + e], 0x31);
  }
}
#endif

// Packing by 8 x 8 transposes in registers (AVX, float), for the two layouts whose scalar loops would
// write with a stride: the same values as those loops (rounded as packed<T, Round> rounds). Each returns
// how many of the kc columns it packed, a multiple of 8; the caller's scalar loop does the rest. (In the
// `small` training step on an AVX2 core, packing op(A) went from 5.8% of the time to 4.2%.)
//
// One full micro-panel of A stored by rows (MR = 6, op(A)(i, k) = src[i * lda + k]) into dst[k * 6 + i]:
// rows 6 and 7 of each transpose repeat row 5; column k's first 6 lanes go to dst + k * 6 by an
// 8-float store whose last 2 lanes the next column's store overwrites, and the last column of each 8 is
// stored as 4 + 2, so nothing past the group is written. (The backward's dX = dY W packs all of dY so.)
template <class T, bool Round>
int64_t pack_rows6(const T* src, int64_t lda, int64_t kc, T* dst) {
#if defined(__AVX__)
  if constexpr (std::is_same_v<T, float> && Blocking<T>::MR == 6) {
    const float* row[8];
    for (int i = 0; i < 8; ++i) row[i] = src + std::min(i, 5) * lda;
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
      __m256 c[8];
      transpose8<Round, 6>(row, k, c);
      float* d = dst + k * 6;
      for (int e = 0; e < 7; ++e) _mm256_storeu_ps(d + e * 6, c[e]);
      _mm_storeu_ps(d + 42, _mm256_castps256_ps128(c[7]));
      _mm_storel_pi(reinterpret_cast<__m64*>(d + 46), _mm256_extractf128_ps(c[7], 1));
    }
    return k;
  }
#endif
  (void)src, (void)lda, (void)kc, (void)dst;
  return 0;
}

// One full micro-panel of B stored by columns (op(B)(k, j) = src[j * ldb + k], j < NR: a weight W in
// x W^T) into dst[k * NR + j], eight of its NR columns per transpose.
template <class T, bool Round>
int64_t pack_cols(const T* src, int64_t ldb, int64_t kc, T* dst) {
#if defined(__AVX__)
  constexpr int NR = Blocking<T>::NR;
  if constexpr (std::is_same_v<T, float> && NR % 8 == 0) {
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8)
      for (int j0 = 0; j0 < NR; j0 += 8) {
        const float* row[8];
        for (int i = 0; i < 8; ++i) row[i] = src + (j0 + i) * ldb;
        __m256 c[8];
        transpose8<Round>(row, k, c);
        for (int e = 0; e < 8; ++e) _mm256_storeu_ps(dst + (k + e) * NR + j0, c[e]);
      }
    return k;
  }
#endif
  (void)src, (void)ldb, (void)kc, (void)dst;
  return 0;
}

// Packs op(A)[i0:i0+mc, k0:k0+kc] into ceil(mc / MR) micro-panels of MR x kc (zero rows past mc).
template <class T, bool Round = false>
void pack_a(bool trans, const T* A, int64_t lda, int64_t i0, int64_t k0, int64_t mc, int64_t kc, T* dst) {
  constexpr int MR = Blocking<T>::MR;
  if (trans) {  // the full panels row by row of A: each row's mc values read once, in order
    const int64_t full = mc / MR * MR;
    for (int64_t k = 0; k < kc; ++k) {
      const T* src = A + (k0 + k) * lda + i0;
      T* d = dst + k * MR;
      for (int64_t ip = 0; ip < full; ip += MR, d += MR * kc, src += MR) {
#if defined(__AVX__)
        // Round, MR = 6: eight values rounded as one vector and stored whole, the last two landing where
        // this panel's next column goes (written next); the block's last panel and column take the
        // scalar loop, so nothing is read or written past them.
        if constexpr (Round && std::is_same_v<T, float> && MR == 6) {
          if (ip + MR < full && k + 1 < kc) {
            _mm256_storeu_ps(d, (__m256)round_bits((Bits8)_mm256_loadu_ps(src)));
            continue;
          }
        }
#endif
        for (int i = 0; i < MR; ++i) d[i] = packed<T, Round>(src[i]);
      }
    }
    dst += full * kc, i0 += full, mc -= full;
  }
  if constexpr (Round) {  // the last, partial panel of a transposed block: packed, then rounded
    if (trans && mc > 0) {
      pack_a<T, false>(trans, A, lda, i0, k0, mc, kc, dst);
      return round_span(dst, MR * kc);
    }
  }
  for (int64_t ip = 0; ip < mc; ip += MR, dst += MR * kc) {
    const int64_t mr = std::min<int64_t>(MR, mc - ip);
    if (trans) {  // op(A)(i, k) = A[k * lda + i]: MR contiguous values per k (the last, partial panel)
      for (int64_t k = 0; k < kc; ++k) {
        const T* src = A + (k0 + k) * lda + i0 + ip;
        T* d = dst + k * MR;
        for (int64_t i = 0; i < mr; ++i) d[i] = packed<T, Round>(src[i]);
        for (int64_t i = mr; i < MR; ++i) d[i] = T(0);
      }
    } else {  // op(A)(i, k) = A[i * lda + k]: read each row along k
      const int64_t kv = mr == MR ? pack_rows6<T, Round>(A + (i0 + ip) * lda + k0, lda, kc, dst) : 0;
      for (int64_t i = 0; i < mr; ++i) {
        const T* src = A + (i0 + ip + i) * lda + k0;
        for (int64_t k = kv; k < kc; ++k) dst[k * MR + i] = packed<T, Round>(src[k]);
      }
      for (int64_t i = mr; i < MR; ++i)
        for (int64_t k = 0; k < kc; ++k) dst[k * MR + i] = T(0);
    }
  }
}

// Packs op(B)[k0:k0+kc, j0:j0+nc] into ceil(nc / NR) micro-panels of kc x NR (zero columns past nc).
template <class T, bool Round = false>
void pack_b(bool trans, const T* B, int64_t ldb, int64_t k0, int64_t j0, int64_t kc, int64_t nc, T* dst) {
  constexpr int NR = Blocking<T>::NR;
  for (int64_t jp = 0; jp < nc; jp += NR, dst += NR * kc) {
    const int64_t nr = std::min<int64_t>(NR, nc - jp);
    if (!trans) {  // op(B)(k, j) = B[k * ldb + j]: NR contiguous values per k
      for (int64_t k = 0; k < kc; ++k) {
        const T* src = B + (k0 + k) * ldb + j0 + jp;
        T* d = dst + k * NR;
        if (nr == NR) {
          if constexpr (Round)
            round_span(src, d, NR);  // Round: float only (gemm_rounded)
          else
            std::memcpy(d, src, sizeof(T) * NR);
        } else {
          for (int64_t j = 0; j < nr; ++j) d[j] = packed<T, Round>(src[j]);
          for (int64_t j = nr; j < NR; ++j) d[j] = T(0);
        }
      }
    } else {  // op(B)(k, j) = B[j * ldb + k]: read each stored row along k
      const int64_t kv = nr == NR ? pack_cols<T, Round>(B + (j0 + jp) * ldb + k0, ldb, kc, dst) : 0;
      for (int64_t j = 0; j < nr; ++j) {
        const T* src = B + (j0 + jp + j) * ldb + k0;
        for (int64_t k = kv; k < kc; ++k) dst[k * NR + j] = packed<T, Round>(src[k]);
      }
      for (int64_t j = nr; j < NR; ++j)
        for (int64_t k = 0; k < kc; ++k) dst[k * NR + j] = T(0);
    }
  }
}

#ifndef MG_GEMM_DIRECT_PANELS
#define MG_GEMM_DIRECT_PANELS 2
#endif

// One MR x nr tile of C (nr <= NR) with the kernel as wide as it needs: NV vectors, or one when the
// last columns fit in a single vector (N = 16, 48, ... in float with AVX-512).
template <class T>
inline void run_tile(int64_t kc, const T* ap, int64_t rsa, int64_t csa, const T* bp, T* c, int64_t ldc, int64_t nr,
                     Store mode, T beta) {
  if (nr <= kRegLanes<T>)
    micro_kernel<T, 1>(kc, ap, rsa, csa, bp, c, ldc, mode, beta);
  else
    micro_kernel<T, Blocking<T>::NV>(kc, ap, rsa, csa, bp, c, ldc, mode, beta);
}

// op(A)[i0:i0+mc, k0:k0+kc] rounded to bf16 in its stored layout: (mc, kc) rows, or (kc, mc) when trans.
template <class T>
void round_block(bool trans, const T* A, int64_t lda, int64_t i0, int64_t k0, int64_t mc, int64_t kc, T* dst) {
  const int64_t rows = trans ? kc : mc, cols = trans ? mc : kc;
  const T* src = trans ? A + k0 * lda + i0 : A + i0 * lda + k0;
  for (int64_t r = 0; r < rows; ++r) {
    round_span(src + r * lda, dst + r * cols, cols);
  }
}

// The whole loop nest for one (M, N) slice of C, on one thread; Round: op(A) and op(B) rounded to bf16
// as they are packed (and op(A), where it is read in place, from a rounded copy of the block).
template <class T, bool Round = false>
void gemm_serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
                 int64_t ldb, T beta, T* C, int64_t ldc) {
  using Bk = Blocking<T>;
  constexpr int MR = Bk::MR, NR = Bk::NR, W = kRegLanes<T>;
  const int64_t kc_max = std::min<int64_t>(Bk::KC, K);
  const int64_t nc_max = std::min<int64_t>(Bk::NC, (N + NR - 1) / NR * NR);
  const int64_t mc_max = std::min<int64_t>(Bk::MC, (M + MR - 1) / MR * MR);
  T* bp = thread_scratch<T>(0, size_t(kc_max * nc_max));
  T* ap = thread_scratch<T>(1, size_t(kc_max * mc_max));
  alignas(64) T tile[MR * NR];

  for (int64_t jc = 0; jc < N; jc += Bk::NC) {
    const int64_t nc = std::min<int64_t>(Bk::NC, N - jc);
    // With few B panels the packed A block would be used only once or twice: read op(A) in place
    // instead (full MR-row panels; the last partial one is still packed, see below).
    // Round: the block of op(A) is read from a rounded copy in its stored layout (slot 2).
    const bool direct_a = nc <= MG_GEMM_DIRECT_PANELS * NR;
    for (int64_t pc = 0; pc < K; pc += Bk::KC) {
      const int64_t kc = std::min<int64_t>(Bk::KC, K - pc);
      const Store mode = pc > 0 ? Store::accumulate : beta == T(0) ? Store::overwrite : Store::scale;
      pack_b<T, Round>(trans_b, B, ldb, pc, jc, kc, nc, bp);
      for (int64_t ic = 0; ic < M; ic += Bk::MC) {
        const int64_t mc = std::min<int64_t>(Bk::MC, M - ic);
        const T* a_dir = trans_a ? A + pc * lda + ic : A + ic * lda + pc;  // op(A)[ic, pc] in place
        int64_t rsa_d = trans_a ? 1 : lda, csa_d = trans_a ? lda : 1;
        if (!direct_a) {
          pack_a<T, Round>(trans_a, A, lda, ic, pc, mc, kc, ap);
        } else if constexpr (Round) {
          T* ar = thread_scratch<T>(2, size_t(kc_max * mc_max));
          round_block(trans_a, A, lda, ic, pc, mc, kc, ar);
          a_dir = ar, rsa_d = trans_a ? 1 : kc, csa_d = trans_a ? mc : 1;
        }
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int64_t nr = std::min<int64_t>(NR, nc - jr);
          const T* bpanel = bp + jr * kc;
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const int64_t mr = std::min<int64_t>(MR, mc - ir);
            const T* apanel = ap + ir * kc;
            int64_t rsa = 1, csa = MR;
            if (direct_a && mr == MR) {
              apanel = a_dir + ir * rsa_d;
              rsa = rsa_d;
              csa = csa_d;
            } else if (direct_a) {
              pack_a<T, Round>(trans_a, A, lda, ic + ir, pc, mr, kc, ap);
              apanel = ap;
            }
            T* c = C + (ic + ir) * ldc + jc + jr;
            if (mr == MR && (nr == NR || nr == W)) {
              run_tile<T>(kc, apanel, rsa, csa, bpanel, c, ldc, nr, mode, beta);
              continue;
            }
            // Edge tile: same kernel on a local copy, then the valid part back.
            if (mode != Store::overwrite) {
              std::fill(tile, tile + MR * NR, T(0));
              for (int64_t i = 0; i < mr; ++i) std::copy(c + i * ldc, c + i * ldc + nr, tile + i * NR);
            }
            run_tile<T>(kc, apanel, rsa, csa, bpanel, tile, NR, nr, mode, beta);
            for (int64_t i = 0; i < mr; ++i) std::copy(tile + i * NR, tile + i * NR + nr, c + i * ldc);
          }
        }
      }
    }
  }
}

// ---- Small M (token-by-token decoding: M = batch = 1..16) ----
//
// C = op(A) op(B) + beta C computed directly, op(B) read in place: no packing, no copies. With M this
// small each element of op(B) is used at most M times, so packing it (a full copy of the weight on every
// call) costs as much as the product. Two layouts:
//   trans_b (B stored (N, K), a weight W of linear): per element a dot product over contiguous K;
//     dot_block runs MB rows of A against NB rows of W (MB x NB = kDotAcc vector accumulators: 16 with
//     AVX-512, else 8) and reduces them W at a time to one vector of C values with vec.h's sum_rows, a
//     transposing fold (for 16 floats: 30 shuffles + 15 adds, not 16 separate horizontal sums).
//     K <= kSmallKDot (dt_proj) with at least kSmallKRows rows: the same order from a tile of W
//     transposed once per 16 columns and shared by the rows (small_m_dot_small_k).
//   !trans_b (B stored (K, N)): vectorised over N; axpy_block keeps an MB x (NV * W) tile of C in
//     registers and adds a[i, k] * B[k, n-block] for k in order.
// Order of the arithmetic, per element, fixed whatever MB / NB / NV, the tile's position, M and the
// thread count (so row i of a batch-M product is bit-identical to the batch-1 product of that row, and
// to any thread count; tests/test_gemm.cpp checks both):
//   trans_b:  acc (one vector of W lanes) = fma(a[k:k+W], b[k:k+W], acc) over the full W-chunks of K in
//             order (from 0), s = the lanes of acc summed by a fixed tree: lane i + W/2 added to lane i,
//             then i + W/4, ..., i + 1 (vec.h's hsum; sum_rows adds the same pairs, so the
//             fold and the one-column hsum give the same bits), then s = fma(a[k], b[k], s) over
//             the last K % W in order (all of K when K < W: then s = 0 and the fma chain, as !trans_b);
//   !trans_b: s = 0, s = fma(a[k], b[k, n], s) for k = 0..K-1 (vector lanes and the scalar tail columns
//             do the same correctly rounded fma);
//   then C = s (beta 0: C is never read) or C = fma(beta, C, s).
// (Not the packed gemm's order: a product with M <= kGemmSmallM rounds differently from the same
// rows inside a larger M, but never depends on which other rows come with it up to that bound.)
constexpr int64_t kSmallM = kGemmSmallM;

// Threads for the small-M path only from this many multiply-adds (M * N * K) up; gemm.h has the
// measurements behind the figure.
constexpr int64_t kSmallMGrain = kGemmSmallMGrain;

template <class T>
inline void put(T* c, T s, T beta) {
  *c = beta == T(0) ? s : std::fma(beta, *c, s);
}

// W contiguous values of C = r (beta 0) or fma(beta, C, r), the fma rounded once as put's std::fma.
template <class T>
inline void put_vec(T* c, Reg<T> r, T beta) {
  using V = Reg<T>;
  if (beta == T(0)) {
    storeu(c, r);
  } else if (kFusedFma) {
    storeu(c, vfma(splat<V>(beta), loadu<T, V>(c), r));
  } else {
    alignas(64) T t[kRegLanes<T>];
    storeu(t, r);
    for (int l = 0; l < kRegLanes<T>; ++l) put(c + l, t[l], beta);
  }
}

// !trans_b: vectors of C per call, by rows of A in the group: enough independent chains for the FMA
// latency (8+), few enough for the registers (32 with AVX-512, 16 otherwise). Each divides kSmallNStep.
constexpr int kSmallNStep = 8;
template <class T, int MB>
constexpr int axpy_nv() {
  return kRegLanes<T> * sizeof(T) == 64 ? (MB == 1 ? 8 : 4) : (MB <= 2 ? 4 : 2);
}

// trans_b: dot_block keeps kDotAcc vector accumulators, MB rows of A x NB = kDotAcc / MB rows of W
// (MB = 1, 2, 4), and reduces them W at a time with sum_rows into vectors of C values.
// kDotAcc is a multiple of W (16 or 8 floats, 8 or 4 doubles, 4 or 2 with 16-byte vectors).
constexpr int kDotAcc = kRegLanes<float> == 16 ? 16 : 8;
template <class T, int MB>
constexpr int dot_nb() {
  return kDotAcc / MB;
}

// C[i, j] (i < MB, j < NB) = sum_k A[i * lda + k] B[j * ldb + k], then beta (see the order above).
template <class T, int MB, int NB>
inline void dot_block(int64_t K, const T* __restrict A, int64_t lda, const T* __restrict B, int64_t ldb, T beta,
                      T* __restrict C, int64_t ldc) {
  using V = Reg<T>;
  constexpr int W = kRegLanes<T>;
  static_assert(MB * NB % W == 0, "dot_block reduces W accumulators at a time");
  V acc[MB * NB];  // acc[i * NB + j]
#pragma GCC unroll 16
  for (int t = 0; t < MB * NB; ++t) acc[t] = V{};
  const int64_t kv = K / W * W;
#pragma GCC unroll 2
  for (int64_t k = 0; k < kv; k += W) {
    V b[NB];
#pragma GCC unroll 16
    for (int j = 0; j < NB; ++j) b[j] = loadu<T, V>(B + j * ldb + k);
#pragma GCC unroll 16
    for (int i = 0; i < MB; ++i) {
      const V a = loadu<T, V>(A + i * lda + k);
#pragma GCC unroll 16
      for (int j = 0; j < NB; ++j) acc[i * NB + j] = vfma(a, b[j], acc[i * NB + j]);
    }
  }
#pragma GCC unroll 4
  for (int g = 0; g < MB * NB / W; ++g) {
    const V r = sum_rows(acc + g * W);  // lane l: element t = g * W + l, row t / NB, column t % NB
    if (NB >= W && kv == K) {           // one row, W contiguous columns
      put_vec<T>(C + (g * W / NB) * ldc + g * W % NB, r, beta);
      continue;
    }
    alignas(64) T s[W];
    storeu(s, r);
    for (int l = 0; l < W; ++l) {
      const int i = (g * W + l) / NB, j = (g * W + l) % NB;
      for (int64_t k = kv; k < K; ++k) s[l] = std::fma(A[i * lda + k], B[j * ldb + k], s[l]);
    }
    if (beta == T(0)) {
      for (int l = 0; l < W; l += std::min(NB, W))  // rows of min(NB, W) contiguous columns
        std::memcpy(C + ((g * W + l) / NB) * ldc + (g * W + l) % NB, s + l, sizeof(T) * std::min(NB, W));
    } else {
      for (int l = 0; l < W; ++l) put(C + ((g * W + l) / NB) * ldc + (g * W + l) % NB, s[l], beta);
    }
  }
}

// One column j of C, rows i < MB (the last N % kDotAcc columns): the same order, hsum per element.
template <class T, int MB>
inline void dot_column(int64_t K, const T* __restrict A, int64_t lda, const T* __restrict B, T beta, T* __restrict C,
                       int64_t ldc) {
  using V = Reg<T>;
  constexpr int W = kRegLanes<T>;
  V acc[MB];
#pragma GCC unroll 4
  for (int i = 0; i < MB; ++i) acc[i] = V{};
  const int64_t kv = K / W * W;
  for (int64_t k = 0; k < kv; k += W) {
    const V b = loadu<T, V>(B + k);
#pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) acc[i] = vfma(loadu<T, V>(A + i * lda + k), b, acc[i]);
  }
  for (int i = 0; i < MB; ++i) {
    T s = hsum(acc[i]);
    for (int64_t k = kv; k < K; ++k) s = std::fma(A[i * lda + k], B[k], s);
    put(C + i * ldc, s, beta);
  }
}

// Columns [n, n + kDotAcc) of C, rows [i0, i1): blocks of 4 rows (4 x NB), then 2, then 1.
template <class T, int MB>
inline void dot_rows(int64_t i0, int64_t i1, int64_t n, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb,
                     T beta, T* C, int64_t ldc) {
  constexpr int NB = dot_nb<T, MB>();
  // W's NB rows outer (they stay in L1 while every row group of A passes over them).
  for (int64_t j = n; j < n + kDotAcc; j += NB)
    for (int64_t i = i0; i + MB <= i1; i += MB)
      dot_block<T, MB, NB>(K, A + i * lda, lda, B + j * ldb, ldb, beta, C + i * ldc + j, ldc);
}
template <class T>
void small_m_dot(int64_t M, int64_t n0, int64_t n1, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T beta,
                 T* C, int64_t ldc) {
  // n outer, in steps of kDotAcc rows of W, so W is read from memory once whatever M.
  const int64_t m4 = M / 4 * 4, m2 = M / 2 * 2;
  int64_t n = n0;
  for (; n + kDotAcc <= n1; n += kDotAcc) {
    dot_rows<T, 4>(0, m4, n, K, A, lda, B, ldb, beta, C, ldc);
    dot_rows<T, 2>(m4, m2, n, K, A, lda, B, ldb, beta, C, ldc);
    dot_rows<T, 1>(m2, M, n, K, A, lda, B, ldb, beta, C, ldc);
  }
  for (int64_t j = n; j < n1; ++j)  // the last columns, one at a time
    for (int64_t i = 0; i < M; i += 4) {
      const T* a = A + i * lda;
      T* c = C + i * ldc + j;
      switch (std::min<int64_t>(4, M - i)) {
        case 1:
          dot_column<T, 1>(K, a, lda, B + j * ldb, beta, c, ldc);
          break;
        case 2:
          dot_column<T, 2>(K, a, lda, B + j * ldb, beta, c, ldc);
          break;
        case 3:
          dot_column<T, 3>(K, a, lda, B + j * ldb, beta, c, ldc);
          break;
        default:
          dot_column<T, 4>(K, a, lda, B + j * ldb, beta, c, ldc);
          break;
      }
    }
}

// trans_b with K <= kSmallKDot (dt_proj: K = dt_rank = 16, 32) and at least kSmallKRows rows: a dot
// product is one or two vectors, and M butterflies per W columns would cost more than the products. W
// rows of W are transposed once into a K x W tile on the stack (shared by all M rows), and each row
// computes the trans_b order above vectorised over the W columns: lane-vector P[l] (l < W) =
// fma(a[k], wt[k], P[l]) for k = l, l + W, ... (the full W-chunks), then the same tree (P[l] += P[l + h]
// for h = W/2, ..., 1), then the tail fma chain: the same operations as dot_block's, so bit-identical.
constexpr int64_t kSmallKDot = 32, kSmallKRows = 3;

// wt[k * W + j] = B[j * ldb + k] for j < W, k < K (K <= kSmallKDot). AVX-512 float: 16 x 16 blocks
// transposed in registers (64 shuffles: unpack, shuffle_ps, two shuffle_f32x4 rounds), the rest scalar.
// (GCC 12's AVX-512 headers build these shuffles from an uninitialised vector and then warn about it
// in every caller, GCC bug 105593: a false positive, silenced here.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
template <class T>
inline void transpose_tile(const T* __restrict B, int64_t ldb, int64_t K, T* __restrict wt) {
  constexpr int W = kRegLanes<T>;
  int64_t k0 = 0;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    for (; k0 + 16 <= K; k0 += 16) {
      __m512 r[16], a[16], c[4][4];
      for (int j = 0; j < 16; ++j) r[j] = _mm512_loadu_ps(B + j * ldb + k0);
      for (int j = 0; j < 16; j += 2) {  // lane q: [(j, 4q) (j+1, 4q) (j, 4q+1) (j+1, 4q+1)], then 4q+2, 4q+3
        a[j] = _mm512_unpacklo_ps(r[j], r[j + 1]);
        a[j + 1] = _mm512_unpackhi_ps(r[j], r[j + 1]);
      }
      for (int J = 0; J < 4; ++J) {  // c[J][e] lane q: column 4q + e, rows 4J .. 4J + 3
        c[J][0] = _mm512_shuffle_ps(a[4 * J], a[4 * J + 2], _MM_SHUFFLE(1, 0, 1, 0));
        c[J][1] = _mm512_shuffle_ps(a[4 * J], a[4 * J + 2], _MM_SHUFFLE(3, 2, 3, 2));
        c[J][2] = _mm512_shuffle_ps(a[4 * J + 1], a[4 * J + 3], _MM_SHUFFLE(1, 0, 1, 0));
        c[J][3] = _mm512_shuffle_ps(a[4 * J + 1], a[4 * J + 3], _MM_SHUFFLE(3, 2, 3, 2));
      }
      for (int e = 0; e < 4; ++e) {  // 4 x 4 transpose of 128-bit lanes across c[0..3][e]
        const __m512 x = _mm512_shuffle_f32x4(c[0][e], c[1][e], _MM_SHUFFLE(2, 0, 2, 0));
        const __m512 y = _mm512_shuffle_f32x4(c[0][e], c[1][e], _MM_SHUFFLE(3, 1, 3, 1));
        const __m512 z = _mm512_shuffle_f32x4(c[2][e], c[3][e], _MM_SHUFFLE(2, 0, 2, 0));
        const __m512 w = _mm512_shuffle_f32x4(c[2][e], c[3][e], _MM_SHUFFLE(3, 1, 3, 1));
        _mm512_store_ps(wt + (k0 + e) * 16, _mm512_shuffle_f32x4(x, z, _MM_SHUFFLE(2, 0, 2, 0)));
        _mm512_store_ps(wt + (k0 + 4 + e) * 16, _mm512_shuffle_f32x4(y, w, _MM_SHUFFLE(2, 0, 2, 0)));
        _mm512_store_ps(wt + (k0 + 8 + e) * 16, _mm512_shuffle_f32x4(x, z, _MM_SHUFFLE(3, 1, 3, 1)));
        _mm512_store_ps(wt + (k0 + 12 + e) * 16, _mm512_shuffle_f32x4(y, w, _MM_SHUFFLE(3, 1, 3, 1)));
      }
    }
  }
#endif
  for (int j = 0; j < W; ++j)
    for (int64_t k = k0; k < K; ++k) wt[k * W + j] = B[j * ldb + k];
}
#pragma GCC diagnostic pop

// One row of C, W columns, from the transposed tile: K / W full chunks (NC, or any when NC is -1).
template <class T, int NC>
inline void dot_tile_row(int64_t K, const T* __restrict a, const T* __restrict wt, T beta, T* __restrict c) {
  using V = Reg<T>;
  constexpr int W = kRegLanes<T>;
  V P[W];
#pragma GCC unroll 16
  for (int l = 0; l < W; ++l) P[l] = V{};
  const int64_t nc = NC >= 0 ? NC : K / W;
#pragma GCC unroll 2
  for (int64_t ch = 0; ch < nc; ++ch)
#pragma GCC unroll 16
    for (int l = 0; l < W; ++l) P[l] = vfma(splat<V>(a[ch * W + l]), loadu<T, V>(wt + (ch * W + l) * W), P[l]);
#pragma GCC unroll 16
  for (int h = W / 2; h >= 1; h /= 2)
#pragma GCC unroll 16
    for (int l = 0; l < h; ++l) P[l] = P[l] + P[l + h];
  V s = P[0];
  if (kFusedFma) {
    for (int64_t k = nc * W; k < K; ++k) s = vfma(splat<V>(a[k]), loadu<T, V>(wt + k * W), s);
  } else if (nc * W < K) {  // the tail with std::fma, as dot_block's
    alignas(64) T t[W];
    storeu(t, s);
    for (int l = 0; l < W; ++l)
      for (int64_t k = nc * W; k < K; ++k) t[l] = std::fma(a[k], wt[k * W + l], t[l]);
    s = loadu<T, V>(t);
  }
  put_vec<T>(c, s, beta);
}

template <class T>
void small_m_dot_small_k(int64_t M, int64_t n0, int64_t n1, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb,
                         T beta, T* C, int64_t ldc) {
  constexpr int W = kRegLanes<T>;
  alignas(64) T wt[kSmallKDot * W];
  int64_t n = n0;
  for (; n + W <= n1; n += W) {
    transpose_tile<T>(B + n * ldb, ldb, K, wt);
    for (int64_t i = 0; i < M; ++i) {
      const T* a = A + i * lda;
      T* c = C + i * ldc + n;
      switch (K / W) {  // the chunk count unrolled for dt_proj's 1 and 2
        case 1:
          dot_tile_row<T, 1>(K, a, wt, beta, c);
          break;
        case 2:
          dot_tile_row<T, 2>(K, a, wt, beta, c);
          break;
        default:
          dot_tile_row<T, -1>(K, a, wt, beta, c);
          break;
      }
    }
  }
  for (int64_t j = n; j < n1; ++j)  // the last N % W columns
    for (int64_t i = 0; i < M; ++i) dot_column<T, 1>(K, A + i * lda, lda, B + j * ldb, beta, C + i * ldc + j, ldc);
}

// C[i, 0:NV*W] (i < MB) = sum_k A[i * lda + k] B[k * ldb + 0:NV*W], k in order, then beta.
template <class T, int MB, int NV>
inline void axpy_block(int64_t K, const T* __restrict A, int64_t lda, const T* __restrict B, int64_t ldb, T beta,
                       T* __restrict C, int64_t ldc) {
  using V = Reg<T>;
  constexpr int W = kRegLanes<T>;
  V acc[MB][NV];
  rank1_updates<T, MB, NV>(K, A, lda, 1, B, ldb, acc);
  const V vb = splat<V>(beta);
#pragma GCC unroll 8
  for (int i = 0; i < MB; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      T* c = C + i * ldc + v * W;
      storeu(c, beta == T(0) ? acc[i][v] : vfma(vb, loadu<T, V>(c), acc[i][v]));
    }
}

template <class T, int MB>
void axpy_rows(int64_t n0, int64_t n1, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C,
               int64_t ldc) {
  constexpr int W = kRegLanes<T>, NV = axpy_nv<T, MB>(), step = kSmallNStep * W;
  int64_t n = n0;
  for (; n + step <= n1; n += step)
    for (int64_t j = n; j < n + step; j += NV * W) axpy_block<T, MB, NV>(K, A, lda, B + j, ldb, beta, C + j, ldc);
  for (; n + W <= n1; n += W) axpy_block<T, MB, 1>(K, A, lda, B + n, ldb, beta, C + n, ldc);
  for (int i = 0; i < MB; ++i)  // the last N % W columns: the same fma chain, one column at a time
    for (int64_t j = n; j < n1; ++j) {
      T s = T(0);
      for (int64_t k = 0; k < K; ++k) s = std::fma(A[i * lda + k], B[k * ldb + j], s);
      put(C + i * ldc + j, s, beta);
    }
}
template <class T>
void small_m_axpy(int64_t M, int64_t n0, int64_t n1, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb,
                  T beta, T* C, int64_t ldc) {
  // n outer in blocks of kSmallNStep vectors (K x 8W of B: a few hundred KiB at most, L2), row groups
  // of 4 inner, so B is read from memory once.
  constexpr int64_t step = kSmallNStep * kRegLanes<T>;
  for (int64_t n = n0; n < n1; n += step) {
    const int64_t ne = std::min(n1, n + step);
    for (int64_t i = 0; i < M; i += 4) {
      const T* a = A + i * lda;
      T* c = C + i * ldc;
      switch (std::min<int64_t>(4, M - i)) {
        case 1:
          axpy_rows<T, 1>(n, ne, K, a, lda, B, ldb, beta, c, ldc);
          break;
        case 2:
          axpy_rows<T, 2>(n, ne, K, a, lda, B, ldb, beta, c, ldc);
          break;
        case 3:
          axpy_rows<T, 3>(n, ne, K, a, lda, B, ldb, beta, c, ldc);
          break;
        default:
          axpy_rows<T, 4>(n, ne, K, a, lda, B, ldb, beta, c, ldc);
          break;
      }
    }
  }
}

// The small-M product, threads over contiguous ranges of N (each thread reads its own rows / columns
// of op(B)) only above kSmallMGrain multiply-adds.
template <class T>
void gemm_small_m(bool trans_b, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb,
                  T beta, T* C, int64_t ldc) {
  const int64_t unit = trans_b ? kDotAcc : kSmallNStep * kRegLanes<T>;  // columns per item
  auto run = [&](int64_t b, int64_t e) {
    const int64_t n0 = b * unit, n1 = std::min(N, e * unit);
    if (trans_b && K <= kSmallKDot && M >= kSmallKRows)
      small_m_dot_small_k<T>(M, n0, n1, K, A, lda, B, ldb, beta, C, ldc);
    else if (trans_b)
      small_m_dot<T>(M, n0, n1, K, A, lda, B, ldb, beta, C, ldc);
    else
      small_m_axpy<T>(M, n0, n1, K, A, lda, B, ldb, beta, C, ldc);
  };
  const int64_t items = (N + unit - 1) / unit;
  if (M * N * K < kSmallMGrain || num_threads() <= 1)
    run(0, items);
  else
    parallel_for(items, unit * M * K, run);
}

}  // namespace

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb,
          T beta, T* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {  // no products: C = beta C (0 overwrites)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
    return;
  }
  if (!trans_a && M <= kSmallM) {  // decoding: op(B) read in place, see gemm_small_m
    gemm_small_m<T>(trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  gemm_packed<T>(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

namespace {

// A piece of the threaded packed path holds at least this many rows (or columns) of C where it can.
// Every piece packs all of the other operand (op(B) for a row piece, op(A) for a column piece) and
// streams it through the caches once per block of K, whatever its own size, so small pieces of a
// product with few rows (or columns) and a long K pay that again and again: dW = dY^T X of `small`
// (256 x 512 x 4096) in 8 pieces ran at 128-130 GFLOP/s on 2 Zen 2 cores, in 2 at 141-163 (and
// 1024 x 256 x 4096 at 128-134 against 160-166; x_proj's 48 x 512 x 4096, split by columns, at 110-114
// against 137-141), while the products with 4096 rows (8 pieces of 512 rows either way) ran the same.
// Fewer pieces are less even on a busy machine, where the trainer runs such steps on one thread anyway
// (docs/perf.md, "Training beside a busy process").
constexpr int64_t kMinPieceRows = 512;

// The packed path, threads over whole MR row panels (or NR column panels when C has more of those).
template <class T, bool Round>
void packed_threads(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
                    int64_t ldb, T beta, T* C, int64_t ldc) {
  constexpr int MR = Blocking<T>::MR, NR = Blocking<T>::NR;
  const int64_t m_panels = (M + MR - 1) / MR, n_panels = (N + NR - 1) / NR;
  const int64_t flops_per_row = N * K, flops_per_col = M * K;
  if (m_panels >= n_panels) {  // threads over row panels; each packs all of op(B) it needs
    parallel_for(
        m_panels, MR * flops_per_row,
        [&](int64_t b, int64_t e) {
          const int64_t i0 = b * MR, i1 = std::min(M, e * MR);
          const T* a = trans_a ? A + i0 : A + i0 * lda;
          gemm_serial<T, Round>(trans_a, trans_b, i1 - i0, N, K, a, lda, B, ldb, beta, C + i0 * ldc, ldc);
        },
        kMinPieceRows / MR);
  } else {  // threads over column panels; each packs all of op(A)
    parallel_for(
        n_panels, NR * flops_per_col,
        [&](int64_t b, int64_t e) {
          const int64_t j0 = b * NR, j1 = std::min(N, e * NR);
          const T* bb = trans_b ? B + j0 * ldb : B + j0;
          gemm_serial<T, Round>(trans_a, trans_b, M, j1 - j0, K, A, lda, bb, ldb, beta, C + j0, ldc);
        },
        kMinPieceRows / NR);
  }
}

}  // namespace

template <class T>
void gemm_packed(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
                 int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    gemm<T>(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  packed_threads<T, false>(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

void gemm_rounded(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                  const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0 || K <= 0) return gemm<float>(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
  if (!trans_a && M <= kSmallM) {  // the small-M path reads op(B) in place: round copies first (small A)
    const int64_t rb = trans_b ? N : K, cb = trans_b ? K : N;
    float* a = thread_scratch<float>(2, size_t(M * K));
    float* b = thread_scratch<float>(3, size_t(rb * cb));
    round_block<float>(false, A, lda, 0, 0, M, K, a);
    round_block<float>(false, B, ldb, 0, 0, rb, cb, b);
    return gemm_small_m<float>(trans_b, M, N, K, a, K, b, cb, beta, C, ldc);
  }
  packed_threads<float, true>(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

void round_bf16_span(const float* src, float* dst, int64_t n) { round_span(src, dst, n); }

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t, float,
                          float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, const double*, int64_t, const double*, int64_t,
                           double, double*, int64_t);
template void gemm_packed<float>(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t,
                                 float, float*, int64_t);
template void gemm_packed<double>(bool, bool, int64_t, int64_t, int64_t, const double*, int64_t, const double*, int64_t,
                                  double, double*, int64_t);

}  // namespace mg::cpu
