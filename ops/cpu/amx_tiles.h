// The few AMX tile operations the bf16 gemm uses (ops/cpu/gemm_amx.cpp), behind one small interface
// with two implementations of the same semantics, and a third that leaves them out:
//   RealTiles (gemm_amx.cpp): the instructions (LDTILECFG, TILELOADD, TILESTORED, TILEZERO, TDPBF16PS,
//                             TILERELEASE), compiled whatever -march says and run only where the CPU has
//                             AMX and Linux granted the tile data (cpu_has_amx, gemm.h);
//   EmulatedTiles (here):     plain C++ that any CPU runs, so that the kernel's packing, tiling and edges
//                             are tested everywhere (MG_BF16_GEMM=amx-emu, or Bf16Gemm::amx_emulated);
//   NoTiles (here):           no tile operation at all (the stores write zeros), for timing the kernel's
//                             packing, loops and write-back alone (bench matmul).
// A kernel is a template on the implementation; tile numbers are template arguments, as the
// instructions take them as immediates.
//
// Semantics (Intel SDM, "Intel AMX"): 8 tile registers of at most 16 rows of at most 64 bytes, each
// with the rows and bytes per row (colsb) of the configuration. TDPBF16PS C, A, B with A holding bf16
// pairs (rows M, colsb 4 Kp) and B in the VNNI pair layout (rows Kp, colsb 4 N: row p holds
// (b[2p][n], b[2p + 1][n]) for each column n) adds to the float32 C (rows M, colsb 4 N):
//     for m, for p in order, for n:  c[m][n] += a[m][2p] b[2p][n];  c[m][n] += a[m][2p + 1] b[2p + 1][n]
// bf16 inputs below the normal range read as zero (DAZ), as the instruction does; float32 sums round to
// nearest. The hardware may order or fuse the additions of one instruction differently: the two agree up
// to float32 summation order (a product of two bf16 is exact in float32). The hardware also flushes
// float32 results below the normal range to zero, and so reads a subnormal C it starts from as zero (the
// kernel starts from C in its later K blocks); the emulation keeps them, a difference below 2^-126.
#pragma once
#include <cstdint>
#include <cstring>

#include "core/bf16.h"
#include "core/error.h"

namespace mg::cpu {

inline constexpr int kTileRows = 16, kTileColsb = 64, kTiles = 8;

// The LDTILECFG memory operand (64 bytes, palette 1).
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};  // bytes per row of tile t (only the first 8 exist in palette 1)
  uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64);

class EmulatedTiles {
 public:
  explicit EmulatedTiles(const TileConfig& cfg) : cfg_(cfg) {
    for (int t = 0; t < kTiles; ++t)
      MG_CHECK(cfg.rows[t] <= kTileRows && cfg.colsb[t] <= kTileColsb && cfg.colsb[t] % 4 == 0,
               "[amx tiles] tile {} configured as {} rows x {} bytes: at most {} rows of {} bytes (a multiple of 4)", t,
               cfg.rows[t], cfg.colsb[t], kTileRows, kTileColsb);
  }
  template <int T>
  void zero() {
    std::memset(data_[T], 0, sizeof data_[T]);
  }
  template <int T>
  void load(const void* base, int64_t stride) {
    const char* p = static_cast<const char*>(base);
    for (int r = 0; r < cfg_.rows[T]; ++r) std::memcpy(data_[T][r], p + r * stride, cfg_.colsb[T]);
  }
  template <int T>
  void store(void* base, int64_t stride) const {
    char* p = static_cast<char*>(base);
    for (int r = 0; r < cfg_.rows[T]; ++r) std::memcpy(p + r * stride, data_[T][r], cfg_.colsb[T]);
  }
  template <int C, int A, int B>
  void dpbf16ps() {
    static_assert(C != A && C != B && A != B, "TDPBF16PS needs three distinct tiles");
    const int m_rows = cfg_.rows[C], n = cfg_.colsb[C] / 4, pairs = cfg_.colsb[A] / 4;
    MG_CHECK(cfg_.rows[A] == m_rows && cfg_.rows[B] == pairs && cfg_.colsb[B] == cfg_.colsb[C],
             "[amx tiles] TDPBF16PS shapes do not match: C {}x{}, A {}x{}, B {}x{} (rows x bytes)", m_rows,
             cfg_.colsb[C], cfg_.rows[A], cfg_.colsb[A], cfg_.rows[B], cfg_.colsb[B]);
    for (int m = 0; m < m_rows; ++m) {
      float c[16];
      std::memcpy(c, data_[C][m], sizeof c);
      for (int p = 0; p < pairs; ++p) {
        const float a0 = bf16(A, m, 2 * p), a1 = bf16(A, m, 2 * p + 1);
        for (int j = 0; j < n; ++j) {
          c[j] += a0 * bf16(B, p, 2 * j);
          c[j] += a1 * bf16(B, p, 2 * j + 1);
        }
      }
      std::memcpy(data_[C][m], c, sizeof c);
    }
  }

 private:
  // Element e of row r of tile t read as bf16, subnormals as zero.
  float bf16(int t, int r, int e) const {
    uint16_t u;
    std::memcpy(&u, data_[t][r] + 2 * e, 2);
    if ((u & 0x7f80u) == 0) u &= 0x8000u;
    return bf16_to_float(u);
  }
  TileConfig cfg_;
  alignas(64) unsigned char data_[kTiles][kTileRows][kTileColsb] = {};
};

// No tiles at all: every operation does nothing but the stores, which zero their rows. The kernel on
// these runs its packing, loops and write-back alone: bench matmul times that part of the AMX kernel on
// any CPU (its product is zeros).
class NoTiles {
 public:
  explicit NoTiles(const TileConfig& cfg) : cfg_(cfg) {}
  template <int T>
  void zero() {}
  template <int T>
  void load(const void*, int64_t) {
    asm volatile("" ::: "memory");  // as the real load: the packing's stores stay ahead of it
  }
  template <int T>
  void store(void* base, int64_t stride) const {
    char* p = static_cast<char*>(base);
    if (cfg_.colsb[T] == kTileColsb)  // whole rows: a constant size, stores the compiler writes out
      for (int r = 0; r < cfg_.rows[T]; ++r) std::memset(p + r * stride, 0, kTileColsb);
    else
      for (int r = 0; r < cfg_.rows[T]; ++r) std::memset(p + r * stride, 0, cfg_.colsb[T]);
  }
  template <int C, int A, int B>
  void dpbf16ps() {}

 private:
  TileConfig cfg_;
};

}  // namespace mg::cpu
