// selective_scan: gradcheck over edge cases, the fused op against its composed reference (float64
// and float32 at docs/design.md#tolerances), determinism, the memory rule, error messages, and a
// PyTorch fixture written from the math of docs/design.md (tests/reference/make_scan_fixture.py).
// With an initial state: the same checks, a hand-computed dh0, and the carried-state property (a
// sequence run in pieces that pass last_state on equals one call, values and every gradient).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "autograd/grad_mode.h"
#include "ops/gradcheck.h"
#include "core/parallel.h"
#include "core/storage.h"
#include "ops/cpu/selective_scan.h"
#include "ops/ops.h"
#include "tests/check.h"
#include "tests/fixture.h"
#include "tests/scan_cases.h"

using namespace mg;

namespace {

using Cfg = test::ScanCase;
using test::scan_inputs;
using test::with_h0;

// Detached copies in `dt` that require grad.
std::vector<Tensor> leaves(const std::vector<Tensor>& in, DType dt) {
  std::vector<Tensor> out;
  for (auto& t : in) out.push_back(t.defined() ? t.detach().to(dt).detach().requires_grad_() : Tensor());
  return out;
}

ScanResult run_scan(const Cfg& c, const std::vector<Tensor>& in, bool reference) {
  auto f = reference ? selective_scan_reference : selective_scan;
  return f(in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7], c.softplus, c.last, in[8]);
}

const char* kInputNames[] = {"u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state"};

// Case `c` of a scan fixture against selective_scan (from the case's initial state when h0): outputs
// within 1e-12 of PyTorch's, every gradient within 1e-11.
void check_scan_fixture(const test::FixtureCase& c, bool h0) {
  REQUIRE(c.get("u").defined());
  if (h0) REQUIRE(c.get("initial_state").defined());
  std::vector<Tensor> in;
  for (const char* n : kInputNames) in.push_back(c.leaf(n));
  auto flags = c.get("flags").to_vector<double>();
  ScanResult r =
      selective_scan(in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7], flags[0] != 0, h0 || flags[1] != 0, in[8]);
  INFO(c.name);
  CHECK(rel_err(r.y, c.get("y")) < 1e-12);
  CHECK(rel_err(r.last_state, c.get("last_state")) < 1e-12);
  add(sum(mul(r.y, c.get("dy"))), sum(mul(r.last_state, c.get("dlast")))).backward();
  for (size_t i = 0; i < in.size(); ++i) {
    if (!in[i].defined()) continue;
    INFO("gradient of " << std::string(kInputNames[i]));
    CHECK(rel_err(in[i].grad(), c.get(std::string("grad.") + kInputNames[i])) < 1e-11);
  }
}

// Backward of sum(y * dy) + sum(last * dlast) for fused and reference on copies of the same inputs;
// checks outputs and gradients.
void compare_with_reference(const Cfg& c, DType dt, double tol_y, double tol_grad, double tol_ddelta) {
  Generator g(42);
  std::vector<Tensor> in = scan_inputs(c, g);
  std::vector<Tensor> fin = leaves(in, dt), rin = leaves(in, DType::f64);
  ScanResult fr = run_scan(c, fin, false), rr = run_scan(c, rin, true);
  Tensor dy = randn(fr.y.shape(), DType::f64, &g);
  Tensor floss = sum(mul(fr.y, dy.to(dt))), rloss = sum(mul(rr.y, dy));
  if (c.last) {
    Tensor dl = randn(fr.last_state.shape(), DType::f64, &g);
    floss = add(floss, sum(mul(fr.last_state, dl.to(dt))));
    rloss = add(rloss, sum(mul(rr.last_state, dl)));
    const double e = rel_err(fr.last_state, rr.last_state);
    INFO("last_state rel err " << e);
    CHECK(e < tol_y);
  }
  const double ey = rel_err(fr.y, rr.y);
  INFO("y rel err " << ey);
  CHECK(ey < tol_y);
  floss.backward();
  rloss.backward();
  for (size_t i = 0; i < in.size(); ++i) {
    if (!in[i].defined()) continue;
    REQUIRE(fin[i].grad().defined());
    const double e = rel_err(fin[i].grad(), rin[i].grad());
    INFO("gradient of " << std::string(kInputNames[i]) << " rel err " << e);
    CHECK(e < (i == 1 || i == 7 ? tol_ddelta : tol_grad));
  }
}

