// The selective scan's test cases and their random inputs, shared by the CPU tests
// (test_selective_scan.cpp) and the CUDA tests (test_cuda_scan.cpp), so that both draw the same
// inputs for a case and seed.
#pragma once
#include <vector>

#include "core/rng.h"
#include "ops/ops.h"

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

}  // namespace mg::test
