// Op values against independent computations (plain loops, <cmath>), and each fused op against its
// composed reference on fresh random inputs, values and gradients, in float32.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "autograd/node.h"
#include "core/parallel.h"
#include "ops/ops.h"
#include "tests/check.h"
#include "tests/devices.h"

using namespace mg;

TEST_CASE("ops: broadcasting binary ops match explicit loops") {
  Generator g(1);
  Tensor a = randn({2, 3, 1}, DType::f64, &g), b = randn({4}, DType::f64, &g);
  auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  auto add_v = add(a, b).to_vector<double>(), mul_v = mul(a, b).to_vector<double>();
  auto sub_v = sub(b, a).to_vector<double>(), div_v = div(a, b).to_vector<double>();
  CHECK(add(a, b).shape() == Shape{2, 3, 4});
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 4; ++j) {
      CHECK(add_v[i * 4 + j] == va[i] + vb[j]);
      CHECK(mul_v[i * 4 + j] == va[i] * vb[j]);
      CHECK(sub_v[i * 4 + j] == vb[j] - va[i]);
      CHECK(div_v[i * 4 + j] == va[i] / vb[j]);
    }
  // Non-contiguous operands.
  Tensor m = randn({5, 7}, DType::f32, &g);
  Tensor t = m.transpose(0, 1);
  auto tv = t.contiguous().to_vector<float>();
  auto s = add(t, t).to_vector<float>();
  for (size_t i = 0; i < s.size(); ++i) CHECK(s[i] == tv[i] + tv[i]);
}

TEST_CASE("ops: unary functions match <cmath>") {
  Tensor x = from_vector<double>({-25, -3, -0.5, 0, 0.7, 2, 19.5, 20.5, 40}, {9});
  auto v = x.to_vector<double>();
  auto sp = softplus(x).to_vector<double>(), si = silu(x).to_vector<double>(), sg = sigmoid(x).to_vector<double>();
  auto th = tanh(x).to_vector<double>(), ex = exp(x).to_vector<double>(), ng = neg(x).to_vector<double>();
  for (size_t i = 0; i < v.size(); ++i) {
    double sig = 1.0 / (1.0 + std::exp(-v[i]));
    CHECK_REL(sg[i], sig, 1e-14);  // relative: at -25 the values are about 1e-11
    CHECK_REL(si[i], v[i] * sig, 1e-14);
    CHECK_REL(sp[i], v[i] > 20 ? v[i] : std::log1p(std::exp(v[i])), 1e-14);
    CHECK_REL(th[i], std::tanh(v[i]), 1e-14);
    CHECK_REL(ex[i], std::exp(v[i]), 1e-14);
    CHECK(ng[i] == -v[i]);
  }
  Tensor p = from_vector<double>({0.25, 1, 4}, {3});
  CHECK(sqrt(p).to_vector<double>() == std::vector<double>{0.5, 1, 2});
  CHECK(rsqrt(p).to_vector<double>() == std::vector<double>{2, 1, 0.5});
  // pow over negative and positive bases: integer exponents (odd ones keep the sign), fractional ones
  // (NaN for a negative base), against std::pow; 0^0 = 1 and 0^-1 = inf as in <cmath>.
  Tensor base = from_vector<double>({-3, -2, -0.5, 0, 0.25, 1, 4, 7.5}, {8});
  const auto bv = base.to_vector<double>();
  for (double e : {0.0, 1.0, 2.0, 3.0, 5.0, -1.0, -2.0, 0.5, 2.5}) {
    CAPTURE(e);
    const auto got = pow(base, e).to_vector<double>();
    for (size_t i = 0; i < bv.size(); ++i) {
      CAPTURE(bv[i]);
      const double want = std::pow(bv[i], e);
      if (std::isnan(want))
        CHECK(std::isnan(got[i]));
      else
        CHECK_REL(got[i], want, 1e-15);
    }
  }
  CHECK(pow(from_vector<double>({-2}, {1}), 3).item() == -8.0);
  // log over many magnitudes, and its edges: log 0 = -inf, log of a negative number is NaN.
  const std::vector<double> lv = {1e-300, 1e-8, 0.25, 1, 2, 4, 1e8, 1e300};
  const auto lg = log(from_vector<double>(lv, {8})).to_vector<double>();
  for (size_t i = 0; i < lv.size(); ++i) CHECK_REL(lg[i], std::log(lv[i]), 1e-15);
  const auto edge = log(from_vector<double>({0.0, -1.0}, {2})).to_vector<double>();
  CHECK(edge[0] == -INFINITY);
  CHECK(std::isnan(edge[1]));
  CHECK((p * 2.0 + 1.0).to_vector<double>() == std::vector<double>{1.5, 3, 9});
  CHECK((1.0 - p).to_vector<double>() == std::vector<double>{0.75, 0, -3});
}

