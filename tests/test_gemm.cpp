// ops/cpu/gemm against a naive double-precision triple loop: every transposition, sizes that hit every
// edge path (partial MR / NR tiles, the narrow one-vector kernel, several KC / MC / NC blocks, the
// unpacked-A path), sub-blocks of C with ldc > N, beta 0 over NaN, beta 1 accumulation, stride-0
// broadcast rows, float and double, and bit-identical results for 1 and 2 threads. The bf16 gemm (mixed
// precision) against the same loop over inputs rounded to bf16 by the test's own rounding, both ways.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "core/parallel.h"
#include "ops/cpu/gemm.h"

using namespace mg;

namespace {

// x rounded to the nearest bfloat16 (ties to the even one), found as the nearer of the two bf16 values
// around it: a reference for core/bf16.h that does not use its add-and-shift formula. Finite x only.
double ref_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  const uint32_t lo_bits = u & 0xffff0000u, hi_bits = lo_bits + 0x10000u;  // toward zero, and one ulp out
  float lo, hi;
  std::memcpy(&lo, &lo_bits, 4);
  std::memcpy(&hi, &hi_bits, 4);
  const double dlo = std::abs(double(x) - lo), dhi = std::abs(double(hi) - x);
  if (dlo != dhi) return dlo < dhi ? lo : hi;
  return (lo_bits >> 16) % 2 == 0 ? lo : hi;
}

struct Dims {
  int64_t M, N, K;
};

struct Case {
  bool ta, tb;
  int64_t M, N, K;
  int64_t lda_pad = 0, ldb_pad = 0, ldc_pad = 0;  // extra row stride beyond the minimum
  bool a_broadcast = false, b_broadcast = false;  // stride-0 rows (lda / ldb = 0)
  double beta = 0;
};

std::string describe(const Case& c) {
  return "ta " + std::to_string(c.ta) + " tb " + std::to_string(c.tb) + " M " + std::to_string(c.M) + " N " +
         std::to_string(c.N) + " K " + std::to_string(c.K) + " ldc+" + std::to_string(c.ldc_pad) + " beta " +
         std::to_string(c.beta) + (c.a_broadcast ? " lda=0" : "") + (c.b_broadcast ? " ldb=0" : "");
}

// Runs one case in T; returns the max error relative to sum_k |a||b| (plus |beta c|) per element, and
// checks that C's padding columns are untouched. `out` receives C.
template <class T>
double run_case(const Case& c, std::vector<T>* out = nullptr, uint32_t seed = 7,
                std::optional<cpu::Bf16Gemm> bf16 = std::nullopt, bool against_reference = true) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(-1, 1);
  // Stored A: (M, K) or (K, M) when ta; stored B: (K, N) or (N, K) when tb.
  const int64_t a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K;
  const int64_t b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N;
  const int64_t lda = c.a_broadcast ? 0 : a_cols + c.lda_pad, ldb = c.b_broadcast ? 0 : b_cols + c.ldb_pad;
  const int64_t ldc = c.N + c.ldc_pad;
  std::vector<T> A((c.a_broadcast ? 1 : a_rows) * (a_cols + c.lda_pad)),
      B((c.b_broadcast ? 1 : b_rows) * (b_cols + c.ldb_pad));
  for (T& x : A) x = T(dist(rng));
  for (T& x : B) x = T(dist(rng));
  std::vector<T> C(c.M * ldc);
  const T sentinel = T(12345);
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = 0; j < ldc; ++j)
      C[i * ldc + j] = j >= c.N ? sentinel : c.beta == 0 ? std::numeric_limits<T>::quiet_NaN() : T(dist(rng));
  const std::vector<T> C0 = C;

  auto in = [&](T v) { return bf16 ? ref_bf16(float(v)) : double(v); };
  auto a_at = [&](int64_t i, int64_t k) { return in(c.ta ? A[k * lda + i] : A[i * lda + k]); };
  auto b_at = [&](int64_t k, int64_t j) { return in(c.tb ? B[j * ldb + k] : B[k * ldb + j]); };

  if constexpr (std::is_same_v<T, float>) {
    if (bf16)
      cpu::gemm_bf16(c.ta, c.tb, c.M, c.N, c.K, A.data(), lda, B.data(), ldb, T(c.beta), C.data(), ldc, *bf16);
    else
      cpu::gemm<T>(c.ta, c.tb, c.M, c.N, c.K, A.data(), lda, B.data(), ldb, T(c.beta), C.data(), ldc);
  } else {
    cpu::gemm<T>(c.ta, c.tb, c.M, c.N, c.K, A.data(), lda, B.data(), ldb, T(c.beta), C.data(), ldc);
  }

  if (out) *out = C;
  if (!against_reference) return 0;  // the caller compares results with each other, not with the sums below
  double worst = 0;
  for (int64_t i = 0; i < c.M; ++i) {
    for (int64_t j = 0; j < ldc; ++j) {
      if (j >= c.N) {
        if (C[i * ldc + j] != sentinel) return std::numeric_limits<double>::infinity();  // wrote past N
        continue;
      }
      double want = c.beta == 0 ? 0.0 : c.beta * double(C0[i * ldc + j]);
      double scale = std::abs(want) + 1e-30;
      for (int64_t k = 0; k < c.K; ++k) {
        want += a_at(i, k) * b_at(k, j);
        scale += std::abs(a_at(i, k) * b_at(k, j));
      }
      const double got = double(C[i * ldc + j]);
      const double err = std::isfinite(got) ? std::abs(got - want) / scale : std::numeric_limits<double>::infinity();
      worst = std::max(worst, err);
    }
  }
  return worst;
}