// Gradchecks the scan (y, and the last state when c.last) of each case, inputs drawn from Generator(seed).
void gradcheck_cases(const std::vector<Cfg>& cfgs, uint64_t seed) {
  for (const Cfg& c : cfgs) {
    Generator g(seed);
    std::vector<Tensor> in = scan_inputs(c, g);
    for (auto& t : in)
      if (t.defined()) t.requires_grad_();
    auto fn = [&](const std::vector<Tensor>& x) {
      ScanResult r = run_scan(c, x, false);
      if (!c.last) return r.y;
      return cat({reshape(r.y, {r.y.numel()}), reshape(r.last_state, {r.last_state.numel()})}, 0);
    };
    GradcheckResult r = gradcheck(fn, in);
    INFO(c.label << ": " << r.message << " (max abs " << r.max_abs_err << ")");
    CHECK(r.pass);
  }
}

}  // namespace

TEST_CASE("selective_scan: gradcheck over edge cases (float64, central differences)") {
  const int64_t K = cpu::kScanChunk;
  const std::vector<Cfg> cfgs = {
      {"l 1", 2, 1, 3, 4, true, true, true, true, true},
      {"l 1, n 1, no optional inputs, no softplus", 1, 1, 2, 1, false, false, false, false, false, 0.1, 0.9},
      {"l not a multiple of the chunk", 1, K + 7, 2, 2, true, true, true, true, true},
      {"l three chunks and a bit, last state", 1, 3 * K + 5, 2, 3, false, false, true, true, true},
      {"n 16, d 17 (not a multiple of the vector width)", 1, 9, 17, 16, true, true, true, true, true},
      {"n 64", 1, 12, 3, 64, true, false, true, true, true},
  };
  gradcheck_cases(cfgs, 7);
  gradcheck_cases(test::option_cases(6, 8, 5), 7);
}

TEST_CASE("selective_scan: fused equals the composed reference in float64, values and every gradient") {
  Cfg c{"", 2, 2 * cpu::kScanChunk + 44, 19, 8, true, true, true, true, true};
  compare_with_reference(c, DType::f64, 1e-12, 1e-11, 1e-11);
  Cfg bare{"", 3, 50, 4, 5, false, false, false, false, true, 0.05, 0.6};
  compare_with_reference(bare, DType::f64, 1e-12, 1e-11, 1e-11);
  // The option and extreme-delta cases too: each gradient relative to its own size. gradcheck's absolute
  // tolerance (1e-7) cannot see a wrong gradient of delta, A, B or C where delta ~ -30 makes them 1e-24..1e-11.
  for (const Cfg& o : test::option_cases(40, 24, 12)) {
    INFO(o.label);
    compare_with_reference(o, DType::f64, 1e-12, 1e-11, 1e-11);
  }
}

TEST_CASE("selective_scan: float32 parity with the float64 reference at (b=2, l=1000, d=64, n=16)") {
  // docs/design.md#tolerances: forward under 1e-5, gradients under 1e-4, delta (and delta_bias) under 5e-4.
  Cfg c{"", 2, 1000, 64, 16, true, true, true, true, true};
  compare_with_reference(c, DType::f32, 1e-5, 1e-4, 5e-4);
}

