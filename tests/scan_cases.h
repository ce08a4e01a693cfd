// The selective scan's test cases and their random inputs, shared by the CPU tests
// (test_selective_scan.cpp) and the CUDA tests (test_cuda_scan.cpp), so that both draw the same
// inputs for a case and seed.
#pragma once
#include <vector>

#include "core/rng.h"
#include "ops/ops.h"
#include "ops/scan.h"

namespace mg::test {

// One case: sizes, which optional inputs and options are on, and the ranges of delta and A.
struct ScanCase {
  const char* label;
  int64_t b, l, d, n;
  bool D = true, z = true, bias = true, softplus = true, last = false;
  double delta_lo = 0, delta_hi = 0;  // delta uniform in [lo, hi); randn when both are 0
  double A_lo = -2.0, A_hi = -0.2;
  bool h0 = false;  // an initial state
};

inline ScanCase with_h0(ScanCase c) {
  c.h0 = true;
  return c;
}

// The cases of the optional inputs one at a time and of delta's extreme ranges (with and without softplus),
// d 3..5 and n 2..3: at length l, the large-delta cases at l_large, the growing state at l_growing.
inline std::vector<ScanCase> option_cases(int64_t l, int64_t l_large, int64_t l_growing) {
  return {
      {"D only", 2, l, 5, 3, true, false, false, true, false},
      {"z only", 2, l, 5, 3, false, true, false, true, false},
      {"delta_bias only, softplus off", 2, l, 5, 3, false, false, true, false, false, 0.6, 1.2},
      {"none optional, softplus off, last state", 2, l, 5, 3, false, false, false, false, true, 0.05, 0.5},
      {"large positive delta (softplus, dt 25..40)", 1, l_large, 4, 3, true, true, false, true, true, 25, 40},
      {"large negative delta (softplus, dt ~ e^-30)", 1, l_large, 4, 3, true, true, false, true, true, -40, -25},
      {"large dt without softplus", 1, l_large, 4, 3, true, false, false, false, true, 5, 15},
      {"negative dt without softplus (growing state)", 1, l_growing, 3, 2, true, false, false, false, true, -1.0, -0.3},
  };
}

// The names of scan_inputs' tensors, in order.
inline constexpr const char* kScanInputNames[] = {"u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state"};

// u, delta, A, B, C, D, z, delta_bias, initial_state as float64 on the CPU (optional ones undefined
// when off), drawn from `g` in that order.
inline std::vector<Tensor> scan_inputs(const ScanCase& c, Generator& g) {
  auto rn = [&](const Shape& s) { return randn(s, DType::f64, &g); };
  auto un = [&](const Shape& s, double lo, double hi) { return rand(s, DType::f64, &g, lo, hi); };
  const Shape bld{c.b, c.l, c.d};
  return {rn(bld),
          c.delta_lo == c.delta_hi ? rn(bld) : un(bld, c.delta_lo, c.delta_hi),
          un({c.d, c.n}, c.A_lo, c.A_hi),
          rn({c.b, c.l, c.n}),
          rn({c.b, c.l, c.n}),
          c.D ? rn({c.d}) : Tensor(),
          c.z ? rn(bld) : Tensor(),
          c.bias ? un({c.d}, -1.0, 1.0) : Tensor(),
          c.h0 ? rn({c.b, c.d, c.n}) : Tensor()};
}

// The scan with z, B and C read in place, as the Mamba layer passes them: z as the second half of a
// (b, l, 2d + 3) tensor (in_proj's output, plus 3 columns so that no stride is a power of two), B and C as
// the columns after 5 others of a (b, l, 5 + 2n) one (x_proj's). Against the same values as contiguous
// tensors, on `dev` in `dt`: y, the last state and every gradient bit-identical (the kernels read the same
// numbers in the same order) and the wide tensors' other columns without gradient.
inline void check_scan_reads_views_in_place(const ScanCase& c, DType dt, Device dev) {
  INFO(c.label << ", " << dtype_name(dt) << " on " << (dev.is_cuda() ? "cuda" : "cpu"));
  Generator g(21);
  const std::vector<Tensor> in = scan_inputs(c, g);
  const int64_t d = c.d, n = c.n, r = 5;
  Tensor zw = randn({c.b, c.l, 2 * d + 3}, DType::f64, &g), bcw = randn({c.b, c.l, r + 2 * n}, DType::f64, &g);
  if (c.z) narrow(zw, 2, d + 3, d).copy_(in[6]);
  narrow(bcw, 2, r, n).copy_(in[3]);
  narrow(bcw, 2, r + n, n).copy_(in[4]);
  auto leaf = [&](const Tensor& t) { return t.defined() ? t.to(dt).to(dev).detach().requires_grad_() : Tensor(); };
  std::vector<Tensor> dense, viewed;
  for (const Tensor& t : in) dense.push_back(leaf(t)), viewed.push_back(leaf(t));
  Tensor zwl = leaf(zw), bcwl = leaf(bcw);
  viewed[3] = narrow(bcwl, 2, r, n), viewed[4] = narrow(bcwl, 2, r + n, n);
  if (c.z) viewed[6] = narrow(zwl, 2, d + 3, d);
  REQUIRE(!viewed[3].is_contiguous());
  auto run = [&](const std::vector<Tensor>& x) {
    return selective_scan(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], c.softplus, true, x[8]);
  };
  const Tensor dy = randn({c.b, c.l, d}, dt, &g).to(dev), dl = randn({c.b, d, n}, dt, &g).to(dev);
  auto backward = [&](const ScanResult& s) { add(sum(mul(s.y, dy)), sum(mul(s.last_state, dl))).backward(); };
  const ScanResult want = run(dense), got = run(viewed);
  backward(want);
  backward(got);
  auto bits = [](const Tensor& t) {
    const Tensor h = contiguous(t.detach().to(kCPU).to(DType::f64));
    return h.to_vector<double>();
  };
  CHECK(bits(got.y) == bits(want.y));
  CHECK(bits(got.last_state) == bits(want.last_state));
  for (size_t i : {0, 1, 2, 5, 7, 8}) {
    if (!in[i].defined()) continue;
    INFO("gradient of " << kScanInputNames[i]);
    CHECK(bits(viewed[i].grad()) == bits(dense[i].grad()));
  }
  auto zeros_like_cols = [&](const Tensor& t) { return std::vector<double>((size_t)t.numel(), 0.0); };
  CHECK(bits(narrow(bcwl.grad(), 2, r, n)) == bits(dense[3].grad()));
  CHECK(bits(narrow(bcwl.grad(), 2, r + n, n)) == bits(dense[4].grad()));
  CHECK(bits(narrow(bcwl.grad(), 2, 0, r)) == zeros_like_cols(narrow(bcwl, 2, 0, r)));
  if (c.z) {
    CHECK(bits(narrow(zwl.grad(), 2, d + 3, d)) == bits(dense[6].grad()));
    CHECK(bits(narrow(zwl.grad(), 2, 0, d + 3)) == zeros_like_cols(narrow(zwl, 2, 0, d + 3)));
  }
}

