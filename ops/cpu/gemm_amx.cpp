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
// TDPBF16PS. The accumulators start from zero in the first K block (from C where beta is 1) and from C
// in the later ones, and are stored into C; an edge block, and every block of the first K block where
// beta is neither 0 nor 1 (then C = sums + beta C), goes through a local 32 x 32 block, its valid part
// copied in and out: the same arithmetic for a full block and an edge.
//
// Threads: C split into contiguous ranges of 32-row (or 32-column) blocks, K never split and the blocking
// fixed, so an element's sum is the same for any thread count. Tile state is per thread: every slice
// loads the tile configuration and releases the tiles at its end.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/bf16.h"
#include "core/parallel.h"
#include "ops/cpu/amx_tiles.h"
#include "ops/cpu/bf16_vec.h"
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

// ---- Packing ----
// A tile of either operand covers 16 rows r (rows of op(A), or columns of op(B)) and one 32-k chunk, as
// 16 x 16 units: a unit is a bf16 pair (v(r, 2p), v(r, 2p + 1)) as 32 bits, the first value in the low
// half (the pair's two uint16 in memory order). An A tile holds unit (r, p) in row r, column p; a B tile
// (the VNNI layout) in row p, column r. Rounding is bf16_vec.h's, eight values at a time.
using Words = uint16_t __attribute__((vector_size(32)));  // the 16 halves of eight floats' bits

