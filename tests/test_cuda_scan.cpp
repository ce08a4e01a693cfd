// selective_scan and causal_conv1d on CUDA against the CPU fused ops (which test_selective_scan.cpp and
// test_causal_conv1d.cpp check against their composed references and PyTorch): fresh random inputs
// over the CPU tests' edge cases, float64 tight and float32 at docs/design.md#tolerances, every output and
// every gradient; bit-identical gradients over repeated runs; the memory rule; device errors. The same
// with initial states (and the conv's final state), and a sequence run in pieces on CUDA that carry
// the states against one call.
// Every case starts with MG_REQUIRE_CUDA(): without a GPU it is reported as skipped.
//
// The CUDA backward is called through the output's grad_fn (Node::apply) with explicit output
// gradients, so that these tests exercise the scan kernels alone, not the engine's gradient
// accumulation on the device (covered by the other CUDA tests).
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "cuda/runtime.h"
#include "cuda/scan_kernels.h"
#include "ops/ops.h"
#include "tests/check.h"
#include "tests/devices.h"
#include "tests/scan_cases.h"

using namespace mg;

namespace {

using test::kScanInputNames;
using test::scan_inputs;
using test::with_h0;
using ScanCfg = test::ScanCase;

// Outputs and gradients, moved to the CPU as float64 (undefined where absent).
struct ScanRun {
  Tensor y, last;
  std::vector<Tensor> grads;
};

Tensor host64(const Tensor& t) { return t.defined() ? t.detach().to(kCPU).to(DType::f64) : Tensor(); }

// The fused op on `dev` in `dt`; leaves require grad where `wants[i]`. The backward gets dy (and
// dlast when the last state is returned) through the node's vjp.
ScanRun run_scan_on(const ScanCfg& c, const std::vector<Tensor>& in, const Tensor& dy, const Tensor& dlast, Device dev,
                    DType dt, const std::vector<bool>& wants = {}) {
  std::vector<Tensor> x;
  for (size_t i = 0; i < in.size(); ++i) {
    if (!in[i].defined()) {
      x.push_back(Tensor());
      continue;
    }
    Tensor t = in[i].to(dt).to(dev).detach();
    if (wants.empty() || wants[i]) t.requires_grad_();
    x.push_back(t);
  }
  ScanResult r = selective_scan(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], c.softplus, c.last, x[8]);
  REQUIRE(r.y.device() == dev);
  ScanRun out{host64(r.y), host64(r.last_state), {}};
  std::vector<Tensor> gouts{dy.to(dt).to(dev)};
  if (c.last) gouts.push_back(dlast.to(dt).to(dev));
  REQUIRE(r.y.grad_fn() != nullptr);
  std::vector<Tensor> g = r.y.grad_fn()->apply(gouts);
  REQUIRE(g.size() == in.size());
  for (auto& t : g) {
    if (t.defined()) CHECK(t.device() == dev);
    out.grads.push_back(host64(t));
  }
  return out;
}

// CUDA in `dt` against the CPU fused op in float64 on the same inputs.
void compare_scan(const ScanCfg& c, DType dt, uint64_t seed = 42) {
  // float64 to rounding; float32 within docs/design.md#tolerances: forward under 1e-5, gradients under
  // 1e-4, delta (and delta_bias) under 5e-4.
  const bool f64 = dt == DType::f64;
  const double tol_y = f64 ? 1e-11 : 1e-5, tol_grad = f64 ? 1e-10 : 1e-4, tol_ddelta = f64 ? 1e-10 : 5e-4;
  Generator g(seed);
  std::vector<Tensor> in = scan_inputs(c, g);
  Tensor dy = randn({c.b, c.l, c.d}, DType::f64, &g), dlast = randn({c.b, c.d, c.n}, DType::f64, &g);
  ScanRun want = run_scan_on(c, in, dy, dlast, kCPU, DType::f64);
  ScanRun got = run_scan_on(c, in, dy, dlast, kCUDA, dt);
  INFO(c.label << " (b " << c.b << ", l " << c.l << ", d " << c.d << ", n " << c.n << ") in " << dtype_name(dt));
  const double ey = rel_err(got.y, want.y);
  INFO("y rel err " << ey);
  CHECK(ey < tol_y);
  if (c.last) {
    const double el = rel_err(got.last, want.last);
    INFO("last_state rel err " << el);
    CHECK(el < tol_y);
  }
  for (size_t i = 0; i < in.size(); ++i) {
    if (!in[i].defined()) continue;
    REQUIRE(got.grads[i].defined());
    const double e = rel_err(got.grads[i], want.grads[i]);
    const double tol = (i == 1 || i == 7) ? tol_ddelta : tol_grad;
    INFO("gradient of " << std::string(kScanInputNames[i]) << " rel err " << e);
    if (!(e < tol)) check_close(got.grads[i], want.grads[i], 0.0, tol, kScanInputNames[i]);  // first mismatches
    CHECK(e < tol);
  }
}

