// causal_conv1d(x, weight, bias, apply_silu): depthwise over time (docs/design.md#causal-depthwise-conv),
//     pre[t, c] = bias[c] + sum_{j<k} weight[c, j] x[t-(k-1)+j, c]   (x = 0 at negative times),
//     y = silu(pre) when apply_silu, else pre.
// Fused forward and vjp; the forward saves only its inputs and the backward recomputes pre:
//     dpre = dy * silu'(pre),  dx[s, c] = sum_j weight[c, j] dpre[s+(k-1)-j, c],
//     dweight[c, j] = sum_{b,t} dpre[t, c] x[t-(k-1)+j, c],  dbias[c] = sum_{b,t} dpre[t, c].
// dweight and dbias are summed per fixed block of channels in (batch, time) order: deterministic.
// On CUDA the kernels are in cuda/causal_conv1d.cu (fixed-order partials: deterministic too).
// causal_conv1d_reference composes the same from primitives (the test oracle).
#include <cmath>

#include "ops/gradcheck.h"
#include "ops/input_checks.h"
#include "autograd/node.h"
#include "cuda/runtime.h"
#include "cuda/scan_kernels.h"
#include "ops/cpu/loops.h"
#include "ops/ops.h"

namespace mg {

namespace {

void check_conv(const char* op, const Tensor& x, const Tensor& w, const Tensor& bias) {
  MG_CHECK(x.defined() && w.defined(), "[{}] x and weight are required but one was undefined", op);
  MG_CHECK(is_floating(x.dtype()), "[{}] x must be float32 or float64, got {}", op, x.dtype());
  MG_CHECK(x.dim() == 3, "[{}] x must be (b, l, d), got {}", op, x.shape());
  const int64_t d = x.size(2);
  MG_CHECK(w.dim() == 2 && w.size(0) == d && w.size(1) >= 1,
           "[{}] weight must be ({}, k) with k >= 1 to match x {}, got {}", op, d, x.shape(), w.shape());
  MG_CHECK(!bias.defined() || bias.shape() == Shape{d}, "[{}] bias must be ({},) to match x {}, got {}", op, d,
           x.shape(), bias.shape());
  check_same_dtype_device(op, "x", x, {{"weight", &w}, {"bias", &bias}});
}

template <class T>
T sigmoid_of(T v) {
  return T(1) / (T(1) + std::exp(-v));
}

// pre-activation rows [lo, hi) of (b*l) into dst (rows of d); wt is the weight transposed to (k, d).
template <class T>
void conv_rows(const T* x, const T* wt, const T* bias, int64_t l, int64_t d, int64_t k, int64_t lo, int64_t hi,
               T* dst) {
  for (int64_t r = lo; r < hi; ++r) {
    const int64_t t = r % l;
    T* o = dst + r * d;
    for (int64_t c = 0; c < d; ++c) o[c] = bias ? bias[c] : T(0);
    for (int64_t j = 0; j < k; ++j) {
      const int64_t s = t - (k - 1) + j;
      if (s < 0) continue;
      const T *xs = x + (r - t + s) * d, *wj = wt + j * d;
#pragma omp simd
      for (int64_t c = 0; c < d; ++c) o[c] += wj[c] * xs[c];
    }
  }
}

template <class T>
std::vector<T> transpose_weight(const T* w, int64_t d, int64_t k) {
  std::vector<T> wt(k * d);
  for (int64_t c = 0; c < d; ++c)
    for (int64_t j = 0; j < k; ++j) wt[j * d + c] = w[c * k + j];
  return wt;
}

}  // namespace

Tensor causal_conv1d(const Tensor& x_in, const Tensor& w_in, const Tensor& bias_in, bool apply_silu) {
  check_conv("causal_conv1d", x_in, w_in, bias_in);
  Tensor x = contiguous(x_in.detach()), w = contiguous(w_in.detach());
  Tensor bias = bias_in.defined() ? contiguous(bias_in.detach()) : Tensor();
  const int64_t b = x.size(0), l = x.size(1), d = x.size(2), k = w.size(1);
  const Device dev = x.device();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), dev);  // (b, l, d)
  MG_DISPATCH_FLOAT(x.dtype(), "causal_conv1d", [&] {
    const scalar_t* pb = bias.defined() ? bias.data<scalar_t>() : nullptr;
    if (dev.is_cuda()) {
      cuda::causal_conv1d_forward(x.data<scalar_t>(), w.data<scalar_t>(), pb, b, l, d, k, apply_silu,
                                  out.data<scalar_t>(), dev.index);
      return;
    }
    std::vector<scalar_t> wt = transpose_weight(w.data<scalar_t>(), d, k);
    scalar_t* po = out.data<scalar_t>();
    parallel_for(b * l, d * k, [&](int64_t lo, int64_t hi) {
      conv_rows(x.data<scalar_t>(), wt.data(), pb, l, d, k, lo, hi, po);
      if (apply_silu)
        for (int64_t e = lo * d; e < hi * d; ++e) po[e] = po[e] * sigmoid_of(po[e]);
    });
  });
  constexpr OpId id = OpId::causal_conv1d;
  record(id, {x_in, w_in, bias_in}, {&out},
         [sx = SavedTensor(x, id), sw = SavedTensor(w, id), sb = SavedTensor(bias, id), apply_silu](const VjpArgs& g) {
           Tensor x = sx.get(), w = sw.get(), bias = sb.get(), gout = contiguous(g[0]);
           const int64_t b = x.size(0), l = x.size(1), d = x.size(2), k = w.size(1);
           const Device dev = x.device();
           Tensor dx = g.needs_grad(0) ? Tensor::empty(x.shape(), x.dtype(), dev) : Tensor();
           Tensor dw = g.needs_grad(1) ? Tensor::empty(w.shape(), x.dtype(), dev) : Tensor();
           Tensor db = bias.defined() && g.needs_grad(2) ? Tensor::empty(bias.shape(), x.dtype(), dev) : Tensor();
           MG_DISPATCH_FLOAT(x.dtype(), "causal_conv1d", [&] {
             using T = scalar_t;
             const T *px = x.data<T>(), *pb = bias.defined() ? bias.data<T>() : nullptr;
             if (dev.is_cuda()) {
               auto ptr = [](const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; };
               // Scratch: the gradient through silu (b, l, d), and the fixed-order partial sums of
               // dweight and dbias (row blocks, k + 1, d) in float64.
               Tensor dpre = apply_silu ? Tensor::empty(x.shape(), x.dtype(), dev) : Tensor();  // (b, l, d)
               Tensor partials = dw.defined() || db.defined()
                                     ? Tensor::empty({cuda::causal_conv1d_partials(b, l, d, k)}, DType::f64, dev)
                                     : Tensor();
               cuda::causal_conv1d_backward(px, w.data<T>(), pb, gout.data<T>(), b, l, d, k, apply_silu, ptr(dpre),
                                            ptr(dx), ptr(dw), ptr(db),
                                            partials.defined() ? partials.data<double>() : nullptr, dev.index);
               return;
             }
             std::vector<T> wt = transpose_weight(w.data<T>(), d, k);
             // dpre: the output gradient through silu, recomputing the pre-activation.
             Tensor dpre_t = gout;
             if (apply_silu) {
               dpre_t = Tensor::empty(x.shape(), x.dtype());  // (b, l, d)
               T *pd = dpre_t.data<T>();
               const T* pg = gout.data<T>();
               parallel_for(b * l, d * k, [&](int64_t lo, int64_t hi) {
                 conv_rows(px, wt.data(), pb, l, d, k, lo, hi, pd);
                 for (int64_t e = lo * d; e < hi * d; ++e) {
                   const T s = sigmoid_of(pd[e]);
                   pd[e] = pg[e] * s * (T(1) + pd[e] * (T(1) - s));
                 }
               });
             }
             const T* pd = dpre_t.data<T>();
             if (dx.defined()) {
               T* pdx = dx.data<T>();
               parallel_for(b * l, d * k, [&](int64_t lo, int64_t hi) {
                 for (int64_t r = lo; r < hi; ++r) {
                   const int64_t s = r % l;
                   T* o = pdx + r * d;
                   for (int64_t c = 0; c < d; ++c) o[c] = T(0);
                   for (int64_t j = 0; j < k; ++j) {
                     const int64_t t = s + (k - 1) - j;
                     if (t >= l) continue;
                     const T *gt = pd + (r - s + t) * d, *wj = wt.data() + j * d;
                     _Pragma("omp simd") for (int64_t c = 0; c < d; ++c) o[c] += wj[c] * gt[c];
                   }
                 }
               });
             }
             if (dw.defined() || db.defined()) {
               constexpr int64_t kBlock = 64;  // channels per task: a partition fixed by d alone
               T *pdw = dw.defined() ? dw.data<T>() : nullptr, *pdb = db.defined() ? db.data<T>() : nullptr;
               parallel_for((d + kBlock - 1) / kBlock, b * l * kBlock * k, [&](int64_t lo, int64_t hi) {
                 std::vector<double> acc((k + 1) * kBlock);
                 for (int64_t blk = lo; blk < hi; ++blk) {
                   const int64_t c0 = blk * kBlock, nc = std::min(kBlock, d - c0);
                   std::fill(acc.begin(), acc.end(), 0.0);
                   double* accb = acc.data() + k * kBlock;
                   for (int64_t r = 0; r < b * l; ++r) {
                     const int64_t t = r % l;
                     const T* gr = pd + r * d + c0;
                     for (int64_t c = 0; c < nc; ++c) accb[c] += gr[c];
                     for (int64_t j = 0; j < k; ++j) {
                       const int64_t s = t - (k - 1) + j;
                       if (s < 0) continue;
                       const T* xs = px + (r - t + s) * d + c0;
                       double* aj = acc.data() + j * kBlock;
                       for (int64_t c = 0; c < nc; ++c) aj[c] += (double)(gr[c] * xs[c]);
                     }
                   }
                   for (int64_t c = 0; c < nc; ++c) {
                     if (pdw)
                       for (int64_t j = 0; j < k; ++j) pdw[(c0 + c) * k + j] = (T)acc[j * kBlock + c];
                     if (pdb) pdb[c0 + c] = (T)accb[c];
                   }
                 }
               });
             }
           });
           return std::vector<Tensor>{dx, dw, db};
         });
  return out;
}

