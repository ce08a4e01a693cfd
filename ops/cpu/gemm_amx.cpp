// The AMX way of the bf16 gemm (gemm.h, "Mixed precision"): C = bf16(op(A)) bf16(op(B)) + beta C with
// TDPBF16PS on 16 x 32 bf16 tiles into 16 x 16 float32 accumulators (ops/cpu/amx_tiles.h).
//
// Loop nest (one thread runs it on its slice of C, see gemm_bf16_amx):
//   for jc in N step NC, for pc in K step KC:   pack op(B)[pc:pc+KC, jc:jc+NC] (VNNI pairs)
//     for ic in M step MC:                      pack op(A)[ic:ic+MC, pc:pc+KC] (bf16 rows)
//       for jr in NC step 32, for ir in MC step 32: a 32 x 32 block of C in four accumulator tiles
// Packed layouts, zero-padded to whole tiles (rows and columns to multiples of 32, K to a multiple of 32),
// so the kernel never branches on an edge; each tile is 1 KiB, 64 bytes per row:
//   A: per 16-row panel, per 32-k chunk q: Ap[r][kk]      = bf16(op(A)(row r, k = 32 q + kk))
//   B: per 16-column panel, per chunk q:   Bp[p][2 n + e] = bf16(op(B)(k = 32 q + 2 p + e, column n))
// Tiles 0-3 hold the 2 x 2 accumulators, 4-5 two A tiles, 6-7 two B tiles: per chunk four loads and four
// TDPBF16PS. The accumulators are stored to a local 32 x 32 block and the valid part written to C with
// beta (first K block) or added (later ones): the same arithmetic for a full block and an edge.
//
// Threads: C split into contiguous ranges of 32-row (or 32-column) blocks, K never split and the blocking
// fixed, so an element's sum is the same for any thread count. Tile state is per thread: every slice
// loads the tile configuration and releases the tiles at its end.
#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "core/bf16.h"
#include "core/parallel.h"
#include "ops/cpu/amx_tiles.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/scratch.h"

#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define MG_AMX_KERNEL 1
#endif

