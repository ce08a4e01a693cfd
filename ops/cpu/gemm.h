// Our CPU matrix multiply (no BLAS). Row-major C (M, N) = op(A) op(B) + beta * C, where op(A) is
// A (M, K) with row stride lda, or, when trans_a, the transpose of a stored (K, M) matrix; same for B.
// Blocked for the caches, vectorised over N, threaded over tiles of C. The one place to make fast. At most
// 16 rows of C without trans_a (decoding) take a direct path that reads op(B) in place (gemm.cpp, "Small M").
#pragma once
#include <cstdint>

namespace mg::cpu {

// At most this many rows of C, without trans_a, take the small-M path (gemm.cpp, "Small M").
inline constexpr int64_t kGemmSmallM = 16;
// The small-M path runs threads only from this many multiply-adds (M N K) up. Measured on the 2-core
// Xeon (Sapphire Rapids class) under load (other builds, load average 6.5), bench matmul's decode
// section with the grain forced to 0: serial costs ~44 ps per multiply-add (base in_proj 16x2048x512,
// 16.7 M multiply-adds: 0.65-0.73 ms on 1 thread), while every 2-thread region cost 9.3-12 ms whatever
// the shape (one thread descheduled for a scheduler slice; the packed path's regions show the same
// ~10 ms). An idle fork/join is a few microseconds, but on a shared machine a region can cost a slice,
// so threads only where a ~10 ms stall is small next to the work: 2^28 = 268 M multiply-adds (~12 ms
// serial), 16x the largest decode product of the presets; every decode call is serial, so --threads 2
// runs exactly the 1-thread code there (never slower, busy core or not). With a busy process on one
// core 2 threads cannot beat 1 at any size (one of them gets half a core).
inline constexpr int64_t kGemmSmallMGrain = int64_t(1) << 28;

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb,
          T beta, T* C, int64_t ldc);

// The packed (BLIS-style) path alone, whatever M: gemm uses it except for small M without trans_a
// (at most 16 rows of C, see gemm.cpp's "Small M"). Exposed for the benchmark's before / after.
template <class T>
void gemm_packed(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
                 int64_t ldb, T beta, T* C, int64_t ldc);

// ---- Mixed precision (ops/autocast.h): C = bf16(op(A)) bf16(op(B)) + beta C, every input rounded to
// bfloat16 (core/bf16.h), the products (exact in float32) summed in float32. Three ways, one arithmetic
// up to the order of the additions:
//   amx:    TDPBF16PS on 16 x 32 bf16 tiles into 16 x 16 float32 tiles (gemm_amx.cpp), where the CPU has
//           AMX-BF16 and AMX-TILE and Linux grants the tile data; amx_emulated runs the same kernel
//           (packing, tiling, edges) on plain C++ tiles of the same semantics (amx_tiles.h), for tests;
//   dpbf16: the AVX512-BF16 VDPBF16PS micro-kernel on packed bf16 pairs (gemm_bf16.cpp);
//   fp32:   the float32 gemm above on the rounded operands, rounded as its packing copies them
//           ("fp32-on-rounded": the same multiply-adds as float32 plus the rounding, 0-5% on the
//           training shapes: docs/perf.md, "bf16 without AMX").
// `automatic` takes amx where the CPU has it; else dpbf16 on AMD CPUs with AVX512-BF16 (Zen 4 runs
// VDPBF16PS at twice the float FMA rate, the Sapphire Rapids Xeon at half of it: docs/perf.md, "Mixed
// precision"); else fp32. MG_BF16_GEMM=auto|amx|amx-emu|dpbf16|fp32 overrides. Each way gives the same
// bits for 1 or many threads.
enum class Bf16Gemm { automatic, amx, amx_emulated, dpbf16, fp32 };
void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
               int64_t ldb, float beta, float* C, int64_t ldc, Bf16Gemm way = Bf16Gemm::automatic);
bool cpu_has_avx512_bf16();   // the instruction set, compiled in and reported by this CPU
bool cpu_has_amx();           // AMX-BF16 and AMX-TILE reported by CPUID, and Linux granted the tile data
Bf16Gemm bf16_gemm_choice();  // what `automatic` runs here (never automatic)
// "amx", "amx-emulated", "avx512-bf16" or "fp32-on-rounded" (automatic: the name of bf16_gemm_choice()).
const char* bf16_gemm_name(Bf16Gemm way);

// The float32 gemm on bf16-rounded operands (the fp32 way): op(A) and op(B) rounded as the packed path
// copies them, so bit-identical to gemm<float> on rounded copies of A and B.
void gemm_rounded(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                  const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// dst[0:n] = round_bf16(src[0:n]) (core/bf16.h), the same bits, as the fp32 way's packing rounds (vector
// bit operations, eight values at a time); src == dst rounds in place.
void round_bf16_span(const float* src, float* dst, int64_t n);

// The AMX way (gemm_amx.cpp), on the instructions, on amx_tiles.h's EmulatedTiles, or with no tile
// operations at all (NoTiles: C gets zeros where beta is 0), for timing the kernel's packing, loops and
// write-back alone.
enum class AmxTiles { real, emulated, none };
void gemm_bf16_amx(AmxTiles tiles, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
                   int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

}  // namespace mg::cpu