const int64_t K = cuda::kScanChunkCuda;

// The lengths around the CUDA chunk and the widths around the channel groups, then the shared cases of
// the optional inputs and delta's ranges (tests/scan_cases.h).
std::vector<ScanCfg> edge_cases() {
  std::vector<ScanCfg> v = {
      {"l 1", 2, 1, 3, 4, true, true, true, true, true},
      {"l 1, n 1, d 1, no optional inputs, no softplus", 1, 1, 1, 1, false, false, false, false, false, 0.1, 0.9},
      {"l below one chunk", 2, 5, 3, 4, true, true, true, true, true},
      {"l exactly two chunks", 1, 2 * K, 4, 3, true, true, true, true, true},
      {"l not a multiple of the chunk, d 33 (two channel groups)", 2, K + 7, 33, 2, true, true, true, true, true},
      {"l three chunks and a bit, last state", 1, 3 * K + 5, 2, 3, false, false, true, true, true},
      {"n 16, d 17 (odd)", 2, 9, 17, 16, true, true, true, true, true},
      {"n 16, several chunks, d 70", 2, 5 * K + 11, 70, 16, true, true, true, true, true},
      {"n 64", 1, 2 * K + 3, 3, 64, true, false, true, true, true},
  };
  for (const ScanCfg& c : test::option_cases(70, 80, 20)) v.push_back(c);
  return v;
}
const std::vector<ScanCfg> kEdgeCases = edge_cases();

const ScanCfg kInitialStateCases[] = {
    with_h0({"initial state, l 1", 2, 1, 3, 4, true, true, true, true, true}),
    with_h0({"initial state, l 1, n 1, d 1, nothing optional, no softplus, no last state", 1, 1, 1, 1, false, false,
             false, false, false, 0.1, 0.9}),
    with_h0({"initial state, l below one chunk", 2, 5, 3, 4, true, true, true, true, true}),
    with_h0({"initial state, l exactly two chunks, nothing optional", 1, 2 * K, 4, 3, false, false, false, false, true,
             0.05, 0.5}),
    with_h0({"initial state, l not a multiple of the chunk, d 33", 2, K + 7, 33, 2, true, true, true, true, true}),
    with_h0({"initial state, n 16, several chunks, d 70", 2, 5 * K + 11, 70, 16, true, true, true, true, true}),
    with_h0({"initial state, z only, no last state", 2, 70, 5, 3, false, true, false, true, false}),
    with_h0({"initial state, D and delta_bias, softplus off", 2, 70, 5, 3, true, false, true, false, true, 0.6, 1.2}),
};

}  // namespace

TEST_CASE("cuda selective_scan: over the edge cases float64 equals the CPU op, float32 within the design tolerances") {
  MG_REQUIRE_CUDA();
  for (DType t : {DType::f64, DType::f32})
    for (const ScanCfg& c : kEdgeCases) compare_scan(c, t);
}

TEST_CASE("cuda selective_scan: float32 parity at (b=2, l=1000, d=64, n=16) and (b=1, l=2048, d=40, n=16)") {
  MG_REQUIRE_CUDA();
  compare_scan({"model-like", 2, 1000, 64, 16, true, true, true, true, true}, DType::f32);
  compare_scan({"l 2048", 1, 2048, 40, 16, true, true, true, true, true}, DType::f32, 7);
}