// The mixer's conv (silu) then scan, for the tests of carried states: the names of
// conv_scan_inputs' tensors, in order.
inline constexpr const char* kConvScanInputNames[] = {
    "x", "weight", "bias", "conv initial_state", "delta", "A", "B", "C", "D", "z", "delta_bias", "scan initial_state"};

// x, weight, bias, conv initial_state (kernel k), delta, A, B, C, D, z, delta_bias, scan initial_state
// as float64 on the CPU, drawn from `g` in that order.
inline std::vector<Tensor> conv_scan_inputs(int64_t b, int64_t l, int64_t d, int64_t n, int64_t k, Generator& g) {
  auto rn = [&](const Shape& s) { return randn(s, DType::f64, &g); };
  return {rn({b, l, d}),
          rn({d, k}),
          rn({d}),
          rn({b, d, k - 1}),
          rn({b, l, d}),
          rand({d, n}, DType::f64, &g, -2.0, -0.2),
          rn({b, l, n}),
          rn({b, l, n}),
          rn({d}),
          rn({b, l, d}),
          rand({d}, DType::f64, &g, -1, 1),
          rn({b, d, n})};
}

// Runs `v` (conv_scan_inputs' layout) in pieces of the given lengths along time, each piece starting
// from the previous piece's conv final_state and scan last_state (neither detached, so gradients flow
// back into earlier pieces). Returns the outputs joined along time, the conv's and the scan's last state.
inline std::vector<Tensor> conv_scan_in_pieces(const std::vector<Tensor>& v, const std::vector<int64_t>& pieces) {
  std::vector<Tensor> ys;
  Tensor cs = v[3], h = v[11];
  int64_t t0 = 0;
  for (int64_t len : pieces) {
    auto cut = [&](const Tensor& t) { return narrow(t, 1, t0, len); };
    ConvResult cr = causal_conv1d_with_state(cut(v[0]), v[1], v[2], true, cs);
    ScanResult sr = selective_scan(cr.y, cut(v[4]), v[5], cut(v[6]), cut(v[7]), v[8], cut(v[9]), v[10], true, true, h);
    ys.push_back(sr.y);
    cs = cr.final_state, h = sr.last_state;
    t0 += len;
  }
  return {cat(ys, 1), cs, h};
}

}  // namespace mg::test