TEST_CASE("ops: log1p matches <cmath>, and its gradient is 1 / (1 + x)") {
  Tensor x = from_vector<double>({-0.5, -1e-10, 0, 1e-12, 0.75, 3}, {6}).requires_grad_();
  Tensor y = log1p(x);
  sum(y).backward();
  const std::vector<double> v = x.to_vector<double>(), got = y.to_vector<double>(), grad = x.grad().to_vector<double>();
  for (size_t i = 0; i < v.size(); ++i) {
    CHECK_REL(got[i], std::log1p(v[i]), 1e-15);
    CHECK_REL(grad[i], 1.0 / (1.0 + v[i]), 1e-15);
  }
  CHECK_REL(got[3], 1e-12, 1e-11);  // log(1 + x) would be off by 9e-5 of it
  CHECK_REL(got[1], -1e-10, 1e-9);  // and by 8e-8 of this one
}

TEST_CASE("ops: sum, mean and max over dims match loops") {
  Generator g(2);
  Tensor x = randn({3, 4, 5}, DType::f64, &g);
  auto v = x.to_vector<double>();
  auto s02 = sum(x, {0, 2}).to_vector<double>();
  CHECK(sum(x, {0, 2}).shape() == Shape{4});
  CHECK(sum(x, {0, 2}, true).shape() == Shape{1, 4, 1});
  for (int j = 0; j < 4; ++j) {
    double acc = 0;
    for (int i = 0; i < 3; ++i)
      for (int k = 0; k < 5; ++k) acc += v[i * 20 + j * 5 + k];
    CHECK(s02[j] == doctest::Approx(acc).epsilon(1e-13));
  }
  auto m1 = mean(x, {-1}).to_vector<double>();
  for (int r = 0; r < 12; ++r) {
    double acc = 0;
    for (int k = 0; k < 5; ++k) acc += v[r * 5 + k];
    CHECK(m1[r] == doctest::Approx(acc / 5).epsilon(1e-13));
  }
  double total = 0;
  for (double e : v) total += e;
  CHECK(sum(x).item() == doctest::Approx(total).epsilon(1e-13));
  auto [mx, mi] = max(x, 1);
  auto mxv = mx.to_vector<double>();
  auto miv = mi.to_vector<int64_t>();
  for (int i = 0; i < 3; ++i)
    for (int k = 0; k < 5; ++k) {
      int best = 0;
      for (int j = 1; j < 4; ++j)
        if (v[i * 20 + j * 5 + k] > v[i * 20 + best * 5 + k]) best = j;
      CHECK(miv[i * 5 + k] == best);
      CHECK(mxv[i * 5 + k] == v[i * 20 + best * 5 + k]);
    }
  // Long float32 rows keep their precision.
  Tensor big = full({1 << 20}, 0.1);
  CHECK(sum(big).item() == doctest::Approx(0.1 * (1 << 20)).epsilon(1e-6));
}

namespace {
// C = op(A) @ op(B) by the textbook triple loop in double.
std::vector<double> naive_mm(const std::vector<double>& a, const std::vector<double>& b, int64_t m, int64_t k,
                             int64_t n) {
  std::vector<double> c(m * n, 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t p = 0; p < k; ++p) acc += a[i * k + p] * b[p * n + j];
      c[i * n + j] = acc;
    }
  return c;
}
}  // namespace

