// causal_conv1d(x, weight, bias, apply_silu, initial_state): depthwise over time
// (docs/design.md#causal-depthwise-conv),
//     pre[t, c] = bias[c] + sum_{j<k} weight[c, j] x[t-(k-1)+j, c],   y = silu(pre) when apply_silu, else pre,
// where x at the negative times -(k-1) .. -1 is initial_state[:, c, 0 .. k-2] (the conv state of
// causal_conv1d_update, oldest first), or zero without one.
// Fused forward and vjp; the forward saves its inputs (and with silu its output) and the backward recomputes
// pre (on the CPU silu's sigmoid comes from the output as y / pre, a division instead of an exponential):
//     dpre = dy * silu'(pre),  dx[s, c] = sum_j weight[c, j] dpre[s+(k-1)-j, c],
//     dweight[c, j] = sum_{b,t} dpre[t, c] x[t-(k-1)+j, c],  dbias[c] = sum_{b,t} dpre[t, c],
//     dinitial_state[c, m] = sum_{j<=m} weight[c, j] dpre[m-j, c]   (terms with m-j >= l are 0).
// The CPU kernels are ops/cpu/conv1d.cpp (time in blocks of rows, each walked one lane vector of channels
// at a time; dweight and dbias summed per sequence, then over the sequences in order: deterministic). x may
// be a view with channels contiguous.
// causal_conv1d_with_state also returns the final state, the last k-1 inputs of [initial_state, x]
// along time as (b, d, k-1), composed from narrow/transpose/cat (so differentiable for free).
// On CUDA the kernels are in cuda/causal_conv1d.cu (fixed-order partials: deterministic too).
// causal_conv1d_reference composes the same from primitives (the test oracle).
#include <cmath>
#include <vector>

#include "ops/gradcheck.h"
#include "ops/input_checks.h"
#include "autograd/node.h"
#include "autograd/observer.h"
#include "cuda/runtime.h"
#include "cuda/scan_kernels.h"
#include "ops/cpu/conv1d.h"
#include "ops/cpu/loops.h"
#include "ops/ops.h"