namespace mg::cpu {

namespace {

constexpr int64_t kBlk = 32;                        // rows and columns of C per kernel call
constexpr int64_t kChunk = 32;                      // k per A tile row (16 bf16 pairs)
constexpr int64_t kTileElems = 16 * 32;             // uint16 elements per packed tile
constexpr int64_t kKC = 512, kMC = 128, kNC = 512;  // multiples of 32

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Rounds rc x kc values v(r, k), r in [r0, r0 + rc), k in [k0, k0 + kc), of a stored matrix S into the
// packed slots slot(r - r0, k - k0) of dst (zeroed first: `padded` elements). S holds v(r, k) at
// S[r ld + k] when k_inner, else at S[k ld + r]; either way it is read along its rows.
template <class Slot>
void pack_rounded(bool k_inner, const float* S, int64_t ld, int64_t r0, int64_t k0, int64_t rc, int64_t kc,
                  int64_t padded, uint16_t* dst, Slot slot) {
  std::fill(dst, dst + padded, uint16_t(0));
  if (k_inner) {
    for (int64_t r = 0; r < rc; ++r) {
      const float* src = S + (r0 + r) * ld + k0;
      for (int64_t k = 0; k < kc; ++k) dst[slot(r, k)] = bf16_bits(src[k]);
    }
  } else {
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = S + (k0 + k) * ld + r0;
      for (int64_t r = 0; r < rc; ++r) dst[slot(r, k)] = bf16_bits(src[r]);
    }
  }
}

// op(A)[i0:i0+mc, k0:k0+kc] into round_up(mc, 32) / 16 panels of nq = ceil(kc / 32) tiles
// (op(A)(i, k) = A[i lda + k], or A[k lda + i] when trans).
void pack_a(bool trans, const float* A, int64_t lda, int64_t i0, int64_t k0, int64_t mc, int64_t kc, uint16_t* dst) {
  const int64_t nq = (kc + kChunk - 1) / kChunk, rows = round_up(mc, kBlk);
  pack_rounded(!trans, A, lda, i0, k0, mc, kc, rows * nq * kChunk, dst,
               [nq](int64_t r, int64_t k) { return ((r / 16 * nq + k / kChunk) * 16 + r % 16) * kChunk + k % kChunk; });
}

// op(B)[k0:k0+kc, j0:j0+nc] into round_up(nc, 32) / 16 panels of nq tiles in the VNNI pair layout
// (op(B)(k, j) = B[k ldb + j], or B[j ldb + k] when trans).
void pack_b(bool trans, const float* B, int64_t ldb, int64_t k0, int64_t j0, int64_t kc, int64_t nc, uint16_t* dst) {
  const int64_t nq = (kc + kChunk - 1) / kChunk, cols = round_up(nc, kBlk);
  pack_rounded(trans, B, ldb, j0, k0, nc, kc, cols * nq * kChunk, dst, [nq](int64_t j, int64_t k) {
    const int64_t kk = k % kChunk;
    return ((j / 16 * nq + k / kChunk) * 16 + kk / 2) * kChunk + 2 * (j % 16) + kk % 2;
  });
}

TileConfig full_tiles() {
  TileConfig cfg;
  for (int t = 0; t < kTiles; ++t) cfg.rows[t] = kTileRows, cfg.colsb[t] = kTileColsb;
  return cfg;
}

// out (32 x 32, row stride 32) = two A panels times two B panels over nq chunks.
template <class Tiles>
inline void block(Tiles& t, int64_t nq, const uint16_t* a0, const uint16_t* a1, const uint16_t* b0, const uint16_t* b1,
                  float* out) {
  t.template zero<0>();
  t.template zero<1>();
  t.template zero<2>();
  t.template zero<3>();
  for (int64_t q = 0; q < nq; ++q) {
    const int64_t o = q * kTileElems;
    t.template load<4>(a0 + o, kTileColsb);
    t.template load<5>(a1 + o, kTileColsb);
    t.template load<6>(b0 + o, kTileColsb);
    t.template load<7>(b1 + o, kTileColsb);
    t.template dpbf16ps<0, 4, 6>();
    t.template dpbf16ps<1, 4, 7>();
    t.template dpbf16ps<2, 5, 6>();
    t.template dpbf16ps<3, 5, 7>();
  }
  constexpr int64_t ld = kBlk * sizeof(float);
  t.template store<0>(out, ld);
  t.template store<1>(out + 16, ld);
  t.template store<2>(out + 16 * kBlk, ld);
  t.template store<3>(out + 16 * kBlk + 16, ld);
}

enum class Store { overwrite, scale, accumulate };

// The valid mr x nr part of a 32 x 32 block into C.
void write_block(const float* blk, float* C, int64_t ldc, int64_t mr, int64_t nr, Store mode, float beta) {
  for (int64_t i = 0; i < mr; ++i) {
    const float* s = blk + i * kBlk;
    float* c = C + i * ldc;
    if (mode == Store::overwrite)
      for (int64_t j = 0; j < nr; ++j) c[j] = s[j];
    else if (mode == Store::scale)
      for (int64_t j = 0; j < nr; ++j) c[j] = s[j] + beta * c[j];
    else
      for (int64_t j = 0; j < nr; ++j) c[j] += s[j];
  }
}

// The loop nest for one (M, N) slice of C, on one thread.
template <class Tiles>
void serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
            int64_t ldb, float beta, float* C, int64_t ldc) {
  const int64_t kc_max = round_up(std::min(K, kKC), kChunk);
  const int64_t nc_max = std::min(round_up(N, kBlk), kNC), mc_max = std::min(round_up(M, kBlk), kMC);
  uint16_t* bp = thread_scratch<uint16_t>(0, size_t(kc_max * nc_max));
  uint16_t* ap = thread_scratch<uint16_t>(1, size_t(kc_max * mc_max));
  alignas(64) float blk[kBlk * kBlk];
  Tiles t(full_tiles());
  for (int64_t jc = 0; jc < N; jc += kNC) {
    const int64_t nc = std::min(kNC, N - jc);
    for (int64_t pc = 0; pc < K; pc += kKC) {
      const int64_t kc = std::min(kKC, K - pc), nq = (kc + kChunk - 1) / kChunk, panel = nq * kTileElems;
      const Store mode = pc > 0 ? Store::accumulate : beta == 0.0f ? Store::overwrite : Store::scale;
      pack_b(trans_b, B, ldb, pc, jc, kc, nc, bp);
      for (int64_t ic = 0; ic < M; ic += kMC) {
        const int64_t mc = std::min(kMC, M - ic);
        pack_a(trans_a, A, lda, ic, pc, mc, kc, ap);
        for (int64_t jr = 0; jr < nc; jr += kBlk) {
          const uint16_t* b0 = bp + (jr / 16) * panel;
          for (int64_t ir = 0; ir < mc; ir += kBlk) {
            const uint16_t* a0 = ap + (ir / 16) * panel;
            block(t, nq, a0, a0 + panel, b0, b0 + panel, blk);
            write_block(blk, C + (ic + ir) * ldc + jc + jr, ldc, std::min(kBlk, mc - ir), std::min(kBlk, nc - jr), mode,
                        beta);
          }
        }
      }
    }
  }
}

