// The inputs both scan benchmarks (bench/scan_bench.cpp, bench/scan_bench_cuda.cpp) time the op on,
// and the median they report.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "bench/timing.h"
#include "ops/ops.h"

namespace mg::bench {

struct ScanInputs {
  Tensor u, delta, A, B, C, D, z, bias;
  std::vector<Tensor*> all() { return {&u, &delta, &A, &B, &C, &D, &z, &bias}; }
};

// Model-like float32 inputs: dt = softplus(delta + bias) mostly in [0.01, 0.2], A = -(0.5 .. 8).
inline ScanInputs make_scan_inputs(int64_t b, int64_t l, int64_t d, int64_t n, Generator& g) {
  ScanInputs x;
  x.u = randn({b, l, d}, DType::f32, &g);
  x.delta = randn({b, l, d}, DType::f32, &g, 0.0, 0.5);
  x.A = rand({d, n}, DType::f32, &g, -8.0, -0.5);
  x.B = randn({b, l, n}, DType::f32, &g);
  x.C = randn({b, l, n}, DType::f32, &g);
  x.D = randn({d}, DType::f32, &g);
  x.z = randn({b, l, d}, DType::f32, &g);
  x.bias = rand({d}, DType::f32, &g, -4.0, -2.0);
  return x;
}

}  // namespace mg::bench