template <class T>
double tolerance() {
  return std::is_same_v<T, float> ? 3e-5 : 1e-12;
}

template <class T>
void check_cases(const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    const double err = run_case<T>(c);
    INFO(describe(c) << (std::is_same_v<T, float> ? " float" : " double"));
    CHECK(err <= tolerance<T>());
  }
}

// The four transpositions of each of the sizes.
std::vector<Case> all_transpositions(const std::vector<Dims>& dims) {
  std::vector<Case> v;
  for (auto [M, N, K] : dims)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) v.push_back({ta, tb, M, N, K});
  return v;
}

}  // namespace

TEST_CASE("gemm: all transpositions, odd sizes, float and double") {
  const int64_t sizes[] = {1, 7, 33, 97};
  std::vector<Dims> dims;
  for (int64_t M : sizes)
    for (int64_t N : sizes)
      for (int64_t K : sizes) dims.push_back({M, N, K});
  const std::vector<Case> cases = all_transpositions(dims);
  check_cases<float>(cases);
  check_cases<double>(cases);
}

TEST_CASE("gemm: large and edge-heavy sizes (several cache blocks, narrow tiles)") {
  const std::vector<Case> cases = all_transpositions({{300, 1000, 37},
                                                      {1000, 300, 301},
                                                      {151, 16, 700},
                                                      {37, 48, 513},
                                                      {200, 8, 1000},
                                                      {13, 4200, 9},
                                                      {1001, 17, 260},
                                                      {49, 1030, 300}});
  check_cases<float>(cases);
  check_cases<double>(cases);
}

TEST_CASE("gemm: ldc > N sub-blocks, padded lda / ldb, beta 0 over NaN and beta 1 accumulation") {
  std::vector<Case> cases;
  for (double beta : {0.0, 1.0, -0.5})
    for (Case c : all_transpositions({{33, 97, 300}, {97, 33, 7}, {300, 70, 520}})) {
      c.ldc_pad = 5;
      c.lda_pad = 3;
      c.ldb_pad = 11;
      c.beta = beta;
      cases.push_back(c);
    }
  check_cases<float>(cases);
  check_cases<double>(cases);
}

TEST_CASE("gemm: K = 0 scales C by beta (0 overwrites NaN)") {
  for (double beta : {0.0, 2.0}) {
    Case c{false, false, 9, 35, 0};
    c.beta = beta;
    c.ldc_pad = 2;
    CHECK(run_case<float>(c) == 0.0);
  }
}

TEST_CASE("gemm: stride-0 broadcast rows (lda = 0 or ldb = 0)") {
  std::vector<Case> cases;
  for (Case c : all_transpositions({{97, 33, 300}, {8, 70, 33}, {300, 16, 1}})) {
    c.a_broadcast = true;
    cases.push_back(c);
    c.a_broadcast = false;
    c.b_broadcast = true;
    cases.push_back(c);
  }
  check_cases<float>(cases);
  check_cases<double>(cases);
}