// Threads over whole 32-row blocks of C, or 32-column blocks when there are more of those.
template <class Tiles>
void threaded(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
              int64_t ldb, float beta, float* C, int64_t ldc) {
  const int64_t m_blocks = (M + kBlk - 1) / kBlk, n_blocks = (N + kBlk - 1) / kBlk;
  if (m_blocks >= n_blocks) {
    parallel_for(m_blocks, kBlk * N * K, [&](int64_t b, int64_t e) {
      const int64_t i0 = b * kBlk, i1 = std::min(M, e * kBlk);
      const float* a = trans_a ? A + i0 : A + i0 * lda;
      serial<Tiles>(trans_a, trans_b, i1 - i0, N, K, a, lda, B, ldb, beta, C + i0 * ldc, ldc);
    });
  } else {
    parallel_for(n_blocks, kBlk * M * K, [&](int64_t b, int64_t e) {
      const int64_t j0 = b * kBlk, j1 = std::min(N, e * kBlk);
      const float* bb = trans_b ? B + j0 * ldb : B + j0;
      serial<Tiles>(trans_a, trans_b, M, j1 - j0, K, A, lda, bb, ldb, beta, C + j0, ldc);
    });
  }
}

#if MG_AMX_KERNEL
// The instructions. LDTILECFG and TILERELEASE are functions built for AMX whatever -march says; GCC's
// tile load / store / zero / dot-product macros are inline assembly that takes the tile number as a
// literal, so each template picks its literal. Inline assembly declares no memory read: a compiler
// barrier before each load keeps the packing stores ahead of it.
__attribute__((target("amx-tile"))) void amx_load_config(const TileConfig* cfg) { _tile_loadconfig(cfg); }
__attribute__((target("amx-tile"))) void amx_release() { _tile_release(); }

#define MG_TILE_EACH(F) F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7)

class RealTiles {
 public:
  explicit RealTiles(const TileConfig& cfg) { amx_load_config(&cfg); }
  ~RealTiles() { amx_release(); }
  RealTiles(const RealTiles&) = delete;
  RealTiles& operator=(const RealTiles&) = delete;
  template <int T>
  void zero() {
#define MG_TILE_ZERO(n) \
  if constexpr (T == n) _tile_zero(n);
    MG_TILE_EACH(MG_TILE_ZERO)
#undef MG_TILE_ZERO
  }
  template <int T>
  void load(const void* base, int64_t stride) {
    asm volatile("" ::: "memory");
#define MG_TILE_LOAD(n) \
  if constexpr (T == n) _tile_loadd(n, base, stride);
    MG_TILE_EACH(MG_TILE_LOAD)
#undef MG_TILE_LOAD
  }
  template <int T>
  void store(void* base, int64_t stride) {
#define MG_TILE_STORE(n) \
  if constexpr (T == n) _tile_stored(n, base, stride);
    MG_TILE_EACH(MG_TILE_STORE)
#undef MG_TILE_STORE
  }
  template <int C, int A, int B>
  void dpbf16ps() {
    static_assert((C == 0 && A == 4 && B == 6) || (C == 1 && A == 4 && B == 7) || (C == 2 && A == 5 && B == 6) ||
                      (C == 3 && A == 5 && B == 7),
                  "add the tile triple to RealTiles::dpbf16ps");
    if constexpr (C == 0) _tile_dpbf16ps(0, 4, 6);
    if constexpr (C == 1) _tile_dpbf16ps(1, 4, 7);
    if constexpr (C == 2) _tile_dpbf16ps(2, 5, 6);
    if constexpr (C == 3) _tile_dpbf16ps(3, 5, 7);
  }
};
#undef MG_TILE_EACH

// Linux grants the tile data (8 KiB of extra signal-frame state) only on request, per process.
constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;

bool detect_amx() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool bf16 = (d >> 22) & 1u, tile = (d >> 24) & 1u;
  if (!bf16 || !tile) return false;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;  // refused: not usable
}
#endif  // MG_AMX_KERNEL

}  // namespace

bool cpu_has_amx() {
#if MG_AMX_KERNEL
  static const bool has = detect_amx();
  return has;
#else
  return false;
#endif
}

void gemm_bf16_amx(bool emulated, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
                   int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (emulated) return threaded<EmulatedTiles>(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
#if MG_AMX_KERNEL
  MG_CHECK(cpu_has_amx(), "[matmul] the amx gemm needs a CPU with AMX-BF16 and AMX-TILE (and Linux's permission)");
  threaded<RealTiles>(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
#else
  MG_CHECK(false, "[matmul] the amx gemm is only built for x86-64 Linux");
#endif
}

}  // namespace mg::cpu