TEST_CASE("selective_scan: gradients are bit-identical across runs and thread counts") {
  Cfg c{"", 2, 300, 70, 16, true, true, true, true, true};
  Generator g(3);
  std::vector<Tensor> in = scan_inputs(c, g);
  Tensor dy = randn({c.b, c.l, c.d}, DType::f32, &g), dl = randn({c.b, c.d, c.n}, DType::f32, &g);
  const int saved_threads = num_threads();
  std::vector<std::vector<std::vector<float>>> runs;
  for (int threads : {1, 2, 3, 2}) {
    set_num_threads(threads);
    std::vector<Tensor> x = leaves(in, DType::f32);
    ScanResult r = run_scan(c, x, false);
    add(sum(mul(r.y, dy)), sum(mul(r.last_state, dl))).backward();
    std::vector<std::vector<float>> got{r.y.to_vector<float>()};
    for (auto& t : x)
      if (t.defined()) got.push_back(t.grad().to_vector<float>());
    runs.push_back(got);
  }
  set_num_threads(saved_threads);
  for (size_t k = 1; k < runs.size(); ++k)
    for (size_t i = 0; i < runs[0].size(); ++i) {
      INFO("run " << k << ", tensor " << i);
      CHECK(std::memcmp(runs[0][i].data(), runs[k][i].data(), runs[0][i].size() * sizeof(float)) == 0);
    }
}

TEST_CASE("selective_scan: memory rule: no (b, l, d, n) tensor, chunk-end states only") {
  Cfg c{"", 2, 1024, 64, 16, true, true, true, true, false};
  Generator g(5);
  std::vector<Tensor> x = leaves(scan_inputs(c, g), DType::f32);
  Tensor dy = randn({c.b, c.l, c.d}, DType::f32, &g);
  const size_t all_states = (size_t)(c.b * c.l * c.d * c.n) * sizeof(float);
  const size_t y_bytes = (size_t)(c.b * c.l * c.d) * sizeof(float);
  size_t grad_bytes = 0;
  for (auto& t : x)
    if (t.defined()) grad_bytes += t.nbytes();

  // Without grad: the output only.
  {
    NoGradGuard ng;
    const size_t before = cpu_bytes_in_use();
    reset_cpu_peak_bytes();
    ScanResult r = run_scan(c, x, false);
    CHECK(cpu_peak_bytes() - before == y_bytes);
  }
  // A first backward gives the leaves their .grad, so that the measured one accumulates in place
  // and its peak is the vjp's gradients plus the kernel's scratch.
  sum(mul(run_scan(c, x, false).y, dy)).backward();
  // With grad: the output and the chunk-end states, 1/kScanChunk of all states.
  const size_t before = cpu_bytes_in_use();
  reset_cpu_peak_bytes();
  ScanResult r = run_scan(c, x, false);
  const size_t saved = cpu_bytes_in_use() - before - y_bytes;
  CHECK(saved == all_states / cpu::kScanChunk);
  CHECK(cpu_peak_bytes() - before == y_bytes + saved);
  // Backward: the saved states plus what it holds beyond the gradients must stay under 1/8 of all
  // states (a (b, l, d, n) tensor would be 8x that).
  Tensor loss = sum(mul(r.y, dy));
  const size_t before_bwd = cpu_bytes_in_use();
  reset_cpu_peak_bytes();
  loss.backward();
  const int64_t peak = (int64_t)(cpu_peak_bytes() - before_bwd);
  // Beyond the gradients it returns and the gradient of y (made by mul's backward, not the scan's).
  const int64_t extra = (int64_t)saved + std::max<int64_t>(0, peak - (int64_t)grad_bytes - (int64_t)y_bytes);
  MESSAGE("backward peak above its start " << peak << " bytes; gradients " << grad_bytes << "; saved states " << saved
                                           << "; extra " << extra << "; all states " << all_states);
  CHECK(peak >= (int64_t)(grad_bytes + y_bytes));
  CHECK(extra <= (int64_t)all_states / 8);
}

