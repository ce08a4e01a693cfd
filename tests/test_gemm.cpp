// ops/cpu/gemm against a naive double-precision triple loop: every transposition, sizes that hit every
// edge path (partial MR / NR tiles, the narrow one-vector kernel, several KC / MC / NC blocks, the
// unpacked-A path), sub-blocks of C with ldc > N, beta 0 over NaN, beta 1 accumulation, stride-0
// broadcast rows, float and double, and bit-identical results for 1 and 2 threads.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/parallel.h"
#include "ops/cpu/gemm.h"

using namespace mg;

namespace {

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
double run_case(const Case& c, std::vector<T>* out = nullptr, uint32_t seed = 7) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(-1, 1);
  // Stored A: (M, K) or (K, M) when ta; stored B: (K, N) or (N, K) when tb.
  const int64_t a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K;
  const int64_t b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N;
  const int64_t lda = c.a_broadcast ? 0 : a_cols + c.lda_pad, ldb = c.b_broadcast ? 0 : b_cols + c.ldb_pad;
  const int64_t ldc = c.N + c.ldc_pad;
  std::vector<T> A((c.a_broadcast ? 1 : a_rows) * (a_cols + c.lda_pad)), B((c.b_broadcast ? 1 : b_rows) * (b_cols + c.ldb_pad));
  for (T& x : A) x = T(dist(rng));
  for (T& x : B) x = T(dist(rng));
  std::vector<T> C(c.M * ldc);
  const T sentinel = T(12345);
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = 0; j < ldc; ++j)
      C[i * ldc + j] = j >= c.N ? sentinel : c.beta == 0 ? std::numeric_limits<T>::quiet_NaN() : T(dist(rng));
  const std::vector<T> C0 = C;

  auto a_at = [&](int64_t i, int64_t k) { return double(c.ta ? A[k * lda + i] : A[i * lda + k]); };
  auto b_at = [&](int64_t k, int64_t j) { return double(c.tb ? B[j * ldb + k] : B[k * ldb + j]); };

  cpu::gemm<T>(c.ta, c.tb, c.M, c.N, c.K, A.data(), lda, B.data(), ldb, T(c.beta), C.data(), ldc);

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
  if (out) *out = C;
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

std::vector<Case> all_transpositions(int64_t M, int64_t N, int64_t K) {
  std::vector<Case> v;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) v.push_back({ta, tb, M, N, K});
  return v;
}

}  // namespace

TEST_CASE("gemm: all transpositions, odd sizes, float and double") {
  const int64_t sizes[] = {1, 7, 33, 97};
  std::vector<Case> cases;
  for (int64_t M : sizes)
    for (int64_t N : sizes)
      for (int64_t K : sizes)
        for (const Case& c : all_transpositions(M, N, K)) cases.push_back(c);
  check_cases<float>(cases);
  check_cases<double>(cases);
}

TEST_CASE("gemm: large and edge-heavy sizes (several cache blocks, narrow tiles)") {
  std::vector<Case> cases;
  for (auto [M, N, K] : std::vector<Dims>{
           {300, 1000, 37}, {1000, 300, 301}, {151, 16, 700}, {37, 48, 513}, {200, 8, 1000}, {13, 4200, 9},
           {1001, 17, 260}, {49, 1030, 300}})
    for (const Case& c : all_transpositions(M, N, K)) cases.push_back(c);
  check_cases<float>(cases);
  check_cases<double>(cases);
}

TEST_CASE("gemm: ldc > N sub-blocks, padded lda / ldb, beta 0 over NaN and beta 1 accumulation") {
  std::vector<Case> cases;
  for (double beta : {0.0, 1.0, -0.5})
    for (auto [M, N, K] : std::vector<Dims>{{33, 97, 300}, {97, 33, 7}, {300, 70, 520}})
      for (Case c : all_transpositions(M, N, K)) {
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
  for (auto [M, N, K] : std::vector<Dims>{{97, 33, 300}, {8, 70, 33}, {300, 16, 1}})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        Case c{ta, tb, M, N, K};
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
  for (auto [M, N, K] : std::vector<Dims>{
           {1000, 97, 300}, {33, 1000, 520}, {301, 301, 301}, {4096, 16, 64}, {40, 48, 4096}})
    for (Case c : all_transpositions(M, N, K)) {
      c.beta = 1.0;
      cases.push_back(c);
    }
  for (const Case& c : cases) {
    std::vector<float> f1, f2;
    std::vector<double> d1, d2;
    set_num_threads(1);
    run_case<float>(c, &f1);
    run_case<double>(c, &d1);
    set_num_threads(2);
    run_case<float>(c, &f2);
    run_case<double>(c, &d2);
    INFO(describe(c));
    CHECK(f1 == f2);
    CHECK(d1 == d2);
  }
  set_num_threads(saved);
}