TEST_CASE("ops: matmul matches the triple loop for every layout and odd sizes") {
  Generator g(3);
  for (auto [m, k, n] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {3, 5, 2}, {67, 300, 130}, {130, 17, 600}}) {
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        Tensor a = ta ? randn({k, m}, DType::f64, &g).transpose(0, 1) : randn({m, k}, DType::f64, &g);
        Tensor b = tb ? randn({n, k}, DType::f64, &g).transpose(0, 1) : randn({k, n}, DType::f64, &g);
        auto ref = naive_mm(a.contiguous().to_vector<double>(), b.contiguous().to_vector<double>(), m, k, n);
        auto got = matmul(a, b).to_vector<double>();
        auto got32 = matmul(a.to(DType::f32), b.to(DType::f32)).to_vector<float>();
        INFO("m=" << m << " k=" << k << " n=" << n << " ta=" << ta << " tb=" << tb);
        CHECK(max_abs_diff(got, ref) < 1e-13 * (double)k);
        CHECK(max_abs_diff(std::vector<double>(got32.begin(), got32.end()), ref) < 2e-4 * std::sqrt((double)k));
      }
  }
}

TEST_CASE("ops: batched and broadcast matmul match per-matrix products") {
  Generator g(4);
  Tensor a = randn({2, 1, 3, 4}, DType::f64, &g), b = randn({3, 4, 5}, DType::f64, &g);
  Tensor c = matmul(a, b);
  REQUIRE(c.shape() == Shape{2, 3, 3, 5});
  auto cv = c.to_vector<double>();
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) {
      auto ref = naive_mm(a.narrow(0, i, 1).contiguous().to_vector<double>(),
                          b.narrow(0, j, 1).contiguous().to_vector<double>(), 3, 4, 5);
      for (int e = 0; e < 15; ++e) CHECK(cv[(i * 3 + j) * 15 + e] == doctest::Approx(ref[e]).epsilon(1e-13));
    }
  Tensor x = randn({2, 3, 4}, DType::f64, &g), w = randn({4, 6}, DType::f64, &g);
  auto xv = x.to_vector<double>();
  auto ref = naive_mm(xv, w.to_vector<double>(), 6, 4, 6);
  CHECK(max_abs_diff(matmul(x, w).to_vector<double>(), ref) < 1e-13);
}

TEST_CASE("ops: linear is x W^T + b") {
  Generator g(5);
  Tensor x = randn({2, 3, 4}, DType::f64, &g), w = randn({5, 4}, DType::f64, &g), b = randn({5}, DType::f64, &g);
  auto y = linear(x, w, b).to_vector<double>();
  auto xv = x.to_vector<double>(), wv = w.to_vector<double>(), bv = b.to_vector<double>();
  CHECK(linear(x, w, b).shape() == Shape{2, 3, 5});
  for (int r = 0; r < 6; ++r)
    for (int o = 0; o < 5; ++o) {
      double acc = bv[o];
      for (int i = 0; i < 4; ++i) acc += xv[r * 4 + i] * wv[o * 4 + i];
      CHECK(y[r * 5 + o] == doctest::Approx(acc).epsilon(1e-13));
    }
}

TEST_CASE("ops: embedding picks rows and its gradient accumulates repeated ids") {
  Tensor w = from_vector<float>({0, 1, 10, 11, 20, 21}, {3, 2}).requires_grad_();
  Tensor ids = from_vector<int64_t>({2, 0, 2}, {3});
  Tensor e = embedding(w, ids);
  CHECK(e.to_vector<float>() == std::vector<float>{20, 21, 0, 1, 20, 21});
  sum(e * from_vector<float>({1, 2, 3, 4, 5, 6}, {3, 2})).backward();
  CHECK(w.grad().to_vector<float>() == std::vector<float>{3, 4, 0, 0, 6, 8});
}

