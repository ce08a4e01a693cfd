// The vector helpers of the CPU scan kernels (ops/cpu/vec.h) against the C library, lane by lane.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "ops/cpu/vec.h"
#include "tests/check.h"

using namespace mg::cpu;

namespace {

// Max relative error of f over x in [lo, hi] (16 lanes at a time), against std::exp in double.
template <class F>
double max_rel_err_exp(F f, float lo, float hi) {
  double worst = 0;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int it = 0; it < 20000; ++it) {
    Vec<float> x;
    for (int j = 0; j < kVecLanes; ++j) x[j] = dist(rng);
    const Vec<float> y = f(x);
    for (int j = 0; j < kVecLanes; ++j) {
      const double want = std::exp((double)x[j]);
      if (want < 1e-37) continue;  // denormal results: checked separately
      worst = std::max(worst, std::abs(y[j] - want) / want);
    }
  }
  return worst;
}

}  // namespace

TEST_CASE("vec: exp is within 2 float ulps of exp over [-87, 88] (the AVX-512 and the portable forms)") {
  const double eps = std::numeric_limits<float>::epsilon();
  for (auto [lo, hi] : {std::pair{-87.0f, 88.0f}, std::pair{-1.0f, 1.0f}, std::pair{-20.0f, 0.0f}}) {
    CAPTURE(lo);
    CAPTURE(hi);
    CHECK(max_rel_err_exp([](Vec<float> x) { return vexp(x); }, lo, hi) < 2 * eps);
    CHECK(max_rel_err_exp([](Vec<float> x) { return vexp_portable(x); }, lo, hi) < 2 * eps);
  }
}

TEST_CASE("vec: exp at the edges: tiny or 0 for very negative x, 0 for -inf, NaN stays NaN") {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  Vec<float> x = {};
  const float xs[] = {0.0f, -100.0f, -1000.0f, -inf, nan, 1.0f, -87.5f, 88.0f};
  for (int j = 0; j < 8; ++j) x[j] = xs[j];
  for (auto y : {vexp(x), vexp_portable(x)}) {
    CHECK(y[0] == 1.0f);
    CHECK(y[1] < 1e-37f);  // exp(-100) = 3.7e-44: denormal or flushed to 0
    CHECK(y[1] >= 0.0f);
    CHECK(y[2] == 0.0f);
    CHECK(y[3] == 0.0f);
    CHECK(std::isnan(y[4]));
    CHECK(y[5] == doctest::Approx(std::exp(1.0f)).epsilon(1e-6));
    CHECK(y[6] < 1e-37f);
    CHECK(y[6] >= 0.0f);
    CHECK(y[7] == doctest::Approx(std::exp(88.0f)).epsilon(1e-6));
  }
}

TEST_CASE("vec: softplus and sigmoid match log1p(exp(x)) and 1 / (1 + exp(-x))") {
  Vec<float> x;
  double worst_sp = 0, worst_sg = 0;
  for (int base = -3000; base < 3000; base += kVecLanes) {
    for (int j = 0; j < kVecLanes; ++j) x[j] = (base + j) * 0.01f;  // [-30, 30)
    const Vec<float> sp = vsoftplus(x), sg = vsigmoid(x);
    for (int j = 0; j < kVecLanes; ++j) {
      const double xd = x[j], want_sp = xd > 20 ? xd : std::log1p(std::exp(xd)), want_sg = 1 / (1 + std::exp(-xd));
      worst_sp = std::max(worst_sp, std::abs(sp[j] - want_sp) / want_sp);
      worst_sg = std::max(worst_sg, std::abs(sg[j] - want_sg) / want_sg);
    }
  }
  CHECK(worst_sp < 4e-7);
  CHECK(worst_sg < 4e-7);
}