TEST_CASE("gemm: results are bit-identical for 1 and 2 threads") {
  const int saved = num_threads();
  std::vector<Case> cases;
  for (Case c :
       all_transpositions({{1000, 97, 300}, {33, 1000, 520}, {301, 301, 301}, {4096, 16, 64}, {40, 48, 4096}})) {
    c.beta = 1.0;
    cases.push_back(c);
  }
  for (const Case& c : cases) {
    std::vector<float> f1, f2;
    std::vector<double> d1, d2;
    set_num_threads(1);
    run_case<float>(c, &f1, 7, std::nullopt, false);
    run_case<double>(c, &d1, 7, std::nullopt, false);
    set_num_threads(2);
    run_case<float>(c, &f2, 7, std::nullopt, false);
    run_case<double>(c, &d2, 7, std::nullopt, false);
    INFO(describe(c));
    CHECK(f1 == f2);
    CHECK(d1 == d2);
  }
  set_num_threads(saved);
}

// ---- Small M (decoding, M <= cpu::kGemmSmallM without trans_a: op(B) read in place) ----

TEST_CASE("gemm small M: both layouts of B, M = 1..16, odd N and K, strides, beta 0 over NaN and beta 1") {
  std::vector<Case> cases;
  for (int64_t M = 1; M <= cpu::kGemmSmallM; ++M)
    for (auto [N, K] :
         std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {7, 33}, {97, 301}, {37, 16}, {131, 47}, {9, 130}})
      for (bool tb : {false, true})
        for (double beta : {0.0, 1.0}) {
          Case c{false, tb, M, N, K};
          c.beta = beta;
          if ((M + N) % 2) {  // every other case with padded strides
            c.lda_pad = 3;
            c.ldb_pad = 5;
            c.ldc_pad = 7;
          }
          cases.push_back(c);
        }
  check_cases<float>(cases);
  check_cases<double>(cases);
}

namespace {

// C = op(A) op(B) for the rows [r0, r0 + m) of a fixed A (stored (16, K) with row stride lda), B as
// given (trans_b: (N, K), else (K, N)), beta 1 over a fixed C0; returns those m rows of C (N each).
template <class T>
std::vector<T> rows_product(bool tb, int64_t r0, int64_t m, int64_t N, int64_t K, const std::vector<T>& A, int64_t lda,
                            const std::vector<T>& B, int64_t ldb, const std::vector<T>& C0, T beta) {
  std::vector<T> C(C0.begin() + r0 * N, C0.begin() + (r0 + m) * N);
  cpu::gemm<T>(false, tb, m, N, K, A.data() + r0 * lda, lda, B.data(), ldb, beta, C.data(), N);
  return C;
}

// all_windows: every window of rows; else the full product and three single rows (for large sizes).
template <class T>
void check_rows_bit_identical(int64_t N, int64_t K, bool all_windows = true) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> dist(-1, 1);
  const int64_t M = cpu::kGemmSmallM, lda = K + 3;
  std::vector<T> A(M * lda), Bt(N * K), Bn(K * N), C0(M * N);
  for (T& x : A) x = T(dist(rng));
  for (T& x : Bt) x = T(dist(rng));
  for (T& x : Bn) x = T(dist(rng));
  for (T& x : C0) x = T(dist(rng));
  const int saved = num_threads();
  for (bool tb : {false, true})
    for (T beta : {T(0), T(1)}) {
      const std::vector<T>& B = tb ? Bt : Bn;
      const int64_t ldb = tb ? K : N;
      set_num_threads(1);
      const std::vector<T> full = rows_product<T>(tb, 0, M, N, K, A, lda, B, ldb, C0, beta);
      // Every row alone, and every window of rows (1..16 rows starting anywhere), on 1 and 2 threads.
      for (int threads : {1, 2}) {
        set_num_threads(threads);
        const std::vector<T> again = rows_product<T>(tb, 0, M, N, K, A, lda, B, ldb, C0, beta);
        INFO("tb " << tb << " beta " << double(beta) << " N " << N << " K " << K << " threads " << threads);
        CHECK(again == full);
        for (int64_t r0 = 0; r0 < M; r0 += all_windows ? 1 : 7)
          for (int64_t m = 1; r0 + m <= M; m += all_windows ? (m < 5 ? 1 : 4) : M) {
            const std::vector<T> part = rows_product<T>(tb, r0, m, N, K, A, lda, B, ldb, C0, beta);
            INFO("rows " << r0 << ".." << r0 + m - 1);
            CHECK(std::equal(part.begin(), part.end(), full.begin() + r0 * N));
          }
      }
    }
  set_num_threads(saved);
}

}  // namespace