TEST_CASE("cuda selective_scan: only some inputs need a gradient, and the forward without grad") {
  MG_REQUIRE_CUDA();
  const ScanCfg c{"u and B only", 2, 2 * K + 9, 37, 5, true, true, true, true, true};
  Generator g(9);
  std::vector<Tensor> in = scan_inputs(c, g);
  Tensor dy = randn({c.b, c.l, c.d}, DType::f64, &g), dlast = randn({c.b, c.d, c.n}, DType::f64, &g);
  const std::vector<bool> wants{true, false, false, true, false, false, false, false, false};
  ScanRun want = run_scan_on(c, in, dy, dlast, kCPU, DType::f64);
  ScanRun got = run_scan_on(c, in, dy, dlast, kCUDA, DType::f64, wants);
  for (size_t i = 0; i < in.size(); ++i) {
    INFO("input " << kScanInputNames[i]);
    CHECK(got.grads[i].defined() == (bool)wants[i]);
    if (wants[i]) CHECK(rel_err(got.grads[i], want.grads[i]) < 1e-10);
  }
  // No input requires grad: no chunk states are written, the outputs are the same.
  std::vector<Tensor> x;
  for (auto& t : in) x.push_back(t.defined() ? t.to(kCUDA) : Tensor());
  ScanResult r = selective_scan(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], c.softplus, true, x[8]);
  CHECK(!r.y.requires_grad());
  CHECK(rel_err(host64(r.y), want.y) < 1e-11);
  CHECK(rel_err(host64(r.last_state), want.last) < 1e-11);
}

TEST_CASE("cuda selective_scan: z, B and C as narrows of wider tensors are read in place (values, every gradient)") {
  MG_REQUIRE_CUDA();
  for (DType dt : {DType::f32, DType::f64}) {
    test::check_scan_reads_views_in_place({"b 2, l 300", 2, 300, 40, 16, true, true, true, true}, dt, kCUDA);
    test::check_scan_reads_views_in_place(with_h0({"l 1, h0", 3, 1, 5, 3, true, true, true, true}), dt, kCUDA);
  }
}

TEST_CASE("cuda selective_scan: gradients are bit-identical across runs (deterministic reductions)") {
  MG_REQUIRE_CUDA();
  const ScanCfg c = with_h0({"", 3, 4 * K + 17, 100, 16, true, true, true, true, true});  // dh0 included
  Generator g(3);
  std::vector<Tensor> in = scan_inputs(c, g);
  Tensor dy = randn({c.b, c.l, c.d}, DType::f64, &g), dlast = randn({c.b, c.d, c.n}, DType::f64, &g);
  std::vector<std::vector<std::vector<float>>> runs;
  for (int rep = 0; rep < 3; ++rep) {
    ScanRun r = run_scan_on(c, in, dy, dlast, kCUDA, DType::f32);
    std::vector<std::vector<float>> got{r.y.to(DType::f32).to_vector<float>(),
                                        r.last.to(DType::f32).to_vector<float>()};
    for (auto& t : r.grads) got.push_back(t.to(DType::f32).to_vector<float>());
    runs.push_back(got);
  }
  for (size_t k = 1; k < runs.size(); ++k)
    for (size_t i = 0; i < runs[0].size(); ++i) {
      INFO("run " << k << ", tensor " << i);
      REQUIRE(runs[0][i].size() == runs[k][i].size());
      CHECK(std::memcmp(runs[0][i].data(), runs[k][i].data(), runs[0][i].size() * sizeof(float)) == 0);
    }
}

TEST_CASE("cuda selective_scan: memory rule: chunk-end states only, the backward's scratch under 1/8 of all states") {
  MG_REQUIRE_CUDA();
  {
    Tensor probe = Tensor::empty({1024}, DType::f32, kCUDA);
    if (cuda::memory_stats(0).in_use == 0) {
      std::printf("SKIPPED: this build's CUDA allocator keeps no memory counters\n");
      return;
    }
  }
  const ScanCfg c{"", 2, 1024, 64, 16, true, true, true, true, false};
  Generator g(5);
  std::vector<Tensor> in = scan_inputs(c, g);
  std::vector<Tensor> x;
  for (auto& t : in) x.push_back(t.defined() ? t.to(DType::f32).to(kCUDA).detach().requires_grad_() : Tensor());
  Tensor dy = randn({c.b, c.l, c.d}, DType::f32, &g).to(kCUDA);
  const size_t all_states = (size_t)(c.b * c.l * c.d * c.n) * sizeof(float);
  const size_t y_bytes = (size_t)(c.b * c.l * c.d) * sizeof(float);
  cuda::synchronize(0);
  const size_t before = cuda::memory_stats(0).in_use;
  ScanResult r = selective_scan(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], c.softplus, false);
  const size_t saved = cuda::memory_stats(0).in_use - before - y_bytes;
  MESSAGE("saved for backward " << saved << " bytes; all states " << all_states);
  CHECK(saved <= all_states / 8);
  CHECK(saved >= all_states / (size_t)cuda::kScanChunkCuda);
  size_t grad_bytes = 0;
  for (auto& t : x)
    if (t.defined()) grad_bytes += t.nbytes();
  cuda::reset_peak_memory(0);
  const size_t before_bwd = cuda::memory_stats(0).in_use;
  std::vector<Tensor> grads = r.y.grad_fn()->apply({dy});
  cuda::synchronize(0);
  const size_t peak = cuda::memory_stats(0).peak - before_bwd;
  MESSAGE("backward peak above its start " << peak << " bytes; gradients " << grad_bytes);
  CHECK(peak >= grad_bytes);
  CHECK(saved + (peak - grad_bytes) <= all_states / 8);
}