TEST_CASE("vec: sum_rows gives lane k = the sum of row k, for float and double") {
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> dist(-1, 1);
  Vec<float> rf[kVecLanes];
  Vec<double> rd[kVecLanes];
  double want[kVecLanes] = {};
  for (int k = 0; k < kVecLanes; ++k)
    for (int j = 0; j < kVecLanes; ++j) {
      const float v = (float)dist(rng) * (k + 1);
      rf[k][j] = v;
      rd[k][j] = v;
      want[k] += v;
    }
  float tree[kVecLanes];  // hsum's fixed tree per row: sum_rows must give these bits (the scan's sums)
  for (int k = 0; k < kVecLanes; ++k) tree[k] = hsum(rf[k]);
  const Vec<float> sf = sum_rows(rf);
  const Vec<double> sd = sum_rows(rd);
  for (int k = 0; k < kVecLanes; ++k) {
    CAPTURE(k);
    CHECK(sd[k] == doctest::Approx(want[k]).epsilon(1e-14));
    CHECK(sf[k] == doctest::Approx(want[k]).epsilon(1e-5));
    CHECK(sf[k] == tree[k]);
  }
}

TEST_CASE("vec: exp2 is within 2 float ulps of exp2 over [-126, 127], 0 at -inf and below -150, NaN stays NaN") {
  const double eps = std::numeric_limits<float>::epsilon();
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> dist(-126.0f, 127.0f);
  double worst = 0, worst_portable = 0;
  for (int it = 0; it < 20000; ++it) {
    Vec<float> x;
    for (int j = 0; j < kVecLanes; ++j) x[j] = it % 2 ? dist(rng) : dist(rng) / 64;  // wide, and near 0
    const Vec<float> y = vexp2(x), yp = vexp2_portable(x);
    for (int j = 0; j < kVecLanes; ++j) {
      const double want = std::exp2((double)x[j]);
      worst = std::max(worst, std::abs(y[j] - want) / want);
      worst_portable = std::max(worst_portable, std::abs(yp[j] - want) / want);
    }
  }
  CHECK(worst < 2 * eps);
  CHECK(worst_portable < 2 * eps);
  const float inf = std::numeric_limits<float>::infinity();
  Vec<float> x = {};
  x[0] = -inf, x[1] = -200.0f, x[2] = std::numeric_limits<float>::quiet_NaN(), x[3] = 0.0f;
  for (auto y : {vexp2(x), vexp2_portable(x)}) {
    CHECK(y[0] == 0.0f);
    CHECK(y[1] == 0.0f);
    CHECK(std::isnan(y[2]));
    CHECK(y[3] == 1.0f);
  }
}

TEST_CASE("vec: softplus with its derivative: the same softplus, and sigmoid(x) (1 above 20)") {
  Vec<float> x, dsp;
  Vec<double> xd, dspd;
  for (int base = -3000; base < 3000; base += kVecLanes) {
    for (int j = 0; j < kVecLanes; ++j) x[j] = (base + j) * 0.01f, xd[j] = x[j];
    const Vec<float> sp = vsoftplus(x, dsp), sp_only = vsoftplus(x);
    const Vec<double> spd = vsoftplus(xd, dspd);
    for (int j = 0; j < kVecLanes; ++j) {
      const double v = x[j], sig = v > 20 ? 1.0 : 1 / (1 + std::exp(-v));
      CHECK(sp[j] == sp_only[j]);
      CHECK_REL(dsp[j], sig, 4e-7);  // relative: sigmoid is below 1e-6 for x < -14
      CHECK_REL(dspd[j], sig, 1e-15);
      CHECK_REL(spd[j], v > 20 ? v : std::log1p(std::exp(v)), 1e-15);
    }
  }
}

TEST_CASE("vec: sum_rows on one register of the target is hsum per row, bit for bit, and the row sums") {
  // Reg<T> takes the target's butterfly (AVX2, AVX-512) or the generic fold; either must add the pairs of
  // hsum's tree, so lane k equals hsum(rows[k]) exactly (the gemm's thread-count independence rests on it).
  auto check = [](auto zero) {
    using T = decltype(zero);
    using R = Reg<T>;
    constexpr int n = lanes_of<R>;
    std::mt19937 rng(5);
    std::uniform_real_distribution<double> dist(-1, 1);
    R rows[n], copy[n];
    double want[n] = {};
    for (int k = 0; k < n; ++k)
      for (int j = 0; j < n; ++j) {
        rows[k][j] = (T)(dist(rng) * (k + 1) * (j % 3 == 0 ? 1e6 : 1));  // mixed magnitudes: order matters
        want[k] += rows[k][j];
      }
    std::memcpy(copy, rows, sizeof rows);
    const R s = sum_rows(copy);
    for (int k = 0; k < n; ++k) {
      CAPTURE(k);
      CHECK(s[k] == hsum(rows[k]));
      CHECK(s[k] == doctest::Approx(want[k]).epsilon(1e-5));
    }
  };
  check(0.0f);
  check(0.0);
}