TEST_CASE("gemm small M: a row's result does not depend on M, on the other rows, or on the thread count") {
  check_rows_bit_identical<float>(131, 47);
  check_rows_bit_identical<double>(37, 301);
  check_rows_bit_identical<float>(131, 16);  // K <= 32: the transposed tile from 3 rows, butterflies below
  check_rows_bit_identical<double>(45, 31);
  // Above the grain, so the 2-thread runs really split N over threads.
  static_assert(cpu::kGemmSmallM * 4099 * 4097 >= cpu::kGemmSmallMGrain, "test size below the thread grain");
  check_rows_bit_identical<float>(4099, 4097, /*all_windows=*/false);
}

TEST_CASE("gemm small M: the direct path is taken (its rounding differs from the packed gemm's)") {
  // Guards against the dispatch silently falling back to the packed path: for some element the two
  // summation orders must give different floats (K = 4097 products of mixed sign).
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-1, 1);
  const int64_t M = 4, N = 64, K = 4097;
  std::vector<float> A(M * K), B(N * K), C1(M * N), C2(M * N);
  for (float& x : A) x = dist(rng);
  for (float& x : B) x = dist(rng);
  cpu::gemm<float>(false, true, M, N, K, A.data(), K, B.data(), K, 0.f, C1.data(), N);
  cpu::gemm_packed<float>(false, true, M, N, K, A.data(), K, B.data(), K, 0.f, C2.data(), N);
  CHECK(C1 != C2);
}

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
namespace {

// The documented trans_b order (gemm.cpp, "Small M"), in scalars: W lanes of fma over the full
// W-chunks of K, the tree (lane i + W/2, then i + W/4, ..., i + 1), the tail fma chain, then beta.
// Only where the vector fma rounds once (AVX2, AVX-512), as std::fma.
template <class T>
T documented_dot(int64_t K, const T* a, const T* b, T beta, T c) {
#if defined(__AVX512F__)
  constexpr int W = 64 / sizeof(T);
#else
  constexpr int W = 32 / sizeof(T);
#endif
  T x[W] = {};
  const int64_t kv = K / W * W;
  for (int64_t k = 0; k < kv; k += W)
    for (int l = 0; l < W; ++l) x[l] = std::fma(a[k + l], b[k + l], x[l]);
  for (int h = W / 2; h >= 1; h /= 2)
    for (int i = 0; i < h; ++i) x[i] = x[i] + x[i + h];
  T s = x[0];
  for (int64_t k = kv; k < K; ++k) s = std::fma(a[k], b[k], s);
  return beta == T(0) ? s : std::fma(beta, c, s);
}

template <class T>
void check_documented_order() {
  std::mt19937 rng(17);
  std::uniform_real_distribution<double> dist(-1, 1);
  for (int64_t K : {5, 16, 31, 32, 47, 300})
    for (int64_t M : {1, 2, 3, 4, 7, 16})
      for (T beta : {T(0), T(1)}) {
        const int64_t N = 37, lda = K + 1;
        std::vector<T> A(M * lda), B(N * K), C(M * N), C0;
        for (T& x : A) x = T(dist(rng));
        for (T& x : B) x = T(dist(rng));
        for (T& x : C) x = T(dist(rng));
        C0 = C;
        cpu::gemm<T>(false, true, M, N, K, A.data(), lda, B.data(), K, beta, C.data(), N);
        int64_t bad = 0;
        for (int64_t i = 0; i < M; ++i)
          for (int64_t j = 0; j < N; ++j)
            bad += C[i * N + j] != documented_dot<T>(K, A.data() + i * lda, B.data() + j * K, beta, C0[i * N + j]);
        INFO("K " << K << " M " << M << " beta " << double(beta));
        CHECK(bad == 0);
      }
}

}  // namespace

TEST_CASE("gemm small M: trans_b sums in the documented order (vector lanes, hsum's tree, tail fma)") {
  check_documented_order<float>();
  check_documented_order<double>();
}
#endif

// ---- The bf16 gemm (mixed precision): every input rounded to bf16, float32 sums ----