TEST_CASE("selective_scan: z, B and C as narrows of wider tensors are read in place (values, every gradient)") {
  for (DType dt : {DType::f32, DType::f64}) {
    test::check_scan_reads_views_in_place({"b 2, l 300", 2, 300, 40, 16, true, true, true, true}, dt, kCPU);
    test::check_scan_reads_views_in_place(with_h0({"l 1, h0", 3, 1, 5, 3, true, true, true, true}), dt, kCPU);
    test::check_scan_reads_views_in_place({"b 1, no z", 1, 131, 17, 4, true, false, true, true}, dt, kCPU);
  }
  // Read in place: the forward without grad allocates its outputs only, no copy of z, B or C.
  const int64_t b = 2, l = 64, d = 32, n = 8;
  Generator g(4);
  Tensor xz = randn({b, l, 2 * d}, DType::f32, &g), dbl = randn({b, l, 2 + 2 * n}, DType::f32, &g);
  Tensor u = randn({b, l, d}, DType::f32, &g), delta = randn({b, l, d}, DType::f32, &g),
         A = rand({d, n}, DType::f32, &g, -2.0, -0.2);
  NoGradGuard ng;
  const size_t before = cpu_bytes_in_use();
  reset_cpu_peak_bytes();
  ScanResult r = selective_scan(u, delta, A, narrow(dbl, 2, 2, n), narrow(dbl, 2, 2 + n, n), Tensor(),
                                narrow(xz, 2, d, d), Tensor(), true, false);
  CHECK(cpu_peak_bytes() - before == r.y.nbytes());
}

TEST_CASE("selective_scan: without softplus, D, z or bias the output is the plain recurrence") {
  // A hand-computed case: d = n = 1, A = -1, dt = 0.5, B = 2, C = 3, u = 1, 2:
  // h0 = 0.5*2*1 = 1, y0 = 3; h1 = e^-0.5 * 1 + 0.5*2*2 = 2.60653066, y1 = 7.81959198.
  Tensor u = from_vector<double>({1, 2}, {1, 2, 1}), delta = from_vector<double>({0.5, 0.5}, {1, 2, 1});
  Tensor A = from_vector<double>({-1}, {1, 1}), B = from_vector<double>({2, 2}, {1, 2, 1}),
         C = from_vector<double>({3, 3}, {1, 2, 1});
  ScanResult r = selective_scan(u, delta, A, B, C, Tensor(), Tensor(), Tensor(), false, true);
  auto y = r.y.to_vector<double>();
  CHECK(y[0] == doctest::Approx(3.0).epsilon(1e-14));
  CHECK(y[1] == doctest::Approx(3 * (std::exp(-0.5) + 2)).epsilon(1e-14));
  CHECK(r.last_state.item() == doctest::Approx(std::exp(-0.5) + 2).epsilon(1e-14));
}

TEST_CASE("selective_scan: matches the PyTorch fixture (outputs and every gradient)") {
  auto fx = test::load_scan_fixture();
  for (const char* name : {"scan_full", "scan_bare", "scan_n16"}) check_scan_fixture({fx, name}, false);
}

TEST_CASE("selective_scan: error messages name the op, the tensor and the shapes") {
  auto f = [](const Shape& s, DType dt = DType::f32) { return zeros(s, dt); };
  Tensor u = f({2, 10, 64}), A = f({64, 16}), B = f({2, 10, 16});
  CHECK_THROWS_WITH_AS(selective_scan(u, u, A, f({2, 10, 8}), B),
                       "[selective_scan] B must be (2, 10, 16) to match u (2, 10, 64) and A (64, 16), got (2, 10, 8)",
                       Error);
  CHECK_THROWS_WITH_AS(selective_scan(u, u, A, B, f({2, 9, 16})),
                       "[selective_scan] C must be (2, 10, 16) to match u (2, 10, 64) and A (64, 16), got (2, 9, 16)",
                       Error);
  CHECK_THROWS_WITH_AS(selective_scan(u, u, f({32, 16}), B, B),
                       "[selective_scan] A must be (64, n) to match u (2, 10, 64), got (32, 16)", Error);
  CHECK_THROWS_WITH_AS(selective_scan(u, f({2, 10, 64}, DType::f64), A, B, B),
                       "[selective_scan] delta is float64 but u is float32: all inputs must share one dtype", Error);
  CHECK_THROWS_WITH_AS(selective_scan(u, u, A, B, B, f({63})),
                       "[selective_scan] D must be (64,) to match u (2, 10, 64), got (63,)", Error);
  CHECK_THROWS_WITH_AS(selective_scan(u, u, A, B, B, Tensor(), f({2, 10, 32})),
                       "[selective_scan] z must be (2, 10, 64) like u, got (2, 10, 32)", Error);
  CHECK_THROWS_WITH_AS(selective_scan(f({10, 64}), u, A, B, B), "[selective_scan] u must be (b, l, d), got (10, 64)",
                       Error);
  CHECK_THROWS_WITH_AS(selective_scan(u, Tensor(), A, B, B), "[selective_scan] delta is required but was undefined",
                       Error);
  CHECK_THROWS_WITH_AS(selective_scan_reference(u, u, A, f({2, 10, 8}), B),
                       "[selective_scan_reference] B must be (2, 10, 16) to match u (2, 10, 64) and A (64, 16), got "
                       "(2, 10, 8)",
                       Error);
}