TEST_CASE("cuda selective_scan: inputs on two devices are an error naming the op and the devices") {
  MG_REQUIRE_CUDA();
  Generator g(1);
  Tensor u = randn({1, 4, 3}, DType::f32, &g).to(kCUDA), A = rand({3, 2}, DType::f32, &g, -1, -0.5).to(kCUDA);
  Tensor B = randn({1, 4, 2}, DType::f32, &g);  // on the CPU
  try {
    selective_scan(u, u, A, B, B.to(kCUDA));
    FAIL("expected an error");
  } catch (const Error& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find("[selective_scan]") != std::string::npos);
    CHECK(msg.find("cpu") != std::string::npos);
    CHECK(msg.find("cuda:0") != std::string::npos);
  }
}

// ---- causal_conv1d ----

namespace {

struct ConvRun {
  Tensor y;
  std::vector<Tensor> grads;  // dx, dweight, dbias
};

ConvRun run_conv_on(const std::vector<Tensor>& in, const Tensor& dy, bool silu, Device dev, DType dt) {
  std::vector<Tensor> x;
  for (auto& t : in) x.push_back(t.defined() ? t.to(dt).to(dev).detach().requires_grad_() : Tensor());
  Tensor y = causal_conv1d(x[0], x[1], x[2], silu);
  REQUIRE(y.device() == dev);
  REQUIRE(y.grad_fn() != nullptr);
  std::vector<Tensor> g = y.grad_fn()->apply({dy.to(dt).to(dev)});
  ConvRun out{host64(y), {}};
  for (auto& t : g) out.grads.push_back(host64(t));
  return out;
}

struct ConvCfg {
  int64_t b, l, d, k;
  bool bias, silu;
};

const ConvCfg kConvCases[] = {{2, 7, 5, 4, true, true},   {2, 7, 5, 4, false, false}, {1, 4, 3, 1, true, false},
                              {1, 1, 3, 4, true, true},   {2, 3, 4, 5, false, true},  {1, 5, 70, 4, true, true},
                              {2, 9, 2, 2, true, false},  {2, 9, 2, 2, false, true},  {3, 700, 40, 4, true, true},
                              {2, 50, 33, 9, true, true}, {1, 300, 1, 1, true, true}};

}  // namespace

TEST_CASE("cuda causal_conv1d: equals the CPU op for k = 1, 2, 4, 5, 9 (float64 tight, float32)") {
  MG_REQUIRE_CUDA();
  const char* names[] = {"dx", "dweight", "dbias"};
  for (const ConvCfg& c : kConvCases) {
    Generator g(11);
    std::vector<Tensor> in{randn({c.b, c.l, c.d}, DType::f64, &g), randn({c.d, c.k}, DType::f64, &g),
                           c.bias ? randn({c.d}, DType::f64, &g) : Tensor()};
    Tensor dy = randn({c.b, c.l, c.d}, DType::f64, &g);
    ConvRun want = run_conv_on(in, dy, c.silu, kCPU, DType::f64);
    for (DType dt : {DType::f64, DType::f32}) {
      const double tol_y = dt == DType::f64 ? 1e-13 : 1e-5, tol_g = dt == DType::f64 ? 1e-12 : 1e-4;
      ConvRun got = run_conv_on(in, dy, c.silu, kCUDA, dt);
      INFO("b " << c.b << " l " << c.l << " d " << c.d << " k " << c.k << " bias " << c.bias << " silu " << c.silu
                << " " << dtype_name(dt));
      CHECK(rel_err(got.y, want.y) < tol_y);
      for (size_t i = 0; i < 3; ++i) {
        if (!in[i].defined()) continue;
        REQUIRE(got.grads[i].defined());
        const double e = rel_err(got.grads[i], want.grads[i]);
        INFO(names[i] << " rel err " << e);
        CHECK(e < tol_g);
      }
    }
  }
}

