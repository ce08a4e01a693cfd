// rms_norm(x, weight) = x * rsqrt(mean(x^2, -1) + eps) * weight, fused: the forward saves one rstd
// per row; the vjp is  dx = rstd * (g*w - xhat * mean(g*w*xhat)),  dw = sum_rows(g * xhat),
// with xhat = x * rstd. rms_norm_reference composes the same from primitives (the test oracle).
// On CUDA both run in cuda/rms_norm.cu (one block per row; dw in fixed row chunks: deterministic).
#include <cmath>

#include "ops/gradcheck.h"
#include "autograd/node.h"
#include "autograd/observer.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "ops/cpu/loops.h"
#include "ops/cpu/vec.h"
#include "ops/ops.h"

namespace mg {

namespace {
void check_rms(const char* op, const Tensor& x, const Tensor& w, double eps) {
  MG_CHECK(x.defined() && w.defined(), "[{}] got an undefined tensor", op);
  // (A model's config asks more, norm_eps > 0; the op takes what PyTorch's does, eps = 0 included.)
  MG_CHECK(std::isfinite(eps) && eps >= 0, "[{}] eps must be finite and >= 0, got {}", op, eps);
  MG_CHECK(is_floating(x.dtype()) && x.dtype() == w.dtype(),
           "[{}] x and weight must share a floating dtype, got {} and {}", op, x.dtype(), w.dtype());
  MG_CHECK(x.device() == w.device(), "[{}] x is on {} but weight on {}", op, x.device(), w.device());
  MG_CHECK(x.dim() >= 1 && w.dim() == 1 && w.size(0) == x.size(-1),
           "[{}] weight must be ({},) to match the last dim of x {}, got {}", op, x.dim() ? x.size(-1) : 0, x.shape(),
           w.shape());
}

// sum over i < n of term(i), in double: eight interleaved partial sums (term i goes to lane i % 8), added by
// vec.h's hsum (a fixed tree) at the end. A row's sum has the same bits however the rows are split across
// threads, and the eight sums are independent chains, which the compiler vectorises; one running sum
// would wait for each add in turn (about 3 cycles an element).
template <class Term>
inline double row_sum(int64_t n, Term&& term) {
  cpu::VecN<double, 8> s = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) s[j] += term(i + j);
  for (int j = 0; i + j < n; ++j) s[j] += term(i + j);
  return cpu::hsum(s);
}
}  // namespace