TEST_CASE("ops: log_softmax matches the definition") {
  Generator g(6);
  Tensor x = randn({3, 7}, DType::f64, &g) * 10.0;
  auto v = x.to_vector<double>();
  auto y = log_softmax(x, 1).to_vector<double>();
  for (int r = 0; r < 3; ++r) {
    double s = 0;
    for (int i = 0; i < 7; ++i) s += std::exp(v[r * 7 + i]);
    for (int i = 0; i < 7; ++i) CHECK(y[r * 7 + i] == doctest::Approx(v[r * 7 + i] - std::log(s)).epsilon(1e-12));
  }
}

TEST_CASE("ops: log_softmax and cross_entropy in float32 against the definition in double, rows of any width") {
  // float32 rows take vec.h's exponential a vector of lanes at a time: widths below, at and past 16, and
  // logits of scale 1 (where a lane past the row would add exp(-max), about 0.1) and 10.
  Generator g(16);
  for (int64_t C : {1, 7, 16, 37, 256})
    for (double scale : {1.0, 10.0}) {
      INFO("C ", C, " scale ", scale);
      const int64_t N = 5;
      Tensor x = (randn({N, C}, DType::f32, &g) * scale).detach().requires_grad_();
      std::vector<int64_t> t(N);
      for (int64_t r = 0; r < N; ++r) t[r] = (int64_t)(g.next_u64() % C);
      const auto xv = x.to_vector<float>();
      const auto y = log_softmax(x, 1).to_vector<float>();
      Tensor loss = cross_entropy(x, from_vector<int64_t>(t, {N}));
      loss.backward();
      const auto dx = x.grad().to_vector<float>();
      double want_loss = 0;
      for (int64_t r = 0; r < N; ++r) {
        double s = 0;
        for (int64_t i = 0; i < C; ++i) s += std::exp((double)xv[r * C + i]);
        for (int64_t i = 0; i < C; ++i) {
          const double ly = (double)xv[r * C + i] - std::log(s);
          CHECK(std::abs(y[r * C + i] - ly) <= 1e-6 * (1 + std::abs(ly)));
          const double grad = (std::exp(ly) - (i == t[r] ? 1.0 : 0.0)) / N;
          CHECK(std::abs(dx[r * C + i] - grad) <= 1e-6 / N);
        }
        want_loss -= ((double)xv[r * C + t[r]] - std::log(s)) / N;
      }
      CHECK(std::abs(loss.item() - want_loss) <= 1e-6 * (1 + std::abs(want_loss)));
    }
}

TEST_CASE("ops: fused cross_entropy matches its composed reference (values and gradients, float32)") {
  Generator g(7);
  for (bool with_ignore : {false, true}) {
    Tensor logits = (randn({64, 256}, DType::f32, &g) * 3.0).detach().requires_grad_();
    std::vector<int64_t> t(64);
    for (int i = 0; i < 64; ++i) t[i] = (int64_t)(g.next_u64() % 256);
    if (with_ignore) t[3] = t[17] = -100;
    Tensor targets = from_vector<int64_t>(t, {64});
    Tensor fused = cross_entropy(logits, targets);
    fused.backward();
    Tensor g_fused = logits.grad();
    logits.zero_grad();
    Tensor ref = cross_entropy_reference(logits, targets);
    ref.backward();
    CHECK(fused.item() == doctest::Approx(ref.item()).epsilon(1e-6));
    CHECK(check_close(g_fused, logits.grad(), 1e-7, 1e-5, "cross_entropy grad"));
    if (with_ignore) {
      auto gv = g_fused.to_vector<float>();
      for (int i = 0; i < 256; ++i) CHECK(gv[3 * 256 + i] == 0.0f);
    }
  }
}

TEST_CASE("ops: cross_entropy of a known case") {
  // Two rows, uniform logits over 4 classes: loss = ln 4.
  Tensor logits = zeros({2, 4}, DType::f64);
  CHECK(cross_entropy(logits, from_vector<int64_t>({0, 3}, {2})).item() == doctest::Approx(std::log(4.0)));
  CHECK(std::isnan(cross_entropy(logits, from_vector<int64_t>({-100, -100}, {2})).item()));
}