TEST_CASE("cuda causal_conv1d: dweight and dbias are bit-identical across runs") {
  MG_REQUIRE_CUDA();
  Generator g(4);
  std::vector<Tensor> in{randn({4, 600, 96}, DType::f64, &g), randn({96, 4}, DType::f64, &g),
                         randn({96}, DType::f64, &g)};
  Tensor dy = randn({4, 600, 96}, DType::f64, &g);
  ConvRun a = run_conv_on(in, dy, true, kCUDA, DType::f32), b = run_conv_on(in, dy, true, kCUDA, DType::f32);
  for (size_t i = 0; i < 3; ++i) {
    auto va = a.grads[i].to_vector<double>(), vb = b.grads[i].to_vector<double>();
    INFO("gradient " << i);
    REQUIRE(va.size() == vb.size());
    CHECK(std::memcmp(va.data(), vb.data(), va.size() * sizeof(double)) == 0);
  }
}

// ---- initial states ----

TEST_CASE(
    "cuda selective_scan: with an initial state, float64 equals the CPU op, float32 within the design tolerances") {
  MG_REQUIRE_CUDA();
  for (DType t : {DType::f64, DType::f32})
    for (const ScanCfg& c : kInitialStateCases) compare_scan(c, t);
}

TEST_CASE("cuda selective_scan: only the initial state needs a gradient") {
  MG_REQUIRE_CUDA();
  const ScanCfg c = with_h0({"initial state only", 2, 2 * K + 9, 37, 5, true, true, true, true, true});
  Generator g(10);
  std::vector<Tensor> in = scan_inputs(c, g);
  Tensor dy = randn({c.b, c.l, c.d}, DType::f64, &g), dlast = randn({c.b, c.d, c.n}, DType::f64, &g);
  const std::vector<bool> wants{false, false, false, false, false, false, false, false, true};
  ScanRun want = run_scan_on(c, in, dy, dlast, kCPU, DType::f64);
  ScanRun got = run_scan_on(c, in, dy, dlast, kCUDA, DType::f64, wants);
  for (size_t i = 0; i < in.size(); ++i) {
    INFO("input " << std::string(kScanInputNames[i]));
    CHECK(got.grads[i].defined() == (bool)wants[i]);
  }
  CHECK(rel_err(got.grads[8], want.grads[8]) < 1e-10);
}

TEST_CASE("cuda selective_scan and causal_conv1d: pieces that carry both states equal one call on the CPU") {
  MG_REQUIRE_CUDA();
  // conv (silu) then scan, as in the mixer; on CUDA in pieces (crossing the 64-step chunk, some shorter
  // than the conv state), on the CPU in one call; float64, every output and every gradient.
  const int64_t b = 2, l = K + 9, d = 35, n = 4, k = 4;
  const std::vector<int64_t> pieces{2, 1, K, 6};
  Generator g(12);
  auto rn = [&](const Shape& s) { return randn(s, DType::f64, &g); };
  const std::vector<Tensor> in = test::conv_scan_inputs(b, l, d, n, k, g);
  const auto& names = test::kConvScanInputNames;
  Tensor dy = rn({b, l, d}), dconv = rn({b, d, k - 1}), dlast = rn({b, d, n});
  auto run = [&](Device dev, const std::vector<int64_t>& ps) {
    std::vector<Tensor> v;
    for (auto& t : in) v.push_back(t.to(dev).detach().requires_grad_());
    std::vector<Tensor> out = test::conv_scan_in_pieces(v, ps);
    add(add(sum(mul(out[0], dy.to(dev))), sum(mul(out[1], dconv.to(dev)))), sum(mul(out[2], dlast.to(dev)))).backward();
    for (auto& t : v) out.push_back(t.grad());
    for (auto& t : out) {
      CHECK(t.device() == dev);
      t = host64(t);
    }
    return out;
  };
  std::vector<Tensor> want = run(kCPU, {l}), got = run(kCUDA, pieces);
  for (size_t i = 0; i < want.size(); ++i) {
    const std::string what = i < 3 ? "output " + std::to_string(i) : std::string("gradient of ") + names[i - 3];
    INFO(what);
    REQUIRE(got[i].shape() == want[i].shape());
    CHECK(rel_err(got[i], want[i]) < 1e-10);
  }
}