namespace mg {

namespace {

void check_conv(const char* op, const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& init) {
  MG_CHECK(x.defined() && w.defined(), "[{}] x and weight are required but one was undefined", op);
  MG_CHECK(is_floating(x.dtype()), "[{}] x must be float32 or float64, got {}", op, x.dtype());
  MG_CHECK(x.dim() == 3, "[{}] x must be (b, l, d), got {}", op, x.shape());
  const int64_t d = x.size(2);
  MG_CHECK(w.dim() == 2 && w.size(0) == d && w.size(1) >= 1,
           "[{}] weight must be ({}, k) with k >= 1 to match x {}, got {}", op, d, x.shape(), w.shape());
  MG_CHECK(!bias.defined() || bias.shape() == Shape{d}, "[{}] bias must be ({},) to match x {}, got {}", op, d,
           x.shape(), bias.shape());
  const Shape sshape{x.size(0), d, w.size(1) - 1};
  MG_CHECK(!init.defined() || init.shape() == sshape,
           "[{}] initial_state must be {} (b, d, k - 1) to match x {} and weight {}, got {}", op, sshape, x.shape(),
           w.shape(), init.shape());
  check_same_dtype_device(op, "x", x, {{"weight", &w}, {"bias", &bias}, {"initial_state", &init}});
}

// The CPU kernels' arguments (ops/cpu/conv1d.h); x may have any row strides with channels contiguous.
template <class T>
cpu::Conv1dArgs<T> conv_args(const Tensor& x, const T* w, const T* bias, const T* init, int64_t k, bool silu) {
  return {x.data<T>(), x.stride(0), x.stride(1), w, bias, init, x.size(0), x.size(1), x.size(2), k, silu};
}

}  // namespace

Tensor causal_conv1d(const Tensor& x_in, const Tensor& w_in, const Tensor& bias_in, bool apply_silu,
                     const Tensor& init_in) {
  OpScope scope(OpId::causal_conv1d, {&x_in, &w_in, &bias_in, &init_in});
  check_conv("causal_conv1d", x_in, w_in, bias_in, init_in);
  // On the CPU x may be a view with channels contiguous (a split of in_proj's output): read in place.
  Tensor x = x_in.detach(), w = contiguous(w_in.detach());
  if (x.device().is_cuda() || x.stride(2) != 1) x = contiguous(x);
  Tensor bias = bias_in.defined() ? contiguous(bias_in.detach()) : Tensor();
  const int64_t b = x.size(0), l = x.size(1), d = x.size(2), k = w.size(1);
  // For k = 1 the state is empty (b, d, 0) and never read.
  Tensor init = init_in.defined() && k > 1 ? contiguous(init_in.detach()) : Tensor();
  const Device dev = x.device();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), dev);  // (b, l, d)
  MG_DISPATCH_FLOAT(x.dtype(), "causal_conv1d", [&] {
    const scalar_t* pb = bias.defined() ? bias.data<scalar_t>() : nullptr;
    const scalar_t* pinit = init.defined() ? init.data<scalar_t>() : nullptr;
    if (dev.is_cuda()) {
      cuda::causal_conv1d_forward(x.data<scalar_t>(), w.data<scalar_t>(), pb, pinit, b, l, d, k, apply_silu,
                                  out.data<scalar_t>(), dev.index);
      return;
    }
    cpu::conv1d_forward(conv_args(x, w.data<scalar_t>(), pb, pinit, k, apply_silu), out.data<scalar_t>());
  });
  constexpr OpId id = OpId::causal_conv1d;
  const bool has_init = init_in.defined();
  record(id, {x_in, w_in, bias_in, init_in}, {&out},
         [sx = SavedTensor(x, id), sw = SavedTensor(w, id), sb = SavedTensor(bias, id), si = SavedTensor(init, id),
          sy = SavedTensor(apply_silu && dev.is_cpu() ? out : Tensor(), id), apply_silu, has_init](const VjpArgs& g) {
           Tensor x = sx.get(), w = sw.get(), bias = sb.get(), init = si.get(), gout = contiguous(g[0]);
           const Tensor y = sy.get();  // the output (silu on the CPU), kept by the layers after it anyway
           const int64_t b = x.size(0), l = x.size(1), d = x.size(2), k = w.size(1);
           const Device dev = x.device();
           Tensor dx = g.needs_grad(0) ? Tensor::empty(x.shape(), x.dtype(), dev) : Tensor();
           Tensor dw = g.needs_grad(1) ? Tensor::empty(w.shape(), x.dtype(), dev) : Tensor();
           Tensor db = bias.defined() && g.needs_grad(2) ? Tensor::empty(bias.shape(), x.dtype(), dev) : Tensor();
           // (b, d, k-1); for k = 1 an empty (b, d, 0) that nothing writes.
           Tensor dinit = has_init && g.needs_grad(3) ? Tensor::empty({b, d, k - 1}, x.dtype(), dev) : Tensor();
           MG_DISPATCH_FLOAT(x.dtype(), "causal_conv1d", [&] {
             using T = scalar_t;
             const T *px = x.data<T>(), *pb = bias.defined() ? bias.data<T>() : nullptr;
             const T* pinit = init.defined() ? init.data<T>() : nullptr;
             if (dev.is_cuda()) {
               auto ptr = [](const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; };
               // Scratch: the gradient through silu (b, l, d), and the fixed-order partial sums of
               // dweight and dbias (row blocks, k + 1, d) in float64.
               Tensor dpre = apply_silu ? Tensor::empty(x.shape(), x.dtype(), dev) : Tensor();  // (b, l, d)
               Tensor partials = dw.defined() || db.defined()
                                     ? Tensor::empty({cuda::causal_conv1d_partials(b, l, d, k)}, DType::f64, dev)
                                     : Tensor();
               cuda::causal_conv1d_backward(px, w.data<T>(), pb, pinit, gout.data<T>(), b, l, d, k, apply_silu,
                                            ptr(dpre), ptr(dx), ptr(dw), ptr(db), k > 1 ? ptr(dinit) : nullptr,
                                            partials.defined() ? partials.data<double>() : nullptr, dev.index);
               return;
             }
             auto out = [](const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; };
             cpu::Conv1dArgs<T> args = conv_args(x, w.data<T>(), pb, pinit, k, apply_silu);
             args.y = y.defined() ? y.data<T>() : nullptr;
             cpu::conv1d_backward(args, gout.data<T>(), out(dx), out(dw), out(db), k > 1 ? out(dinit) : nullptr);
           });
           return std::vector<Tensor>{dx, dw, db, dinit};
         });
  return out;
}