TEST_CASE("ops: fused rms_norm matches its composed reference (values and gradients, float32)") {
  Generator g(8);
  Tensor x = randn({4, 9, 64}, DType::f32, &g).requires_grad_();
  Tensor w = (randn({64}, DType::f32, &g) + 1.0).detach().requires_grad_();
  Tensor r = randn({4, 9, 64}, DType::f32, &g);
  sum(rms_norm(x, w) * r).backward();
  Tensor gx = x.grad(), gw = w.grad();
  x.zero_grad(), w.zero_grad();
  sum(rms_norm_reference(x, w) * r).backward();
  CHECK(check_close(rms_norm(x, w), rms_norm_reference(x, w), 1e-6, 1e-5, "rms_norm"));
  CHECK(check_close(gx, x.grad(), 1e-6, 1e-4, "rms_norm dx"));
  CHECK(check_close(gw, w.grad(), 1e-5, 1e-4, "rms_norm dw"));
  // And against the definition in double.
  auto xv = x.to_vector<float>(), wv = w.to_vector<float>(), yv = rms_norm(x, w).to_vector<float>();
  for (int row = 0; row < 36; ++row) {
    double ss = 0;
    for (int i = 0; i < 64; ++i) ss += (double)xv[row * 64 + i] * xv[row * 64 + i];
    double rs = 1.0 / std::sqrt(ss / 64 + 1e-5);
    for (int i = 0; i < 64; i += 13)
      CHECK(yv[row * 64 + i] == doctest::Approx(xv[row * 64 + i] * rs * wv[i]).epsilon(1e-5));
  }
}

TEST_CASE(
    "ops: rms_norm over many rows: dw against the definition in double, the same bits for 1 and 2 threads, "
    "a row alone as in its batch") {
  // 3000 rows of 37 (a width off the 8-lane sums): dw is summed over blocks of rows, dx and the output per row.
  // float64 too: there a different order of dw's sums shows in the bits (float32 rounds it away).
  for (DType dt : {DType::f32, DType::f64}) {
    INFO("dtype ", dt);
    Generator g(21);
    const int64_t R = 3000, D = 37;
    Tensor x = randn({R, D}, dt, &g).requires_grad_();
    Tensor w = (randn({D}, dt, &g) + 1.0).detach().requires_grad_();
    Tensor up = randn({R, D}, dt, &g);
    const auto vals = [](const Tensor& t) { return t.detach().to(DType::f64).to_vector<double>(); };
    const int saved = num_threads();
    auto run = [&](int threads) {
      set_num_threads(threads);
      x.zero_grad(), w.zero_grad();
      Tensor y = rms_norm(x, w);
      sum(y * up).backward();
      return std::vector<std::vector<double>>{vals(y), vals(x.grad()), vals(w.grad())};
    };
    const auto one = run(1), two = run(2);
    set_num_threads(saved);
    CHECK(one[0] == two[0]);
    CHECK(one[1] == two[1]);
    CHECK(one[2] == two[2]);
    // dw[i] = sum_r up[r, i] x[r, i] rstd_r, in double; in float32 the op's rstd is rounded (2^-24 relative).
    const auto xv = vals(x), uv = vals(up);
    std::vector<double> ref(D, 0.0), mag(D, 0.0);
    for (int64_t r = 0; r < R; ++r) {
      double ss = 0;
      for (int64_t i = 0; i < D; ++i) ss += xv[r * D + i] * xv[r * D + i];
      const double rs = 1.0 / std::sqrt(ss / D + 1e-5);
      for (int64_t i = 0; i < D; ++i) {
        ref[i] += uv[r * D + i] * xv[r * D + i] * rs;
        mag[i] += std::abs(uv[r * D + i] * xv[r * D + i] * rs);
      }
    }
    const double tol = dt == DType::f32 ? 1e-6 : 1e-13;
    for (int64_t i = 0; i < D; ++i) CHECK(std::abs(one[2][i] - ref[i]) <= tol * mag[i]);
    // A row by itself gives the bits it has in the batch (generation normalises one token at a time).
    for (int64_t r : {0, 63, 64, 1999, 2999}) {
      const auto alone = vals(rms_norm(x.detach().narrow(0, r, 1).contiguous(), w.detach()));
      CHECK(std::equal(alone.begin(), alone.end(), one[0].begin() + r * D));
    }
  }
}

