// Mixed precision (ops/autocast.h): under an AutocastGuard, matmul and linear on float32 multiply bf16-rounded
// inputs with float32 sums, in forward and in their backward (wherever backward runs); float64 and every
// other op are unchanged; CUDA (cuBLAS bf16 GEMM, the emulator in CI) agrees with the CPU.
#include <doctest/doctest.h>

#include <utility>
#include <vector>

#include "autograd/grad_mode.h"
#include "core/bf16.h"
#include "ops/autocast.h"
#include "ops/cpu/gemm.h"
#include "ops/ops.h"
#include "tests/check.h"
#include "tests/devices.h"

using namespace mg;

namespace {

// t with every element rounded to bf16 (a new float32 leaf on the cpu).
Tensor rounded(const Tensor& t) {
  std::vector<float> v = t.to(kCPU).contiguous().to_vector<float>();
  for (float& x : v) x = round_bf16(x);
  return from_vector(v, t.shape());
}

Tensor f64(const Tensor& t) { return t.to(kCPU).to(DType::f64); }

}  // namespace

TEST_CASE("autocast: precision names, the guard nests and restores") {
  CHECK(autocast_precision() == Precision::f32);
  {
    AutocastGuard on;
    CHECK(autocast_precision() == Precision::bf16);
    {
      AutocastGuard off(Precision::f32);
      CHECK(autocast_precision() == Precision::f32);
    }
    CHECK(autocast_precision() == Precision::bf16);
  }
  CHECK(autocast_precision() == Precision::f32);
  CHECK(parse_precision("bf16") == Precision::bf16);
  CHECK(parse_precision("fp32") == Precision::f32);
  CHECK_FALSE(parse_precision("fp16").has_value());
  CHECK(precision_name(Precision::bf16) == "bf16");
}

TEST_CASE("autocast: matmul and linear multiply bf16-rounded inputs, summed in float32") {
  Generator g(5);
  Tensor a = randn({3, 40, 70}, DType::f32, &g), b = randn({70, 30}, DType::f32, &g);
  Tensor w = randn({30, 70}, DType::f32, &g), bias = randn({30}, DType::f32, &g);
  Tensor mm, lin;
  {
    AutocastGuard on;
    mm = matmul(a, b);
    lin = linear(a, w, bias);
  }
  CHECK(mm.dtype() == DType::f32);
  // The reference: the rounded inputs multiplied in float64.
  Tensor want_mm = matmul(f64(rounded(a)), f64(rounded(b)));
  Tensor want_lin = add(matmul(f64(rounded(a)), transpose(f64(rounded(w)), 0, 1)), f64(bias));
  CHECK(check_close(f64(mm), want_mm, 1e-5, 1e-5, "matmul under autocast"));
  CHECK(check_close(f64(lin), want_lin, 1e-5, 1e-5, "linear under autocast"));
  // ... and far from the float32 product: the rounding really happened.
  CHECK(rel_err(f64(mm), matmul(f64(a), f64(b))) > 1e-3);
  // Outside the guard, float32 again.
  CHECK(rel_err(f64(matmul(a, b)), matmul(f64(a), f64(b))) < 1e-6);
}

TEST_CASE("autocast: float64 is never rounded") {
  Generator g(6);
  Tensor a = randn({20, 30}, DType::f64, &g), b = randn({30, 10}, DType::f64, &g);
  Tensor in, out = matmul(a, b);
  {
    AutocastGuard on;
    in = matmul(a, b);
  }
  CHECK(rel_err(in, out) == 0.0);
}

TEST_CASE("autocast: backward runs in the forward's precision, wherever backward is called") {
  Generator g(7);
  Tensor a = randn({16, 50}, DType::f32, &g), b = randn({50, 24}, DType::f32, &g);
  Tensor r = randn({16, 24}, DType::f32, &g);  // the output gradient, not bf16-representable
  // A bf16 forward, backward outside the guard: dA = bf16(r) bf16(b)^T, dB = bf16(a)^T bf16(r).
  Tensor ab = a.detach().requires_grad_(), bb = b.detach().requires_grad_();
  Tensor out;
  {
    AutocastGuard on;
    out = matmul(ab, bb);
  }
  out.backward(r);
  CHECK(check_close(f64(ab.grad()), matmul(f64(rounded(r)), transpose(f64(rounded(b)), 0, 1)), 1e-5, 1e-5, "dA"));
  CHECK(check_close(f64(bb.grad()), matmul(transpose(f64(rounded(a)), 0, 1), f64(rounded(r))), 1e-5, 1e-5, "dB"));
  // A float32 forward, backward inside a bf16 guard: still float32.
  Tensor af = a.detach().requires_grad_(), bf = b.detach().requires_grad_();
  Tensor out32 = matmul(af, bf);
  {
    AutocastGuard on;
    out32.backward(r);
  }
  CHECK(rel_err(f64(af.grad()), matmul(f64(r), transpose(f64(b), 0, 1))) < 1e-6);
  // linear: the same rule for its three gradients (the bias's is a float32 sum either way).
  Tensor x = a.detach().requires_grad_(), w = randn({24, 50}, DType::f32, &g).requires_grad_();
  Tensor bias = zeros({24}).requires_grad_();
  {
    AutocastGuard on;
    out = linear(x, w, bias);
  }
  out.backward(r);
  CHECK(check_close(f64(x.grad()), matmul(f64(rounded(r)), f64(rounded(w))), 1e-5, 1e-5, "linear dx"));
  CHECK(check_close(f64(w.grad()), matmul(transpose(f64(rounded(r)), 0, 1), f64(rounded(x))), 1e-5, 1e-5, "linear dw"));
  CHECK(check_close(f64(bias.grad()), sum(f64(r), {0}), 1e-5, 1e-5, "linear db"));
}