namespace {

// The ways this CPU can run: fp32 and the AMX kernel on emulated tiles always, dpbf16 where the CPU has
// AVX512-BF16, amx on the instructions where it has AMX.
std::vector<cpu::Bf16Gemm> bf16_ways() {
  std::vector<cpu::Bf16Gemm> w{cpu::Bf16Gemm::fp32, cpu::Bf16Gemm::amx_emulated};
  if (cpu::cpu_has_avx512_bf16()) w.push_back(cpu::Bf16Gemm::dpbf16);
  if (cpu::cpu_has_amx()) w.push_back(cpu::Bf16Gemm::amx);
  return w;
}

// The AMX kernel (`way`) against the float32 gemm on bf16-rounded operands (the fp32 way), per element.
// Both add the same products, exact in float32, in float32 and in different orders: each sum is within
// (K - 1) u sum_k |a b| of the exact one (u = 2^-24, the float32 unit roundoff; beta C adds one more
// rounding of |C| at most), so the two differ by at most twice that. A wrong packing, tile or edge gives
// differences of the size of the products themselves. Returns the worst difference over the bound.
double amx_vs_rounded(const Case& c, cpu::Bf16Gemm way, uint32_t seed) {
  std::vector<float> got, want;
  run_case<float>(c, &got, seed, way, false);
  run_case<float>(c, &want, seed, cpu::Bf16Gemm::fp32, false);
  // The operands again (run_case's generator, same seed), for sum_k |a b| in double.
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(-1, 1);
  const int64_t a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K, b_rows = c.tb ? c.N : c.K;
  const int64_t b_cols = c.tb ? c.K : c.N, lda = a_cols + c.lda_pad, ldb = b_cols + c.ldb_pad, ldc = c.N + c.ldc_pad;
  std::vector<float> A(a_rows * lda), B(b_rows * ldb);
  for (float& x : A) x = float(dist(rng));
  for (float& x : B) x = float(dist(rng));
  std::vector<float> C0(c.M * ldc);
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = 0; j < ldc; ++j) C0[i * ldc + j] = j >= c.N || c.beta == 0 ? 0.f : float(dist(rng));
  const double u = std::ldexp(1.0, -24);
  double worst = 0;
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = 0; j < c.N; ++j) {
      double mag = std::abs(c.beta * C0[i * ldc + j]);
      for (int64_t k = 0; k < c.K; ++k)
        mag += std::abs(ref_bf16(c.ta ? A[k * lda + i] : A[i * lda + k]) *
                        ref_bf16(c.tb ? B[j * ldb + k] : B[k * ldb + j]));
      const double bound = 2 * double(c.K + 1) * u * mag + 1e-38;
      const double diff = std::abs(double(got[i * ldc + j]) - double(want[i * ldc + j]));
      worst = std::max(worst, std::isfinite(diff) ? diff / bound : std::numeric_limits<double>::infinity());
    }
  return worst;
}

// Shapes for the AMX kernel's edges: M, N, K below, at and past the 16 / 32 tiles, odd K, one row or
// column, several K blocks (KC = 512) and row blocks (MC = 128).
std::vector<Case> amx_edge_cases() {
  std::vector<Case> cases;
  for (Case c : all_transpositions({{1, 1, 1},
                                    {1, 17, 3},
                                    {2, 1, 33},
                                    {15, 16, 31},
                                    {16, 16, 32},
                                    {17, 33, 33},
                                    {31, 47, 65},
                                    {32, 32, 64},
                                    {33, 15, 1},
                                    {47, 5, 513},
                                    {130, 40, 97},
                                    {9, 140, 1030},
                                    {70, 66, 600},  // whole blocks that accumulate a second K block
                                    {200, 70, 7}})) {
    cases.push_back(c);
    c.ldc_pad = 3, c.lda_pad = 1, c.ldb_pad = 2, c.beta = 0.75;
    cases.push_back(c);
    c.beta = 1.0;  // the first K block's sums start from C (a bias)
    cases.push_back(c);
  }
  return cases;
}

}  // namespace

TEST_CASE("bf16: rounding to nearest, ties to even, NaN and infinity kept") {
  auto bits = [](uint32_t u) {
    float x;
    std::memcpy(&x, &u, 4);
    return bf16_bits(x);
  };
  CHECK(bits(0x3f800000u) == 0x3f80);  // 1.0 is exact
  CHECK(bits(0x3f808000u) == 0x3f80);  // 1 + 2^-8: halfway between 1 and 1 + 2^-7, to the even 1
  CHECK(bits(0x3f818000u) == 0x3f82);  // 1 + 3 * 2^-8: halfway, to the even 1 + 2^-6
  CHECK(bits(0x3f808001u) == 0x3f81);  // just above halfway: up
  CHECK(bits(0x3f807fffu) == 0x3f80);  // just below: down
  CHECK(bits(0xbf808001u) == 0xbf81);  // the same for a negative value
  CHECK(bits(0x7f7fffffu) == 0x7f80);  // the largest float rounds to infinity, as in PyTorch
  CHECK(bits(0x7f800000u) == 0x7f80);
  CHECK(std::isnan(round_bf16(std::numeric_limits<float>::quiet_NaN())));
  CHECK(std::isnan(bf16_to_float(bits(0x7f800001u))));  // a NaN whose payload is all in the low bits
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-1000, 1000);
  for (int i = 0; i < 100000; ++i) {
    const float x = dist(rng);
    REQUIRE(double(round_bf16(x)) == ref_bf16(x));
  }
}