namespace {
// rms_norm on rows where eps is not negligible, against hand values and the definition in double.
void check_rms_norm_eps(Device dev) {
  // x = (0.3, 0.4): mean(x^2) = 0.125; with eps 0.125, rstd = 1 / sqrt(0.25) = 2. A zero row: 0, not NaN.
  Tensor x = from_vector<double>({0.3, 0.4, 0, 0}, {2, 2}, dev);
  Tensor w = from_vector<double>({1.0, -2.0}, {2}, dev);
  auto y = rms_norm(x, w, 0.125).to(kCPU).to_vector<double>();
  CHECK_REL(y[0], 0.6, 1e-15);
  CHECK_REL(y[1], -1.6, 1e-15);
  CHECK(y[2] == 0.0);
  CHECK(y[3] == 0.0);
  // eps 0 is allowed (as in PyTorch): x / sqrt(mean(x^2)) = (3, 4) / sqrt(12.5) for (3, 4).
  auto y0 = rms_norm(from_vector<double>({3, 4}, {1, 2}, dev), w, 0.0).to(kCPU).to_vector<double>();
  CHECK_REL(y0[0], 3 / std::sqrt(12.5), 1e-15);
  CHECK_REL(y0[1], -8 / std::sqrt(12.5), 1e-15);
  // float32 rows of norm about 1e-3 with the default eps 1e-5 (which then sets most of rstd).
  Generator g(12);
  Tensor xs = (randn({5, 32}, DType::f32, &g) * 1e-3).to(dev);
  Tensor ws = randn({32}, DType::f32, &g).to(dev);
  auto xv = xs.to(kCPU).to_vector<float>(), wv = ws.to(kCPU).to_vector<float>();
  auto ys = rms_norm(xs, ws).to(kCPU).to_vector<float>();
  for (int r = 0; r < 5; ++r) {
    double ss = 0;
    for (int i = 0; i < 32; ++i) ss += (double)xv[r * 32 + i] * xv[r * 32 + i];
    const double rs = 1.0 / std::sqrt(ss / 32 + 1e-5);
    for (int i = 0; i < 32; ++i) CHECK_REL(ys[r * 32 + i], (double)xv[r * 32 + i] * rs * wv[i], 1e-5);
  }
  // eps must be finite and >= 0.
  for (double bad : {-1e-5, std::nan(""), (double)INFINITY})
    check_error([&] { rms_norm(x, w, bad); }, {"[rms_norm] eps must be finite and >= 0, got"});
  check_error([&] { rms_norm_reference(x, w, -1.0); }, {"[rms_norm_reference] eps must be finite and >= 0, got -1"});
}
}  // namespace

TEST_CASE("ops: rms_norm's eps matters on rows of small norm (hand values), and must be finite and >= 0") {
  check_rms_norm_eps(kCPU);
}

TEST_CASE("cuda ops: rms_norm's eps on rows of small norm, and its check, as on the cpu") {
  MG_REQUIRE_CUDA();
  check_rms_norm_eps(kCUDA);
}