// ---- the initial state ----

namespace {

// The sequence of `leaves` (inputs as scan_inputs lays them out) run in pieces of the given lengths
// along time, each piece starting from the previous piece's last_state (not detached) and the first
// from leaves[8] (zeros when undefined). Returns the pieces' outputs joined along time and the last
// piece's last state.
ScanResult run_in_pieces(const Cfg& c, const std::vector<Tensor>& x, const std::vector<int64_t>& pieces) {
  std::vector<Tensor> ys;
  Tensor h = x[8];
  int64_t t0 = 0;
  for (int64_t len : pieces) {
    auto cut = [&](const Tensor& t) { return t.defined() ? narrow(t, 1, t0, len) : Tensor(); };
    ScanResult r =
        selective_scan(cut(x[0]), cut(x[1]), x[2], cut(x[3]), cut(x[4]), x[5], cut(x[6]), x[7], c.softplus, true, h);
    ys.push_back(r.y);
    h = r.last_state;
    t0 += len;
  }
  REQUIRE(t0 == c.l);
  return {cat(ys, 1), h};
}

}  // namespace

TEST_CASE("selective_scan: gradcheck with an initial state over edge cases (float64, central differences)") {
  const int64_t K = cpu::kScanChunk;
  const std::vector<Cfg> cfgs = {
      with_h0({"l 1", 2, 1, 3, 4, true, true, true, true, true}),
      with_h0({"l 1, n 1, no optional inputs, no softplus, no last state", 1, 1, 2, 1, false, false, false, false,
               false, 0.1, 0.9}),
      with_h0({"l not a multiple of the chunk, every option", 1, K + 7, 2, 2, true, true, true, true, true}),
      with_h0({"l exactly two chunks, none optional, softplus off", 1, 2 * K, 2, 2, false, false, false, false, true,
               0.05, 0.5}),
      with_h0({"n 16, d 17, no last state", 1, 9, 17, 16, true, true, true, true, false}),
      with_h0({"D only", 2, 6, 5, 3, true, false, false, true, false}),
      with_h0({"z only, last state", 2, 6, 5, 3, false, true, false, true, true}),
      with_h0({"delta_bias only, softplus off", 2, 6, 5, 3, false, false, true, false, true, 0.6, 1.2}),
  };
  gradcheck_cases(cfgs, 17);
}

TEST_CASE("selective_scan: with an initial state, fused equals the composed reference (float64 and float32)") {
  compare_with_reference(with_h0({"", 2, 2 * cpu::kScanChunk + 44, 19, 8, true, true, true, true, true}), DType::f64,
                         1e-12, 1e-11, 1e-11);
  compare_with_reference(with_h0({"", 3, 50, 4, 5, false, false, false, false, true, 0.05, 0.6}), DType::f64, 1e-12,
                         1e-11, 1e-11);
  compare_with_reference(with_h0({"", 1, 1, 3, 2, true, false, true, true, false}), DType::f64, 1e-12, 1e-11, 1e-11);
  // docs/design.md#tolerances in float32.
  compare_with_reference(with_h0({"", 2, 300, 64, 16, true, true, true, true, true}), DType::f32, 1e-5, 1e-4, 5e-4);
}

