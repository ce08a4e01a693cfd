// causal_conv1d reads x in place when it is a view with channels contiguous (the x half of in_proj's
// output, split along channels): the same values and gradients as on a contiguous copy, and the
// gradient reaches the wider tensor the view came from.
#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include "ops/ops.h"
#include "tests/check.h"

using namespace mg;

TEST_CASE("causal_conv1d: x as a channel slice of a wider tensor equals x contiguous (values, every gradient)") {
  for (int64_t k : {4, 3}) {
    Generator g(8);
    const int64_t b = 3, l = 37, d = 21;
    Tensor xz0 = randn({b, l, 2 * d + 5}, DType::f32, &g), w0 = randn({d, k}, DType::f32, &g),
           b0 = randn({d}, DType::f32, &g), init0 = randn({b, d, k - 1}, DType::f32, &g),
           dy = randn({b, l, d}, DType::f32, &g);
    Tensor xz = xz0.clone().requires_grad_(), w1 = w0.clone().requires_grad_(), b1 = b0.clone().requires_grad_();
    Tensor view = narrow(xz, 2, d, d);  // channels d .. 2d - 1: rows 2d + 5 apart
    REQUIRE(!view.is_contiguous());
    Tensor y1 = causal_conv1d(view, w1, b1, true, init0);
    sum(mul(y1, dy)).backward();

    Tensor xc = contiguous(narrow(xz0, 2, d, d)).requires_grad_();
    Tensor w2 = w0.clone().requires_grad_(), b2 = b0.clone().requires_grad_();
    Tensor y2 = causal_conv1d(xc, w2, b2, true, init0);
    sum(mul(y2, dy)).backward();

    INFO("k " << k);
    auto same = [](const Tensor& a, const Tensor& c) {
      const auto va = a.to_vector<float>(), vc = c.to_vector<float>();
      return va.size() == vc.size() && std::memcmp(va.data(), vc.data(), va.size() * sizeof(float)) == 0;
    };
    CHECK(same(y1, y2));
    CHECK(same(w1.grad(), w2.grad()));
    CHECK(same(b1.grad(), b2.grad()));
    CHECK(same(contiguous(narrow(xz.grad(), 2, d, d)), xc.grad()));
    CHECK(max_abs_diff(narrow(xz.grad(), 2, 0, d).to(DType::f64).to_vector<double>(),
                       std::vector<double>(size_t(b * l * d), 0.0)) == 0.0);  // the other channels get none
    // And against the composed reference (independent of the kernel), on the view.
    CHECK(rel_err(y1, causal_conv1d_reference(view.detach(), w0, b0, true, init0)) < 1e-5);
  }
}