namespace {
// log_softmax and cross_entropy on logits far past exp's range (|x| ~ 1000, exp overflows past 709):
// the shift by the row max keeps them finite. Hand values, in float32 and float64: log_softmax to the last
// bit of the dtype ((x - max) - log sum, as PyTorch; x - (max + log sum) was 3e-5 off in float32), the loss
// and gradients to within one unit in the last place of 1000.
void check_logsumexp_shift(Device dev) {
  const double ln2 = std::log(2.0);
  for (DType t : {DType::f32, DType::f64}) {
    CAPTURE(t);
    const double tol = 1000 * (t == DType::f64 ? 0x1p-52 : 0x1p-23);
    auto near = [&](double got, double want) {
      CHECK_MESSAGE(std::abs(got - want) <= tol, "got " << got << ", want " << want << " within " << tol);
    };
    Tensor x = to_dtype(from_vector<double>({1000, 1000, -1000, -1000, 1000, 0}, {3, 2}, dev), t);
    auto y = log_softmax(x, 1).to(kCPU).to(DType::f64).to_vector<double>();
    const double ln2_t = t == DType::f32 ? (double)(float)-ln2 : -ln2;  // -ln 2 rounded to the dtype
    for (int i = 0; i < 4; ++i) CHECK(y[i] == ln2_t);
    CHECK(y[4] == 0.0);  // log(1 + exp(-1000)) rounds to 0
    CHECK(y[5] == -1000.0);
    // Rows (1000, 1000) with target 0 and (800, 0) with target 1: losses ln 2 and 800, mean (ln 2 + 800) / 2;
    // the gradient is (softmax - onehot) / 2: (-1/4, 1/4) and (1/2, -1/2).
    for (bool fused : {true, false}) {
      CAPTURE(fused);
      Tensor logits = to_dtype(from_vector<double>({1000, 1000, 800, 0}, {2, 2}, dev), t).requires_grad_();
      Tensor targets = from_vector<int64_t>({0, 1}, {2}, dev);
      Tensor loss = fused ? cross_entropy(logits, targets) : cross_entropy_reference(logits, targets);
      near(loss.item(), (ln2 + 800) / 2);
      loss.backward();
      auto gv = logits.grad().to(kCPU).to(DType::f64).to_vector<double>();
      near(gv[0], -0.25);
      near(gv[1], 0.25);
      near(gv[2], 0.5);
      near(gv[3], -0.5);
    }
  }
}
}  // namespace

TEST_CASE("ops: log_softmax and cross_entropy of logits around +-1000 (the max shift), against hand values") {
  check_logsumexp_shift(kCPU);
}

TEST_CASE("cuda ops: log_softmax and cross_entropy of logits around +-1000, against hand values as on the cpu") {
  MG_REQUIRE_CUDA();
  check_logsumexp_shift(kCUDA);
}

namespace {
// Products with an empty inner dim (in_features or k of 0) are sums of nothing: zeros, or the bias; with
// an empty output dim they are empty, and so is what backward sends through them.
void check_empty_inner_products(Device dev) {
  auto leaf = [&](std::vector<double> v, Shape s) { return from_vector<double>(v, s, dev).requires_grad_(); };
  {
    Tensor x = leaf({}, {2, 0}), w = leaf({}, {3, 0}), b = leaf({1, 2, 3}, {3});
    Tensor y = linear(x, w, b);
    REQUIRE(y.shape() == Shape{2, 3});
    CHECK(y.to(kCPU).to_vector<double>() == std::vector<double>{1, 2, 3, 1, 2, 3});
    sum(y * from_vector<double>({1, 10, 100, 2, 20, 200}, {2, 3}, dev)).backward();
    CHECK(b.grad().to(kCPU).to_vector<double>() == std::vector<double>{3, 30, 300});
    CHECK(x.grad().shape() == Shape{2, 0});
    CHECK(w.grad().shape() == Shape{3, 0});
    Tensor y3 = linear(zeros({2, 2, 0}, DType::f64, dev), zeros({3, 0}, DType::f64, dev));
    REQUIRE(y3.shape() == Shape{2, 2, 3});
    CHECK(y3.to(kCPU).to_vector<double>() == std::vector<double>(12, 0.0));
  }
  {
    Tensor x = leaf({1, 2, 3, 4, 5, 6, 7, 8}, {2, 4}), w = leaf({}, {0, 4});
    Tensor y = linear(x, w);
    REQUIRE(y.shape() == Shape{2, 0});
    sum(y).backward();
    CHECK(x.grad().to(kCPU).to_vector<double>() == std::vector<double>(8, 0.0));
    CHECK(w.grad().shape() == Shape{0, 4});
  }
  {
    Tensor a = leaf({}, {2, 3, 0}), b = leaf({}, {0, 4});
    Tensor c = matmul(a, b);
    REQUIRE(c.shape() == Shape{2, 3, 4});
    CHECK(c.to(kCPU).to_vector<double>() == std::vector<double>(24, 0.0));
    sum(c).backward();
    CHECK(a.grad().shape() == Shape{2, 3, 0});
    CHECK(b.grad().shape() == Shape{0, 4});
  }
  {
    Tensor a = leaf(std::vector<double>(30, 1.0), {2, 3, 5}), b = leaf({}, {5, 0});
    Tensor c = matmul(a, b);
    REQUIRE(c.shape() == Shape{2, 3, 0});
    sum(c).backward();
    CHECK(a.grad().to(kCPU).to_vector<double>() == std::vector<double>(30, 0.0));
    CHECK(b.grad().shape() == Shape{5, 0});
  }
}
}  // namespace