TEST_CASE("selective_scan: a zero initial state gives bit-identical outputs and gradients to none") {
  for (DType dt : {DType::f32, DType::f64}) {
    Cfg c{"", 2, cpu::kScanChunk + 30, 21, 16, true, true, true, true, true};
    Generator g(31);
    std::vector<Tensor> in = scan_inputs(c, g);
    Tensor dy = randn({c.b, c.l, c.d}, dt, &g), dl = randn({c.b, c.d, c.n}, dt, &g);
    std::vector<std::vector<std::vector<double>>> runs;
    for (bool zero_h0 : {false, true}) {
      std::vector<Tensor> x = leaves(in, dt);
      if (zero_h0) x[8] = zeros({c.b, c.d, c.n}, dt).requires_grad_();
      ScanResult r = run_scan(c, x, false);
      add(sum(mul(r.y, dy)), sum(mul(r.last_state, dl))).backward();
      std::vector<std::vector<double>> got{r.y.to(DType::f64).to_vector<double>(),
                                           r.last_state.to(DType::f64).to_vector<double>()};
      for (size_t i = 0; i < 8; ++i)
        if (x[i].defined()) got.push_back(x[i].grad().to(DType::f64).to_vector<double>());
      runs.push_back(got);
    }
    for (size_t i = 0; i < runs[0].size(); ++i) {
      INFO(dtype_name(dt) << " tensor " << i);
      CHECK(runs[0][i] == runs[1][i]);
    }
  }
}

TEST_CASE("selective_scan: hand-computed values and dh0 with an initial state") {
  // d = n = 1, A = -1, dt = 0.5, B = 2, C = 3, u = 1, 2, h0 = 4:
  // h[0] = e^-0.5 * 4 + 0.5*2*1, y0 = 3 h[0]; h[1] = e^-0.5 h[0] + 0.5*2*2, y1 = 3 h[1].
  // For the loss y0 + y1: dL/dh[1] = 3, dL/dh[0] = 3 + 3 e^-0.5, dh0 = e^-0.5 dL/dh[0].
  const double e = std::exp(-0.5);
  Tensor u = from_vector<double>({1, 2}, {1, 2, 1}), delta = from_vector<double>({0.5, 0.5}, {1, 2, 1});
  Tensor A = from_vector<double>({-1}, {1, 1}), B = from_vector<double>({2, 2}, {1, 2, 1}),
         C = from_vector<double>({3, 3}, {1, 2, 1});
  for (bool reference : {false, true}) {
    Tensor h0 = from_vector<double>({4}, {1, 1, 1}).requires_grad_();
    auto f = reference ? selective_scan_reference : selective_scan;
    ScanResult r = f(u, delta, A, B, C, Tensor(), Tensor(), Tensor(), false, true, h0);
    const double h_0 = 4 * e + 1, h_1 = e * h_0 + 2;
    auto y = r.y.to_vector<double>();
    INFO("reference " << reference);
    CHECK(y[0] == doctest::Approx(3 * h_0).epsilon(1e-14));
    CHECK(y[1] == doctest::Approx(3 * h_1).epsilon(1e-14));
    CHECK(r.last_state.item() == doctest::Approx(h_1).epsilon(1e-14));
    sum(r.y).backward();
    CHECK(h0.grad().item() == doctest::Approx(e * (3 + 3 * e)).epsilon(1e-14));
  }
}