Tensor rms_norm(const Tensor& x_in, const Tensor& w_in, double eps) {
  OpScope scope(OpId::rms_norm, {&x_in, &w_in});
  check_rms("rms_norm", x_in, w_in, eps);
  Tensor x = contiguous(x_in.detach()), w = contiguous(w_in.detach());
  const int64_t D = x.size(-1), rows = x.numel() / std::max<int64_t>(D, 1);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device(), "rms_norm");
  Tensor rstd = Tensor::empty({rows}, x.dtype(), x.device(), "rms_norm");
  if (x.device().is_cuda()) {
    cuda::rms_norm_forward(x.dtype(), x.raw_data(), w.raw_data(), out.raw_data(), rstd.raw_data(), rows, D, eps,
                           x.device().index);
  } else {
    MG_DISPATCH_FLOAT(x.dtype(), "rms_norm", [&] {
      const scalar_t *px = x.data<scalar_t>(), *pw = w.data<scalar_t>();
      scalar_t *po = out.data<scalar_t>(), *pr = rstd.data<scalar_t>();
      parallel_for(rows, D, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {
          const scalar_t* xr = px + r * D;
          const double ss = row_sum(D, [&](int64_t i) { return (double)xr[i] * xr[i]; });
          const scalar_t rs = (scalar_t)(1.0 / std::sqrt(ss / (double)D + eps));
          pr[r] = rs;
          for (int64_t i = 0; i < D; ++i) po[r * D + i] = xr[i] * rs * pw[i];
        }
      });
    });
  }
  record(OpId::rms_norm, {x_in, w_in}, {&out},
         [sx = SavedTensor(x, OpId::rms_norm), sw = SavedTensor(w, OpId::rms_norm),
          rstd = kept_for_backward(rstd, OpId::rms_norm)](const VjpArgs& g) {
           Tensor x = sx.get(), w = sw.get(), gc = contiguous(g[0]);
           const int64_t D = x.size(-1), rows = x.numel() / std::max<int64_t>(D, 1);
           Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device(), "rms_norm");
           Tensor dw = Tensor::empty({D}, x.dtype(), x.device(), "rms_norm");
           if (x.device().is_cuda()) {
             cuda::rms_norm_backward(x.dtype(), x.raw_data(), w.raw_data(), gc.raw_data(), rstd.raw_data(),
                                     g.needs_grad(0) ? dx.raw_data() : nullptr,
                                     g.needs_grad(1) ? dw.raw_data() : nullptr, rows, D, x.device().index);
             return std::vector<Tensor>{g.needs_grad(0) ? dx : Tensor(), g.needs_grad(1) ? dw : Tensor()};
           }
           MG_DISPATCH_FLOAT(x.dtype(), "rms_norm", [&] {
             const scalar_t *px = x.data<scalar_t>(), *pw = w.data<scalar_t>(), *pg = gc.data<scalar_t>(),
                            *pr = rstd.data<scalar_t>();
             scalar_t *pdx = dx.data<scalar_t>(), *pdw = dw.data<scalar_t>();
             // One pass over blocks of rows: each row's dx, and the block's partial sums of dw (in row order),
             // which are then added block by block. The blocks depend on the shape alone, so dw has the same
             // bits for any thread count.
             const bool want_dx = g.needs_grad(0), want_dw = g.needs_grad(1);
             const int64_t block = std::max<int64_t>(64, (rows + 255) / 256), blocks = (rows + block - 1) / block;
             std::vector<double> part(want_dw ? size_t(blocks * D) : 0, 0.0);
             parallel_for(blocks, block * D, [&](int64_t b, int64_t e) {
               for (int64_t k = b; k < e; ++k)
                 for (int64_t r = k * block; r < std::min(rows, (k + 1) * block); ++r) {
                   const scalar_t *xr = px + r * D, *gr = pg + r * D;
                   const scalar_t rs = pr[r];
                   if (want_dx) {
                     const double dot =  // sum(g * w * xhat)
                         row_sum(D, [&](int64_t i) { return (double)gr[i] * pw[i] * xr[i] * rs; });
                     const scalar_t c = (scalar_t)(dot / (double)D);
                     for (int64_t i = 0; i < D; ++i) pdx[r * D + i] = rs * (gr[i] * pw[i] - xr[i] * rs * c);
                   }
                   if (want_dw) {
                     double* acc = part.data() + k * D;
                     for (int64_t i = 0; i < D; ++i) acc[i] += (double)gr[i] * xr[i] * rs;
                   }
                 }
             });
             if (want_dw)
               for (int64_t i = 0; i < D; ++i) {
                 double sum = 0;
                 for (int64_t k = 0; k < blocks; ++k) sum += part[size_t(k * D + i)];
                 pdw[i] = (scalar_t)sum;
               }
           });
           return std::vector<Tensor>{g.needs_grad(0) ? dx : Tensor(), g.needs_grad(1) ? dw : Tensor()};
         });
  return out;
}

Tensor rms_norm_reference(const Tensor& x, const Tensor& w, double eps) {
  check_rms("rms_norm_reference", x, w, eps);
  return mul(mul(x, rsqrt(add_scalar(mean(mul(x, x), {-1}, true), eps))), w);
}

void register_rms_norm_gradchecks(GradcheckRegistry& r) {
  r.add({OpId::rms_norm, "(2, 3, 8), eps 1e-5",
         [](Generator& g, Device d) {
           return std::vector<Tensor>{gc_randn({2, 3, 8}, g, d), gc_randn({8}, g, d)};
         },
         [](const std::vector<Tensor>& in) { return rms_norm(in[0], in[1]); }});
  // Rows of small norm (mean(x^2) about 0.01) with eps 0.1: eps dominates rstd.
  r.add({OpId::rms_norm, "(3, 5) small rows, eps 0.1",
         [](Generator& g, Device d) {
           return std::vector<Tensor>{mul_scalar(gc_randn({3, 5}, g, d), 0.1).detach().requires_grad_(),
                                      gc_randn({5}, g, d)};
         },
         [](const std::vector<Tensor>& in) { return rms_norm(in[0], in[1], 0.1); }});
}

}  // namespace mg