TEST_CASE("ops: linear and matmul with an empty inner or output dim give zeros or the bias, forward and backward") {
  check_empty_inner_products(kCPU);
}

TEST_CASE("cuda ops: linear and matmul with an empty inner or output dim, as on the cpu") {
  MG_REQUIRE_CUDA();
  check_empty_inner_products(kCUDA);
}

TEST_CASE("ops: embedding's backward on a table wide enough for the threads to split its columns equals a loop") {
  // 200 ids into a (50, 300) table: 60,000 units of work, past kParallelGrain, so each thread sums a range
  // of columns that does not start at 0. The loop adds in the same order (ids ascending): equal bits.
  const int64_t V = 50, D = 300, n = 200;
  Generator g(41);
  std::vector<int64_t> idv(n);
  for (int64_t i = 0; i < n; ++i) idv[i] = (i * 7 + i / 3) % V;
  Tensor ids = from_vector<int64_t>(idv, {n});
  Tensor r = randn({n, D}, DType::f64, &g);
  const auto rv = r.to_vector<double>();
  std::vector<double> want(V * D, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < D; ++j) want[idv[i] * D + j] += rv[i * D + j];
  const int saved = num_threads();
  for (int threads : {1, 3, 4}) {
    CAPTURE(threads);
    set_num_threads(threads);
    Tensor w = randn({V, D}, DType::f64, &g).requires_grad_();
    Tensor e = embedding(w, ids);
    const auto ev = e.to_vector<double>(), wv = w.to_vector<double>();
    bool rows_ok = true;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < D; ++j) rows_ok &= ev[i * D + j] == wv[idv[i] * D + j];
    CHECK(rows_ok);
    sum(e * r).backward();
    CHECK(w.grad().to_vector<double>() == want);
  }
  set_num_threads(saved);
}

namespace {
// to_dtype's vjp converts the gradient back: exactly, for values both dtypes hold (the registry's
// gradcheck of the float32 round trip needs loose tolerances).
void check_to_dtype_vjp(Device dev) {
  const std::vector<double> gv = {0.5, -1.25, 3, 1024, -0.0078125, 0};
  Tensor x = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3}, dev).requires_grad_();
  to_dtype(x, DType::f32).backward(to_dtype(from_vector<double>(gv, {2, 3}, dev), DType::f32));
  REQUIRE(x.grad().dtype() == DType::f64);
  CHECK(x.grad().to(kCPU).to_vector<double>() == gv);
  Tensor y = from_vector<float>({1, 2, 3, 4, 5, 6}, {3, 2}, dev).requires_grad_();
  to_dtype(y.transpose(0, 1), DType::f64).backward(from_vector<double>(gv, {2, 3}, dev));
  REQUIRE(y.grad().dtype() == DType::f32);
  // y.grad is the transpose of the gradient: gv read column by column.
  CHECK(y.grad().to(kCPU).to_vector<float>() == std::vector<float>{0.5f, 1024, -1.25f, -0.0078125f, 3, 0});
}
}  // namespace

TEST_CASE("ops: to_dtype's gradient is the output gradient converted back, exactly") { check_to_dtype_vjp(kCPU); }

TEST_CASE("cuda ops: to_dtype's gradient is the output gradient converted back, exactly, as on the cpu") {
  MG_REQUIRE_CUDA();
  check_to_dtype_vjp(kCUDA);
}