TEST_CASE("bf16: the vector rounding of the packing gives round_bf16's bits, NaN and infinities included") {
  // Every bit pattern class: NaNs with their payload high or only in the low 16 bits (which rounding
  // must not carry into an infinity), infinities, the largest floats, ties, subnormals, zeros, and
  // random bits; 4099 values so that the scalar tail runs too.
  const uint32_t special[] = {0x7f800001u, 0xff800001u, 0x7fc00000u, 0x7f80ffffu, 0xffffffffu, 0x7f800000u,
                              0xff800000u, 0x7f7fffffu, 0x7f7f7fffu, 0x3f808000u, 0x3f818000u, 0x00008000u,
                              0x00018000u, 0x00000001u, 0x80000000u, 0x00000000u};
  std::mt19937 rng(12);
  std::vector<uint32_t> bits(4099);
  for (size_t i = 0; i < bits.size(); ++i) bits[i] = i < std::size(special) ? special[i] : uint32_t(rng());
  std::vector<float> x(bits.size()), got(bits.size()), want(bits.size());
  std::memcpy(x.data(), bits.data(), bits.size() * 4);
  cpu::round_bf16_span(x.data(), got.data(), int64_t(x.size()));
  for (size_t i = 0; i < x.size(); ++i) want[i] = round_bf16(x[i]);
  for (size_t i = 0; i < x.size(); ++i) {
    uint32_t g, w;
    std::memcpy(&g, &got[i], 4);
    std::memcpy(&w, &want[i], 4);
    INFO("input bits 0x" << std::hex << bits[i]);
    REQUIRE(g == w);
  }
}

TEST_CASE("gemm bf16: both ways against the rounded-input reference, every edge path") {
  std::vector<Case> cases;
  for (Case c : all_transpositions({{1, 1, 1},
                                    {7, 33, 97},
                                    {97, 7, 33},
                                    {33, 97, 8},
                                    {300, 100, 37},
                                    {100, 300, 301},
                                    {13, 40, 700},
                                    {5, 16, 3},
                                    {64, 130, 512}})) {
    cases.push_back(c);
    c.ldc_pad = 3, c.lda_pad = 2, c.ldb_pad = 5, c.beta = -0.5;
    cases.push_back(c);
  }
  for (cpu::Bf16Gemm way : bf16_ways()) {
    for (const Case& c : cases) {
      INFO(describe(c) << " bf16 way " << cpu::bf16_gemm_name(way));
      CHECK(run_case<float>(c, nullptr, 7, way) <= 3e-5);
    }
    Case k0{false, true, 9, 35, 0};  // no products: C = beta C
    k0.beta = 2.0;
    CHECK(run_case<float>(k0, nullptr, 7, way) == 0.0);
  }
}

TEST_CASE("gemm bf16: the inputs really are rounded (the float32 reference is far off, the bf16 one close)") {
  Case c{false, true, 40, 50, 300};
  std::vector<float> got;
  run_case<float>(c, &got, 11, cpu::Bf16Gemm::automatic);
  std::vector<float> exact;
  run_case<float>(c, &exact, 11);
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, double(std::abs(got[i] - exact[i])));
  // bf16 keeps 8 bits: over 300 products of values in (-1, 1) the difference reaches ~1e-2, float32's ~1e-6.
  CHECK(worst > 1e-3);
  CHECK(worst < 0.1);
}

TEST_CASE("gemm bf16: bit-identical for 1 and 2 threads, each way") {
  const int saved = num_threads();
  for (cpu::Bf16Gemm way : bf16_ways())
    for (Case c : all_transpositions({{1000, 97, 300}, {33, 1000, 520}, {301, 301, 301}})) {
      c.beta = 1.0;
      std::vector<float> one, two;
      set_num_threads(1);
      run_case<float>(c, &one, 7, way, false);
      set_num_threads(2);
      run_case<float>(c, &two, 7, way, false);
      INFO(describe(c) << " bf16 way " << cpu::bf16_gemm_name(way));
      CHECK(one == two);
    }
  set_num_threads(saved);
}

TEST_CASE("gemm bf16 amx: the kernel on emulated tiles against the float32 gemm on rounded operands, edge shapes") {
  uint32_t seed = 20;
  for (const Case& c : amx_edge_cases()) {
    INFO(describe(c));
    CHECK(amx_vs_rounded(c, cpu::Bf16Gemm::amx_emulated, ++seed) <= 1.0);
  }
}