TEST_CASE("autocast: linear's output and gradients have the bits of the bf16 gemm on the unrounded operands") {
  // However linear organises its rounding (once per operand for narrow layers), each product must have
  // the bits of cpu::gemm_bf16 called on the float32 operands as they are (with this CPU's way).
  Generator g(9);
  // A narrow layer (dt_proj's shape) and a wider one; 37 rows (the packed gemm) and 3 (the small-M path).
  for (const auto& [in, rows] : {std::pair<int64_t, int64_t>{16, 37}, {40, 37}, {16, 3}, {40, 3}}) {
    const int64_t outf = 24;
    Tensor x = randn({rows, in}, DType::f32, &g).requires_grad_(),
           w = randn({outf, in}, DType::f32, &g).requires_grad_();
    Tensor r = randn({rows, outf}, DType::f32, &g);
    Tensor out;
    {
      AutocastGuard on;
      out = linear(x, w);
    }
    out.backward(r);
    std::vector<float> want_out(rows * outf), want_dx(rows * in), want_dw(outf * in);
    const float *px = x.data<float>(), *pw = w.data<float>(), *pr = r.data<float>();
    cpu::gemm_bf16(false, true, rows, outf, in, px, in, pw, in, 0.0f, want_out.data(), outf);
    cpu::gemm_bf16(false, false, rows, in, outf, pr, outf, pw, in, 0.0f, want_dx.data(), in);
    cpu::gemm_bf16(true, false, outf, in, rows, pr, outf, px, in, 0.0f, want_dw.data(), in);
    const std::string what = mg::format("linear with {} input features, {} rows", in, rows);
    CHECK_MESSAGE(out.to_vector<float>() == want_out, what);
    CHECK_MESSAGE(x.grad().to_vector<float>() == want_dx, (what + " dx"));
    CHECK_MESSAGE(w.grad().to_vector<float>() == want_dw, (what + " dw"));
    CHECK(rel_err(f64(out), matmul(f64(x), transpose(f64(w), 0, 1))) > 1e-4);  // rounded for real
  }
}

TEST_CASE("autocast on cuda: bf16 matmul and linear match the cpu's, values and gradients") {
  MG_REQUIRE_CUDA();
  Generator g(8);
  struct Case {
    Shape a, b;
    bool trans_a;
  };
  // Batched, broadcast, a batch of rows against a matrix, and a transposed (strided) operand.
  const Case cases[] = {{{2, 9, 33}, {2, 33, 17}, false},
                        {{3, 1, 7, 5}, {4, 5, 6}, false},
                        {{2, 31, 40}, {40, 12}, false},
                        {{33, 9}, {33, 20}, true}};
  for (const Case& c : cases) {
    Tensor a = randn(c.a, DType::f32, &g), b = randn(c.b, DType::f32, &g);
    Tensor ac = a.detach().requires_grad_(), bc = b.detach().requires_grad_();
    Tensor ag = a.to(kCUDA).requires_grad_(), bg = b.to(kCUDA).requires_grad_();
    Tensor oc, og;
    {
      AutocastGuard on;
      oc = matmul(c.trans_a ? transpose(ac, -1, -2) : ac, bc);
      og = matmul(c.trans_a ? transpose(ag, -1, -2) : ag, bg);
    }
    Tensor r = randn(oc.shape(), DType::f32, &g);
    oc.backward(r);
    og.backward(r.to(kCUDA));
    const std::string what = "matmul " + mg::format("{} @ {}", c.a, c.b);
    CHECK(check_close(og.to(kCPU), oc, 2e-5, 2e-4, what));
    CHECK(check_close(ag.grad().to(kCPU), ac.grad(), 2e-5, 2e-4, what + " dA"));
    CHECK(check_close(bg.grad().to(kCPU), bc.grad(), 2e-5, 2e-4, what + " dB"));
    CHECK(rel_err(og.to(kCPU), matmul(c.trans_a ? transpose(a, -1, -2) : a, b)) > 1e-4);  // rounded for real
  }
  Tensor x = randn({3, 11, 40}, DType::f32, &g), w = randn({24, 40}, DType::f32, &g),
         bias = randn({24}, DType::f32, &g);
  Tensor lc, lg;
  {
    AutocastGuard on;
    lc = linear(x, w, bias);
    lg = linear(x.to(kCUDA), w.to(kCUDA), bias.to(kCUDA));
  }
  CHECK(check_close(lg.to(kCPU), lc, 2e-5, 2e-4, "linear"));
}