TEST_CASE("selective_scan: a sequence run in pieces that carry last_state equals one call (values, every gradient)") {
  const int64_t K = cpu::kScanChunk;
  struct Case {
    Cfg c;
    std::vector<int64_t> pieces;
  };
  const Case cases[] = {
      {with_h0({"every option, an initial state", 2, 2 * K + 44, 19, 8, true, true, true, true, true}),
       {1, K, 37, 2 * K + 44 - K - 38}},
      {{"none optional, softplus off, from zeros", 2, K + 20, 5, 3, false, false, false, false, true, 0.05, 0.6},
       {K + 3, 1, 16}},
      {with_h0({"n 16, pieces of one step", 1, 5, 17, 16, true, true, false, true, true}), {1, 1, 1, 1, 1}},
  };
  for (const Case& k : cases) {
    const Cfg& c = k.c;
    Generator g(8);
    std::vector<Tensor> in = scan_inputs(c, g);
    Tensor dy = randn({c.b, c.l, c.d}, DType::f64, &g), dl = randn({c.b, c.d, c.n}, DType::f64, &g);
    std::vector<Tensor> whole = leaves(in, DType::f64), parts = leaves(in, DType::f64);
    ScanResult w = run_scan(c, whole, false);
    ScanResult p = run_in_pieces(c, parts, k.pieces);
    INFO(c.label);
    REQUIRE(p.y.shape() == w.y.shape());
    REQUIRE(p.last_state.shape() == w.last_state.shape());
    CHECK(rel_err(p.y, w.y) < 1e-12);
    CHECK(rel_err(p.last_state, w.last_state) < 1e-12);
    add(sum(mul(w.y, dy)), sum(mul(w.last_state, dl))).backward();
    add(sum(mul(p.y, dy)), sum(mul(p.last_state, dl))).backward();
    for (size_t i = 0; i < in.size(); ++i) {
      if (!in[i].defined()) continue;
      REQUIRE(parts[i].grad().defined());
      const double e = rel_err(parts[i].grad(), whole[i].grad());
      INFO("gradient of " << std::string(kInputNames[i]) << " rel err " << e);
      CHECK(e < 1e-11);
    }
  }
}

TEST_CASE("selective_scan: conv then scan in pieces that carry both states equals one call (every gradient)") {
  // The mixer's order: u = silu(conv(x)); y = scan(u, ...). The pieces carry the conv's final_state and
  // the scan's last_state, neither detached, so gradients flow back into earlier pieces.
  const int64_t b = 2, l = cpu::kScanChunk + 9, d = 6, n = 4, k = 4;
  const std::vector<int64_t> pieces{2, 1, cpu::kScanChunk, 6};
  Generator g(12);
  auto rn = [&](const Shape& s) { return randn(s, DType::f64, &g); };
  const std::vector<Tensor> in = test::conv_scan_inputs(b, l, d, n, k, g);
  const auto& names = test::kConvScanInputNames;
  Tensor dy = rn({b, l, d}), dconv = rn({b, d, k - 1}), dlast = rn({b, d, n});
  std::vector<Tensor> whole = leaves(in, DType::f64), parts = leaves(in, DType::f64);
  std::vector<Tensor> w = test::conv_scan_in_pieces(whole, {l}), p = test::conv_scan_in_pieces(parts, pieces);
  for (size_t i = 0; i < 3; ++i) {
    INFO("output " << i);
    REQUIRE(p[i].shape() == w[i].shape());
    CHECK(rel_err(p[i], w[i]) < 1e-12);
  }
  add(add(sum(mul(w[0], dy)), sum(mul(w[1], dconv))), sum(mul(w[2], dlast))).backward();
  add(add(sum(mul(p[0], dy)), sum(mul(p[1], dconv))), sum(mul(p[2], dlast))).backward();
  for (size_t i = 0; i < in.size(); ++i) {
    REQUIRE(parts[i].grad().defined());
    const double e = rel_err(parts[i].grad(), whole[i].grad());
    INFO("gradient of " << std::string(names[i]) << " rel err " << e);
    CHECK(e < 1e-11);
  }
}

TEST_CASE("selective_scan: matches the PyTorch fixture with an initial state (outputs and every gradient)") {
  auto fx = test::load_fixture("scan_state_fixture.bin", "MGSTATFX");
  for (const char* name : {"scan_h0_full", "scan_h0_bare"}) check_scan_fixture({fx, name}, true);
}