TEST_CASE("gemm bf16 amx: the real instructions against the float32 gemm on rounded operands and the emulated tiles") {
  if (!cpu::cpu_has_amx()) {
    std::printf("SKIPPED: no AMX on this CPU (the kernel runs on emulated tiles in the other gemm bf16 cases)\n");
    return;
  }
  uint32_t seed = 40;
  for (const Case& c : amx_edge_cases()) {
    INFO(describe(c));
    CHECK(amx_vs_rounded(c, cpu::Bf16Gemm::amx, ++seed) <= 1.0);
  }
  const int saved = num_threads();
  for (Case c : all_transpositions({{257, 300, 1100}, {64, 1030, 96}})) {
    std::vector<float> one, two;
    set_num_threads(1);
    run_case<float>(c, &one, 9, cpu::Bf16Gemm::amx, false);
    set_num_threads(2);
    run_case<float>(c, &two, 9, cpu::Bf16Gemm::amx, false);
    INFO(describe(c));
    CHECK(one == two);
  }
  set_num_threads(saved);
}

TEST_CASE("gemm bf16 dpbf16: the AVX512-BF16 kernel against the float32 gemm on rounded operands, edge shapes") {
  if (!cpu::cpu_has_avx512_bf16()) {
    std::printf("SKIPPED: no AVX512-BF16 on this CPU (the dpbf16 way cannot run here)\n");
    return;
  }
  // The AMX edges, and the dpbf16 kernel's own: its 6 x 32 tiles, N = 16 and 48 (a last panel of 16
  // columns written straight into C), KC = 512 (256 pairs), MC = 144 rows.
  std::vector<Case> cases = amx_edge_cases();
  for (Case c : all_transpositions({{6, 16, 512}, {150, 48, 513}, {145, 16, 1025}, {12, 96, 511}})) {
    cases.push_back(c);
    c.ldc_pad = 1, c.lda_pad = 3, c.ldb_pad = 1, c.beta = 0.5;
    cases.push_back(c);
  }
  uint32_t seed = 60;
  for (const Case& c : cases) {
    INFO(describe(c));
    CHECK(amx_vs_rounded(c, cpu::Bf16Gemm::dpbf16, ++seed) <= 1.0);
  }
}

TEST_CASE("gemm bf16: the fp32 way (rounding while packing) equals the float32 gemm on rounded copies, bit for bit") {
  for (Case c : all_transpositions({{4, 33, 70}, {16, 64, 40}, {17, 48, 300}, {300, 48, 257}, {90, 700, 33}})) {
    c.beta = 0.5, c.ldc_pad = 2;
    const int64_t a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K, b_rows = c.tb ? c.N : c.K;
    const int64_t b_cols = c.tb ? c.K : c.N, ldc = c.N + c.ldc_pad;
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> dist(-1, 1);
    std::vector<float> A(a_rows * a_cols), B(b_rows * b_cols), C(c.M * ldc);
    for (float& x : A) x = dist(rng);
    for (float& x : B) x = dist(rng);
    for (float& x : C) x = dist(rng);
    std::vector<float> Ar(A.size()), Br(B.size()), want = C;
    for (size_t i = 0; i < A.size(); ++i) Ar[i] = float(ref_bf16(A[i]));
    for (size_t i = 0; i < B.size(); ++i) Br[i] = float(ref_bf16(B[i]));
    cpu::gemm<float>(c.ta, c.tb, c.M, c.N, c.K, Ar.data(), a_cols, Br.data(), b_cols, 0.5f, want.data(), ldc);
    cpu::gemm_bf16(c.ta, c.tb, c.M, c.N, c.K, A.data(), a_cols, B.data(), b_cols, 0.5f, C.data(), ldc,
                   cpu::Bf16Gemm::fp32);
    INFO(describe(c));
    CHECK(C == want);
  }
}