// Units (r, p .. p + 7) from the 16 consecutive k = 2p .. 2p + 15 of row r of v: the top halves of the
// rounded floats, in order.
inline Bits8 units_along_k(const float* src) {
  const Words x = (Words)round_bits(load_bits(src)), y = (Words)round_bits(load_bits(src + 8));
  return (Bits8)__builtin_shufflevector(x, y, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}

// Units (r .. r + 7, p) from k = 2p and k = 2p + 1, each eight consecutive r of v: the two rows' rounded
// top halves interleaved.
inline Bits8 units_along_r(const float* k_even, const float* k_odd) {
  const Words x = (Words)round_bits(load_bits(k_even)), y = (Words)round_bits(load_bits(k_odd));
  return (Bits8)__builtin_shufflevector(x, y, 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
}

// An 8 x 8 matrix of 32-bit units transposed in registers (24 shuffles; with AVX, unpack, shuffle and
// a 128-bit lane permute).
inline void transpose8(Bits8 (&v)[8]) {
  Bits8 t[8], s[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = __builtin_shufflevector(v[i], v[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[i + 1] = __builtin_shufflevector(v[i], v[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int h = 0; h < 8; h += 4)
    for (int e = 0; e < 2; ++e) {
      s[h + 2 * e] = __builtin_shufflevector(t[h + e], t[h + e + 2], 0, 1, 8, 9, 4, 5, 12, 13);
      s[h + 2 * e + 1] = __builtin_shufflevector(t[h + e], t[h + e + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    }
  for (int e = 0; e < 4; ++e) {
    v[e] = __builtin_shufflevector(s[e], s[4 + e], 0, 1, 2, 3, 8, 9, 10, 11);
    v[e + 4] = __builtin_shufflevector(s[e], s[4 + e], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}

// A prefetch `rows` rows of ld floats past p, which may lie past the operand's end (a prefetch never
// faults); the address is computed as an integer, not as a pointer past the array.
inline void prefetch_rows(const float* p, int64_t rows, int64_t ld) {
  __builtin_prefetch(
      reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(p) + uintptr_t(rows * ld) * sizeof(float)));
}

// Eight units into row `row` of a tile (16 units of 32 bits), from unit `col` on.
inline void put_units(uint16_t* tile, int64_t row, int64_t col, Bits8 u) {
  std::memcpy(tile + 32 * row + 2 * col, &u, sizeof u);
}
inline Bits8 get_units(const uint16_t* tile, int64_t row, int64_t col) {
  Bits8 u;
  std::memcpy(&u, tile + 32 * row + 2 * col, sizeof u);
  return u;
}

// A tile's 16 x 16 units transposed in place: A's layout into B's or back.
void transpose_tile(uint16_t* tile) {
  Bits8 x[8], y[8];
  for (int64_t d = 0; d < 16; d += 8) {  // the two diagonal 8 x 8 blocks
    for (int64_t i = 0; i < 8; ++i) x[i] = get_units(tile, d + i, d);
    transpose8(x);
    for (int64_t i = 0; i < 8; ++i) put_units(tile, d + i, d, x[i]);
  }
  for (int64_t i = 0; i < 8; ++i) x[i] = get_units(tile, i, 8), y[i] = get_units(tile, 8 + i, 0);
  transpose8(x);
  transpose8(y);
  for (int64_t i = 0; i < 8; ++i) put_units(tile, 8 + i, 0, x[i]), put_units(tile, i, 8, y[i]);
}

// An edge tile, one value at a time: rows r0 .. r0 + 15 and k0 .. k0 + 31 of v (S holds v(r, k) at
// S[r ld + k] when k_inner, else at S[k ld + r]), in B's layout when b_layout, else in A's; rc and kc
// are the rows and k left from r0 and k0, past which the tile holds zeros.
void pack_edge_tile(bool k_inner, bool b_layout, const float* S, int64_t ld, int64_t r0, int64_t k0, int64_t rc,
                    int64_t kc, uint16_t* tile) {
  std::fill(tile, tile + kTileElems, uint16_t(0));
  const int64_t rn = std::min<int64_t>(rc, 16), kn = std::min<int64_t>(kc, kChunk);
  for (int64_t r = 0; r < rn; ++r)
    for (int64_t k = 0; k < kn; ++k) {
      const float v = k_inner ? S[(r0 + r) * ld + k0 + k] : S[(k0 + k) * ld + r0 + r];
      const int64_t unit = b_layout ? k / 2 * 16 + r : r * 16 + k / 2;
      tile[2 * unit + k % 2] = bf16_bits(v);
    }
}

// A block of rc x kc values v(r0 + r, k0 + k) (S holds v(r, k) at S[r ld + k] when k_inner, else at
// S[k ld + r]) as round_up(rc, 32) / 16 panels of nq = ceil(kc / 32) tiles, panel by panel (the tiles
// of a panel consecutive in k), in B's layout when b_layout, else in A's. The whole tiles are read along
// S's rows, one row after another: along k they give A's layout, along r B's; the other two
// combinations then transpose each tile. The edge tiles (the last chunk, the last panels) go value by
// value, zero-padded.
void pack_panels(bool k_inner, bool b_layout, const float* S, int64_t ld, int64_t r0, int64_t k0, int64_t rc,
                 int64_t kc, uint16_t* dst) {
  const int64_t nq = (kc + kChunk - 1) / kChunk, panels = round_up(rc, kBlk) / 16;
  const int64_t full_panels = rc / 16, full_q = kc / kChunk;
  auto at = [&](int64_t pn, int64_t q) { return dst + (pn * nq + q) * kTileElems; };
  if (k_inner) {  // row r of a panel: row r of each of its tiles
    for (int64_t pn = 0; pn < full_panels; ++pn)
      for (int64_t r = 0; r < 16; ++r) {
        const float* src = S + (r0 + 16 * pn + r) * ld + k0;
        for (int64_t q = 0; q < full_q; ++q) {
          prefetch_rows(src + kChunk * q, 2, ld);  // two rows ahead (the prefetchers lose short rows)
          prefetch_rows(src + kChunk * q + 16, 2, ld);
          for (int64_t p = 0; p < 16; p += 8) put_units(at(pn, q), r, p, units_along_k(src + kChunk * q + 2 * p));
        }
      }
  } else {  // pair p of a chunk: row p of its tile in each panel
    for (int64_t q = 0; q < full_q; ++q)
      for (int64_t p = 0; p < 16; ++p) {
        const float* even = S + (k0 + kChunk * q + 2 * p) * ld + r0;
        for (int64_t pn = 0; pn < full_panels; ++pn) {
          prefetch_rows(even + 16 * pn, 4, ld);  // the pair two ahead
          prefetch_rows(even + 16 * pn, 5, ld);
          for (int64_t h = 0; h < 16; h += 8)
            put_units(at(pn, q), p, h, units_along_r(even + 16 * pn + h, even + ld + 16 * pn + h));
        }
      }
  }
  if (k_inner == b_layout)
    for (int64_t pn = 0; pn < full_panels; ++pn)
      for (int64_t q = 0; q < full_q; ++q) transpose_tile(at(pn, q));
  for (int64_t pn = 0; pn < panels; ++pn)
    for (int64_t q = pn < full_panels ? full_q : 0; q < nq; ++q)
      pack_edge_tile(k_inner, b_layout, S, ld, r0 + 16 * pn, k0 + kChunk * q, rc - 16 * pn, kc - kChunk * q, at(pn, q));
}

// op(A)[i0:i0+mc, k0:k0+kc] (op(A)(i, k) = A[i lda + k], or A[k lda + i] when trans).
void pack_a(bool trans, const float* A, int64_t lda, int64_t i0, int64_t k0, int64_t mc, int64_t kc, uint16_t* dst) {
  pack_panels(!trans, false, A, lda, i0, k0, mc, kc, dst);
}

// op(B)[k0:k0+kc, j0:j0+nc] in the VNNI pair layout (op(B)(k, j) = B[k ldb + j], or B[j ldb + k] when
// trans).
void pack_b(bool trans, const float* B, int64_t ldb, int64_t k0, int64_t j0, int64_t kc, int64_t nc, uint16_t* dst) {
  pack_panels(trans, true, B, ldb, j0, k0, nc, kc, dst);
}

TileConfig full_tiles() {
  TileConfig cfg;
  for (int t = 0; t < kTiles; ++t) cfg.rows[t] = kTileRows, cfg.colsb[t] = kTileColsb;
  return cfg;
}

// out (32 x 32, row stride ldo) = two A panels times two B panels over nq chunks, added to out itself
// when `add` (the accumulators start from it).
template <class Tiles>
inline void block(Tiles& t, int64_t nq, const uint16_t* a0, const uint16_t* a1, const uint16_t* b0, const uint16_t* b1,
                  float* out, int64_t ldo, bool add) {
  const int64_t ld = ldo * int64_t(sizeof(float));
  if (add) {
    t.template load<0>(out, ld);
    t.template load<1>(out + 16, ld);
    t.template load<2>(out + 16 * ldo, ld);
    t.template load<3>(out + 16 * ldo + 16, ld);
  } else {
    t.template zero<0>();
    t.template zero<1>();
    t.template zero<2>();
    t.template zero<3>();
  }
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
  t.template store<0>(out, ld);
  t.template store<1>(out + 16, ld);
  t.template store<2>(out + 16 * ldo, ld);
  t.template store<3>(out + 16 * ldo + 16, ld);
}

// How a block's sums reach C: C = sums (the first K block, beta 0), C = sums + beta C (the first K
// block, beta != 0), or the accumulators start from C (later K blocks).
enum class Store { overwrite, scale, accumulate };

// The valid mr x nr part of C into a 32 x 32 block, zeros around it (an edge block that accumulates).
void read_block(const float* C, int64_t ldc, int64_t mr, int64_t nr, float* blk) {
  std::fill(blk, blk + kBlk * kBlk, 0.0f);
  for (int64_t i = 0; i < mr; ++i) std::copy(C + i * ldc, C + i * ldc + nr, blk + i * kBlk);
}

// The valid mr x nr part of a 32 x 32 block into C.
void write_block(const float* blk, float* C, int64_t ldc, int64_t mr, int64_t nr, Store mode, float beta) {
  for (int64_t i = 0; i < mr; ++i) {
    const float* s = blk + i * kBlk;
    float* c = C + i * ldc;
    if (mode == Store::scale)
      for (int64_t j = 0; j < nr; ++j) c[j] = s[j] + beta * c[j];
    else
      for (int64_t j = 0; j < nr; ++j) c[j] = s[j];
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
      // beta 1 in the first K block is a sum that starts from C, as every later K block is.
      const Store mode = pc > 0 || beta == 1.0f ? Store::accumulate : beta == 0.0f ? Store::overwrite : Store::scale;
      pack_b(trans_b, B, ldb, pc, jc, kc, nc, bp);
      for (int64_t ic = 0; ic < M; ic += kMC) {
        const int64_t mc = std::min(kMC, M - ic);
        pack_a(trans_a, A, lda, ic, pc, mc, kc, ap);
        for (int64_t jr = 0; jr < nc; jr += kBlk) {
          const uint16_t* b0 = bp + (jr / 16) * panel;
          for (int64_t ir = 0; ir < mc; ir += kBlk) {
            const uint16_t* a0 = ap + (ir / 16) * panel;
            float* c = C + (ic + ir) * ldc + jc + jr;
            const int64_t mr = std::min(kBlk, mc - ir), nr = std::min(kBlk, nc - jr);
            const bool add = mode == Store::accumulate;
            if (mode != Store::scale && mr == kBlk && nr == kBlk) {  // a whole block: in C itself
              block(t, nq, a0, a0 + panel, b0, b0 + panel, c, ldc, add);
            } else {  // an edge, or beta: through a local block, with the same arithmetic
              if (add) read_block(c, ldc, mr, nr, blk);
              block(t, nq, a0, a0 + panel, b0, b0 + panel, blk, kBlk, add);
              write_block(blk, c, ldc, mr, nr, mode, beta);
            }
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

void gemm_bf16_amx(AmxTiles tiles, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
                   int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (tiles == AmxTiles::none) return threaded<NoTiles>(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
  if (tiles == AmxTiles::emulated)
    return threaded<EmulatedTiles>(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
#if MG_AMX_KERNEL
  MG_CHECK(cpu_has_amx(), "[matmul] the amx gemm needs a CPU with AMX-BF16 and AMX-TILE (and Linux's permission)");
  threaded<RealTiles>(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
#else
  MG_CHECK(false, "[matmul] the amx gemm is only built for x86-64 Linux");
#endif
}

}  // namespace mg::cpu