TEST_CASE("vec: a sigmoid from exp without its zero below the range is the sigmoid with it, bit for bit") {
  // causal_conv1d's silu takes exp without the zero below -87.3: 1 / (1 + e) must not change anywhere.
  using R = Reg<float>;
  constexpr int n = kRegLanes<float>;
  std::vector<float> xs;
  for (int i = -30000; i <= 30000; ++i) xs.push_back(i * 0.01f);  // [-300, 300], past both ends
  for (float x : {-std::numeric_limits<float>::infinity(), std::numeric_limits<float>::infinity(),
                  std::numeric_limits<float>::quiet_NaN(), -87.3f, -87.31f, 87.3f, 87.31f, 88.0f, 89.0f})
    xs.push_back(x);
  while (xs.size() % n) xs.push_back(0.0f);
  for (size_t i = 0; i < xs.size(); i += n) {
    R x;
    std::memcpy(&x, xs.data() + i, sizeof x);
    const R with = 1.0f / (1.0f + vexp_bits<false, R, true>(-x)),
            without = 1.0f / (1.0f + vexp_bits<false, R, false>(-x));
    for (int j = 0; j < n; ++j) {
      CAPTURE(xs[i + j]);
      uint32_t a, b;
      std::memcpy(&a, &with[j], 4);
      std::memcpy(&b, &without[j], 4);
      CHECK(a == b);
      if (!std::isfinite(xs[i + j])) continue;
      // Relative where the sigmoid is a normal float (x > -87.3); below, within the smallest normal float.
      const double want = 1.0 / (1.0 + std::exp(-double(xs[i + j])));
      if (want >= std::numeric_limits<float>::min())
        CHECK_REL(with[j], want, 1e-6);
      else
        CHECK(std::abs(with[j] - want) <= std::numeric_limits<float>::min());
    }
  }
}

TEST_CASE("vec: clamp_to is x < lo ? lo : (x > hi ? hi : x) bit for bit, NaN and the signed zeros included") {
  // On one AVX register clamp_to is vmaxps(lo, x) then vminps(hi, .): both hand back their second
  // operand where one is NaN, so the operand order is what keeps a NaN. Checked against the two
  // conditionals written out per lane, on the 8-float vector (the intrinsics where the target has AVX)
  // and on a 4-float one (the conditionals themselves).
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const float xs[] = {nan,     -nan,   inf,    -inf,  0.0f,   -0.0f,  -126.0f, 127.0f,
                      -126.5f, 127.5f, 1e-40f, -3.0f, 300.0f, -1e30f, 5.0f,    -0.5f};
  auto expect = [](float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); };
  auto bits = [](float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
  };
  for (const auto& [lo, hi] : {std::pair{-126.0f, 127.0f}, std::pair{-0.0f, 0.0f}, std::pair{0.0f, 1.0f}}) {
    for (int s = 0; s < 16; s += 8) {
      VecN<float, 8> x8, lo8, hi8;
      for (int j = 0; j < 8; ++j) x8[j] = xs[s + j], lo8[j] = lo, hi8[j] = hi;
      const VecN<float, 8> y8 = clamp_to(x8, lo8, hi8);
      for (int j = 0; j < 8; ++j) CHECK(bits(y8[j]) == bits(expect(xs[s + j], lo, hi)));
    }
    for (int s = 0; s < 16; s += 4) {
      VecN<float, 4> x4, lo4, hi4;
      for (int j = 0; j < 4; ++j) x4[j] = xs[s + j], lo4[j] = lo, hi4[j] = hi;
      const VecN<float, 4> y4 = clamp_to(x4, lo4, hi4);
      for (int j = 0; j < 4; ++j) CHECK(bits(y4[j]) == bits(expect(xs[s + j], lo, hi)));
    }
  }
}