TEST_CASE("cuda causal_conv1d: with an initial state equals the CPU op for k = 1, 2, 4, 5, 9, l < k - 1") {
  MG_REQUIRE_CUDA();
  struct Cfg {
    int64_t b, l, d, k;
    bool bias, silu;
  };
  const Cfg cfgs[] = {{2, 7, 5, 4, true, true},   {1, 4, 3, 1, true, false},  {1, 1, 3, 4, true, true},
                      {2, 3, 4, 5, false, true},  {2, 9, 2, 2, true, false},  {3, 700, 40, 4, true, true},
                      {2, 50, 33, 9, true, true}, {2, 2, 33, 4, false, false}};
  const char* names[] = {"dx", "dweight", "dbias", "dinitial_state"};
  for (const Cfg& c : cfgs) {
    Generator g(11);
    std::vector<Tensor> in{randn({c.b, c.l, c.d}, DType::f64, &g), randn({c.d, c.k}, DType::f64, &g),
                           c.bias ? randn({c.d}, DType::f64, &g) : Tensor(),
                           randn({c.b, c.d, c.k - 1}, DType::f64, &g)};
    Tensor dy = randn({c.b, c.l, c.d}, DType::f64, &g);
    auto run = [&](Device dev, DType dt) {
      std::vector<Tensor> x;
      for (auto& t : in) x.push_back(t.defined() ? t.to(dt).to(dev).detach().requires_grad_() : Tensor());
      Tensor y = causal_conv1d(x[0], x[1], x[2], c.silu, x[3]);
      REQUIRE(y.grad_fn() != nullptr);
      std::vector<Tensor> g = y.grad_fn()->apply({dy.to(dt).to(dev)});  // the conv's own vjp
      REQUIRE(g.size() == 4);
      ConvRun out{host64(y), {}};
      for (auto& t : g) out.grads.push_back(host64(t));
      return out;
    };
    ConvRun want = run(kCPU, DType::f64);
    for (DType dt : {DType::f64, DType::f32}) {
      const double tol_y = dt == DType::f64 ? 1e-13 : 1e-5, tol_g = dt == DType::f64 ? 1e-12 : 1e-4;
      ConvRun got = run(kCUDA, dt);
      INFO("b " << c.b << " l " << c.l << " d " << c.d << " k " << c.k << " bias " << c.bias << " silu " << c.silu
                << " " << dtype_name(dt));
      CHECK(rel_err(got.y, want.y) < tol_y);
      for (size_t i = 0; i < 4; ++i) {
        if (!in[i].defined() || in[i].numel() == 0) continue;
        REQUIRE(got.grads[i].defined());
        const double e = rel_err(got.grads[i], want.grads[i]);
        INFO(std::string(names[i]) << " rel err " << e);
        CHECK(e < tol_g);
      }
    }
  }
}

TEST_CASE("cuda selective_scan and causal_conv1d: an initial state on another device is an error naming it") {
  MG_REQUIRE_CUDA();
  Generator g(1);
  Tensor u = randn({1, 4, 3}, DType::f32, &g).to(kCUDA), A = rand({3, 2}, DType::f32, &g, -1, -0.5).to(kCUDA);
  Tensor B = randn({1, 4, 2}, DType::f32, &g).to(kCUDA);
  CHECK_THROWS_WITH_AS(selective_scan(u, u, A, B, B, Tensor(), Tensor(), Tensor(), false, false, zeros({1, 3, 2})),
                       "[selective_scan] initial_state is on cpu but u is on cuda:0: all inputs must be on one device",
                       Error);
  CHECK_THROWS_WITH_AS(causal_conv1d(u, zeros({3, 4}).to(kCUDA), Tensor(), false, zeros({1, 3, 3})),
                       "[causal_conv1d] initial_state is on cpu but x is on cuda:0: all inputs must be on one device",
                       Error);
}