namespace {

// Operands made of rounding's edge cases: exact ties (to even, both parities), one bit either side of a
// tie, mantissas that carry into the next binade, subnormals; signs and binades random, no inf or NaN
// (which would turn the zeros of an identity into NaN).
std::vector<float> rounding_edges(size_t n, uint32_t seed) {
  const uint32_t low[] = {0x8000u, 0x7fffu, 0x8001u, 0x0000u, 0xffffu, 0x18000u, 0x7f8000u, 0x7fffffu};
  std::mt19937 rng(seed);
  std::vector<float> v(n);
  for (float& x : v) {
    const uint32_t sign = rng() & 0x80000000u, exponent = (rng() % 254u) << 23;  // 0 (subnormal) to 253
    const uint32_t l = low[rng() % 8];
    const uint32_t mantissa = l >= 0x7f8000u ? l : ((rng() & 0x7fu) << 16 | l) & 0x7fffffu;
    const uint32_t u = sign | exponent | mantissa;
    std::memcpy(&x, &u, 4);
  }
  return v;
}

}  // namespace

TEST_CASE(
    "gemm bf16: the fp32 and dpbf16 ways round every packed and copied value as documented (ties, carries, "
    "subnormals)") {
  // C = op(A) I or I op(B) with I the identity: each element of C is one rounded input (times 1, plus
  // zeros), so C shows the rounding of every element through each path: A packed or read in place
  // (N = K <= 32 columns), B packed, the small-M copies, either transposition. The fp32 way rounds as
  // round_bf16; dpbf16 (where the CPU has AVX512-BF16) as well, except that it reads a float32 below the
  // smallest normal as zero (the largest of them round_bf16 would carry up to the smallest normal).
  std::vector<cpu::Bf16Gemm> ways{cpu::Bf16Gemm::fp32};
  if (cpu::cpu_has_avx512_bf16()) ways.push_back(cpu::Bf16Gemm::dpbf16);
  for (cpu::Bf16Gemm way : ways) {
    const auto rounded = [way](float v) {
      if (way == cpu::Bf16Gemm::dpbf16 && std::abs(v) < std::numeric_limits<float>::min()) return 0.0f;
      return round_bf16(v) + 0.0f;  // -0 sums to +0
    };
    for (int64_t n : {24, 100})
      for (int64_t m : {5, 40})
        for (bool ta : {false, true})
          for (bool tb : {false, true}) {
            const std::vector<float> x = rounding_edges(size_t(m * n), uint32_t(m * n + ta * 2 + tb));
            std::vector<float> eye(size_t(n * n), 0.0f);
            for (int64_t i = 0; i < n; ++i) eye[i * n + i] = 1.0f;
            std::vector<float> want(x.size()), ca(x.size()), cb(x.size());
            // x stored as op(X) (m x n), or transposed (n x m)
            std::vector<float> xs(x.size());
            for (int64_t i = 0; i < m; ++i)
              for (int64_t j = 0; j < n; ++j) {
                xs[ta ? j * m + i : i * n + j] = x[i * n + j];
                want[i * n + j] = rounded(x[i * n + j]);
              }
            INFO("way ", cpu::bf16_gemm_name(way), " m ", m, " n ", n, " ta ", ta, " tb ", tb);
            cpu::gemm_bf16(ta, tb, m, n, n, xs.data(), ta ? m : n, eye.data(), n, 0.0f, ca.data(), n, way);
            CHECK(std::memcmp(ca.data(), want.data(), want.size() * 4) == 0);
            // (n x m) = I (n x n) op(Y), op(Y) = x^T: Y stored as x (tb) or as x^T
            std::vector<float> ys(x.size()), want_t(x.size());
            for (int64_t i = 0; i < m; ++i)
              for (int64_t j = 0; j < n; ++j) {
                ys[tb ? i * n + j : j * m + i] = x[i * n + j];
                want_t[j * m + i] = rounded(x[i * n + j]);
              }
            cpu::gemm_bf16(ta, tb, n, m, n, eye.data(), n, ys.data(), tb ? n : m, 0.0f, cb.data(), m, way);
            CHECK(std::memcmp(cb.data(), want_t.data(), want_t.size() * 4) == 0);
          }
  }
}

TEST_CASE("gemm bf16: the ways are named as bench prints them") {
  CHECK(std::string(cpu::bf16_gemm_name(cpu::Bf16Gemm::fp32)) == "fp32-on-rounded");
  CHECK(std::string(cpu::bf16_gemm_name(cpu::Bf16Gemm::amx)) == "amx");
  CHECK(std::string(cpu::bf16_gemm_name(cpu::Bf16Gemm::dpbf16)) == "avx512-bf16");
  // automatic names what this CPU runs: amx exactly where the CPU has AMX (unless MG_BF16_GEMM chooses).
  if (!std::getenv("MG_BF16_GEMM"))
    CHECK((std::string(cpu::bf16_gemm_name(cpu::Bf16Gemm::automatic)) == "amx") == cpu::cpu_has_amx());
}