Tensor causal_conv1d_reference(const Tensor& x, const Tensor& w, const Tensor& bias, bool apply_silu) {
  check_conv("causal_conv1d_reference", x, w, bias);
  const int64_t b = x.size(0), l = x.size(1), d = x.size(2), k = w.size(1);
  // x with k-1 zero steps in front: xp[t + k-1] = x[t].
  Tensor xp = k > 1 ? cat({zeros({b, k - 1, d}, x.dtype(), x.device()), x}, 1) : x;  // (b, l+k-1, d)
  Tensor y;
  for (int64_t j = 0; j < k; ++j) {
    Tensor term = mul(narrow(xp, 1, j, l), reshape(narrow(w, 1, j, 1), {d}));  // x[t-(k-1)+j] * w[:, j]
    y = j ? add(y, term) : term;
  }
  if (bias.defined()) y = add(y, bias);
  return apply_silu ? silu(y) : y;
}

void register_causal_conv1d_gradchecks(GradcheckRegistry& r) {
  struct Cfg {
    const char* label;
    int64_t b, l, d, k;
    bool bias, silu;
  };
  const Cfg cfgs[] = {
      {"k 4, bias, silu", 2, 7, 5, 4, true, true},
      {"k 1, no bias", 1, 4, 3, 1, false, false},
      {"k 5 > l 3, bias", 2, 3, 4, 5, true, false},
  };
  for (const Cfg& c : cfgs)
    r.add({OpId::causal_conv1d, c.label,
           [c](Generator& g, Device dev) {
             return std::vector<Tensor>{gc_randn({c.b, c.l, c.d}, g, dev), gc_randn({c.d, c.k}, g, dev),
                                        c.bias ? gc_randn({c.d}, g, dev) : Tensor()};
           },
           [c](const std::vector<Tensor>& in) { return causal_conv1d(in[0], in[1], in[2], c.silu); }});
}

}  // namespace mg