namespace {

// The last k-1 inputs of [initial_state, x] along time as (b, d, k-1), oldest first; zeros stand for a
// missing initial state. Composed from views and cat, so its gradient reaches x and initial_state.
Tensor conv_final_state(const Tensor& x, const Tensor& init, int64_t k) {
  const int64_t b = x.size(0), l = x.size(1), d = x.size(2), keep = k - 1;
  Tensor xt = transpose(x, 1, 2);  // (b, d, l)
  if (l >= keep) return contiguous(narrow(xt, 2, l - keep, keep));
  Tensor prev = init.defined() ? init : zeros({b, d, keep}, x.dtype(), x.device());
  return contiguous(cat({narrow(prev, 2, l, keep - l), xt}, 2));
}

}  // namespace

ConvResult causal_conv1d_with_state(const Tensor& x, const Tensor& weight, const Tensor& bias, bool apply_silu,
                                    const Tensor& initial_state) {
  Tensor y = causal_conv1d(x, weight, bias, apply_silu, initial_state);  // checks the arguments
  return {y, conv_final_state(x, initial_state, weight.size(1))};
}

ConvResult causal_conv1d_with_state_reference(const Tensor& x, const Tensor& w, const Tensor& bias, bool apply_silu,
                                              const Tensor& initial_state) {
  check_conv("causal_conv1d_reference", x, w, bias, initial_state);
  const int64_t b = x.size(0), l = x.size(1), d = x.size(2), k = w.size(1);
  // x with the k-1 earlier inputs in front (the initial state, or zeros): xp[t + k-1] = x[t].
  Tensor prev = initial_state.defined() ? transpose(initial_state, 1, 2) : zeros({b, k - 1, d}, x.dtype(), x.device());
  Tensor xp = k > 1 ? cat({prev, x}, 1) : x;  // (b, l+k-1, d)
  Tensor y;
  for (int64_t j = 0; j < k; ++j) {
    Tensor term = mul(narrow(xp, 1, j, l), reshape(narrow(w, 1, j, 1), {d}));  // x[t-(k-1)+j] * w[:, j]
    y = j ? add(y, term) : term;
  }
  if (bias.defined()) y = add(y, bias);
  // The final state: the last k-1 steps of xp, as (b, d, k-1).
  return {apply_silu ? silu(y) : y, transpose(narrow(xp, 1, l, k - 1), 1, 2)};
}

Tensor causal_conv1d_reference(const Tensor& x, const Tensor& w, const Tensor& bias, bool apply_silu,
                               const Tensor& initial_state) {
  return causal_conv1d_with_state_reference(x, w, bias, apply_silu, initial_state).y;
}

void register_causal_conv1d_gradchecks(GradcheckRegistry& r) {
  struct Cfg {
    const char* label;
    int64_t b, l, d, k;
    bool bias, silu, state = false;  // state: an initial state, and the output includes the final state
  };
  const Cfg cfgs[] = {
      {"k 4, bias, silu", 2, 7, 5, 4, true, true},
      {"k 1, no bias", 1, 4, 3, 1, false, false},
      {"k 5 > l 3, bias", 2, 3, 4, 5, true, false},
      {"initial and final state, k 4, bias, silu", 2, 7, 5, 4, true, true, true},
      {"initial and final state, k 1 (empty state)", 2, 4, 3, 1, true, true, true},
      {"initial and final state, k 4 > l 2", 2, 2, 3, 4, false, true, true},
  };
  for (const Cfg& c : cfgs)
    r.add({OpId::causal_conv1d, c.label,
           [c](Generator& g, Device dev) {
             return std::vector<Tensor>{gc_randn({c.b, c.l, c.d}, g, dev), gc_randn({c.d, c.k}, g, dev),
                                        c.bias ? gc_randn({c.d}, g, dev) : Tensor(),
                                        c.state ? gc_randn({c.b, c.d, c.k - 1}, g, dev) : Tensor()};
           },
           [c](const std::vector<Tensor>& in) {
             if (!c.state) return causal_conv1d(in[0], in[1], in[2], c.silu);
             ConvResult res = causal_conv1d_with_state(in[0], in[1], in[2], c.silu, in[3]);
             if (res.final_state.numel() == 0) return res.y;
             return cat({reshape(res.y, {res.y.numel()}), reshape(res.final_state, {res.final_state.numel()})}, 0);
           }});
}

}  // namespace mg
