// The recurrent-step ops of decoding (math: ops/scan.h and docs/design.md#the-recurrent-step-ops):
// selective_state_update (one step of selective_scan) and causal_conv1d_update (one step of
// causal_conv1d), each with its argument checks, the choice between the CPU kernel
// (ops/cpu/state_update.cpp) and the CUDA kernel (cuda/state_update.cu), its in-place form, its vjp,
// its composed reference and its gradcheck cases.
//
// Strided inputs: x, dt, z, B, C (and A) are read through a row stride when their inner stride is 1,
// so the narrows of in_proj's (b, 2d) and x_proj's (b, R + 2n) outputs are read without a copy; an
// input whose inner stride is not 1 is copied first. The functional forms allocate y and the new
// state; the in-place forms allocate nothing.
//
// The vjps are composed from ops (a step is O(b d n), so nothing is gained by fusing them). With
// h' = a h + dt x B, a = exp(dt A), y0 = C.h' + D x, out = y0 silu(z), and the incoming gradients
// gy (b, d) and gh' (b, d, n) of the new state:
//     g0 = gy silu(z);  G = gh' + g0 C                                  (the total dL/dh', (b, d, n))
//     dh = G a,  dx = dt sum_k G B + D g0,  d(dt) = sum_k G (A a h + B x),  dA = sum_b G a h dt,
//     dB = sum_d G dt x,  dC = sum_d g0 h',  dD = sum_b g0 x,  dz = gy y0 silu'(z),
//     and through dt = softplus(s), s = dt_in + dt_bias: ds = d(dt) sigmoid(s), d(dt_bias) = sum_b ds.
// The conv's: window w = [state, x], pre = bias + sum_j weight_j w_j, g = gy silu'(pre) (or gy);
//     dw_j = g weight_j + gstate'_{j-1} (j >= 1),  dstate = dw[:k-1], dx = dw[k-1],
//     dweight = sum_b g w,  dbias = sum_b g.
#include "ops/gradcheck.h"
#include "ops/input_checks.h"
#include "autograd/node.h"
#include "autograd/observer.h"
#include "core/dispatch.h"
#include "cuda/runtime.h"
#include "cuda/scan_kernels.h"
#include "ops/cpu/state_update.h"
#include "ops/ops.h"

namespace mg {

namespace {

struct StepDims {
  int64_t b, d, n;  // n: the state size (selective_state_update) or the conv width k
};

StepDims check_state_update(const char* op, const Tensor& state, const Tensor& x, const Tensor& dt, const Tensor& A,
                            const Tensor& B, const Tensor& C, const Tensor& D, const Tensor& z, const Tensor& dt_bias) {
  const std::pair<const char*, const Tensor*> required[] = {{"state", &state}, {"x", &x}, {"dt", &dt},
                                                            {"A", &A},         {"B", &B}, {"C", &C}};
  for (auto& [name, t] : required) MG_CHECK(t->defined(), "[{}] {} is required but was undefined", op, name);
  MG_CHECK(is_floating(x.dtype()), "[{}] x must be float32 or float64, got {}", op, x.dtype());
  MG_CHECK(x.dim() == 2, "[{}] x must be (b, d), got {}", op, x.shape());
  const int64_t b = x.size(0), d = x.size(1);
  MG_CHECK(A.dim() == 2 && A.size(0) == d, "[{}] A must be ({}, n) to match x {}, got {}", op, d, x.shape(), A.shape());
  const int64_t n = A.size(1);
  MG_CHECK(b > 0 && d > 0 && n > 0, "[{}] every size must be positive, got x {} and A {}", op, x.shape(), A.shape());
  const Shape bd{b, d}, bdn{b, d, n};
  MG_CHECK(state.shape() == bdn, "[{}] state must be {} to match x {} and A {}, got {}", op, bdn, x.shape(), A.shape(),
           state.shape());
  MG_CHECK(dt.shape() == bd, "[{}] dt must be {} like x, got {}", op, bd, dt.shape());
  check_scan_operands(op, "x", x, A, Shape{b, n}, B, C, D, z, "dt_bias", dt_bias);
  check_same_dtype_device(
      op, "x", x,
      {{"state", &state}, {"dt", &dt}, {"A", &A}, {"B", &B}, {"C", &C}, {"D", &D}, {"z", &z}, {"dt_bias", &dt_bias}});
  return {b, d, n};
}

StepDims check_conv_update(const char* op, const Tensor& state, const Tensor& x, const Tensor& w, const Tensor& bias) {
  const std::pair<const char*, const Tensor*> required[] = {{"conv_state", &state}, {"x", &x}, {"weight", &w}};
  for (auto& [name, t] : required) MG_CHECK(t->defined(), "[{}] {} is required but was undefined", op, name);
  MG_CHECK(is_floating(x.dtype()), "[{}] x must be float32 or float64, got {}", op, x.dtype());
  MG_CHECK(x.dim() == 2 && x.size(0) > 0 && x.size(1) > 0, "[{}] x must be (b, d) with b, d > 0, got {}", op,
           x.shape());
  const int64_t b = x.size(0), d = x.size(1);
  MG_CHECK(w.dim() == 2 && w.size(0) == d && w.size(1) >= 1,
           "[{}] weight must be ({}, k) with k >= 1 to match x {}, got {}", op, d, x.shape(), w.shape());
  const int64_t k = w.size(1);
  const Shape sshape{b, d, k - 1};
  MG_CHECK(state.shape() == sshape, "[{}] conv_state must be {} (b, d, k - 1) to match x {} and weight {}, got {}", op,
           sshape, x.shape(), w.shape(), state.shape());
  MG_CHECK(!bias.defined() || bias.shape() == Shape{d}, "[{}] bias must be ({},) to match x {}, got {}", op, d,
           x.shape(), bias.shape());
  check_same_dtype_device(op, "x", x, {{"conv_state", &state}, {"weight", &w}, {"bias", &bias}});
  return {b, d, k};
}

// The inputs as the kernels read them: ops/input_checks.h's rows_of and row_stride, or contiguous.
Tensor dense(const Tensor& t) { return t.defined() ? contiguous(t.detach()) : Tensor(); }

template <class T>
StateUpdateArgs<T> su_args(const StepDims& s, const Tensor& state, const Tensor& x, const Tensor& dt, const Tensor& A,
                           const Tensor& B, const Tensor& C, const Tensor& D, const Tensor& z, const Tensor& dt_bias,
                           bool softplus) {
  auto ptr = [](const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; };
  StateUpdateArgs<T> a;
  a.b = s.b, a.d = s.d, a.n = s.n;
  a.state = ptr(state);
  a.x = ptr(x), a.dt = ptr(dt), a.z = ptr(z), a.A = ptr(A), a.B = ptr(B), a.C = ptr(C);
  a.x_rs = row_stride(x), a.dt_rs = row_stride(dt), a.z_rs = row_stride(z);
  a.A_rs = row_stride(A), a.B_rs = row_stride(B), a.C_rs = row_stride(C);
  a.D = ptr(D), a.dt_bias = ptr(dt_bias);
  a.softplus = softplus;
  return a;
}

// Runs the step kernel on the inputs' device: y (b, d) and new_state (b, d, n) contiguous.
void run_state_update(const StepDims& s, const Tensor& state, const Tensor& x_in, const Tensor& dt_in,
                      const Tensor& A_in, const Tensor& B_in, const Tensor& C_in, const Tensor& D_in,
                      const Tensor& z_in, const Tensor& bias_in, bool softplus, const Tensor& y,
                      const Tensor& new_state) {
  Tensor x = rows_of(x_in), dt = rows_of(dt_in), A = rows_of(A_in), B = rows_of(B_in), C = rows_of(C_in),
         z = rows_of(z_in), D = rows_of(D_in), bias = rows_of(bias_in);
  const Device dev = x.device();
  MG_DISPATCH_FLOAT(x.dtype(), "selective_state_update", [&] {
    auto a = su_args<scalar_t>(s, state, x, dt, A, B, C, D, z, bias, softplus);
    if (dev.is_cuda())
      cuda::selective_state_update(a, y.data<scalar_t>(), new_state.data<scalar_t>(), dev.index);
    else
      cpu::selective_state_update(a, y.data<scalar_t>(), new_state.data<scalar_t>());
  });
}

void run_conv_update(const StepDims& s, const Tensor& state, const Tensor& x_in, const Tensor& w_in,
                     const Tensor& bias_in, bool silu, const Tensor& y, const Tensor& new_state) {
  Tensor x = rows_of(x_in), w = dense(w_in), bias = dense(bias_in);
  const Device dev = x.device();
  MG_DISPATCH_FLOAT(x.dtype(), "causal_conv1d_update", [&] {
    ConvUpdateArgs<scalar_t> a;
    a.b = s.b, a.d = s.d, a.k = s.n;
    a.state = state.data<scalar_t>();
    a.x = x.data<scalar_t>(), a.x_rs = row_stride(x);
    a.weight = w.data<scalar_t>(), a.bias = bias.defined() ? bias.data<scalar_t>() : nullptr;
    a.silu = silu;
    if (dev.is_cuda())
      cuda::causal_conv1d_update(a, y.data<scalar_t>(), new_state.data<scalar_t>(), dev.index);
    else
      cpu::causal_conv1d_update(a, y.data<scalar_t>(), new_state.data<scalar_t>());
  });
}

// The checks of an in-place form on its outputs and on grad mode.
void check_in_place(const char* op, const Tensor& state, const char* state_name, const Tensor& out, const Tensor& x,
                    std::initializer_list<const Tensor*> inputs) {
  MG_CHECK(!any_requires_grad(inputs),
           "[{}] works in place and records nothing, but grad mode is on and an input requires grad (use the "
           "functional form, or a NoGradGuard)",
           op);
  MG_CHECK(state.is_contiguous(), "[{}] {} must be contiguous to be updated in place", op, state_name);
  MG_CHECK(out.defined(), "[{}] out is required but was undefined", op);
  MG_CHECK(out.shape() == x.shape(), "[{}] out must be {} like x, got {}", op, x.shape(), out.shape());
  MG_CHECK(out.dtype() == x.dtype(), "[{}] out is {} but x is {}", op, out.dtype(), x.dtype());
  MG_CHECK(out.device() == x.device(), "[{}] out is on {} but x is on {}", op, out.device(), x.device());
  MG_CHECK(out.is_contiguous(), "[{}] out must be contiguous", op);
}

// Whether the elements of a and b can share bytes: the same storage and overlapping ranges
// [first element, last element] (a conservative test for interleaved strided views).
bool memory_overlaps(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined() || a.numel() == 0 || b.numel() == 0 || a.storage() != b.storage()) return false;
  auto bytes = [](const Tensor& t) {  // [begin, end) in bytes of the storage
    int64_t lo = t.offset(), hi = t.offset();
    for (int64_t d = 0; d < t.dim(); ++d) {
      const int64_t reach = (t.shape()[d] - 1) * t.strides()[d];
      (reach < 0 ? lo : hi) += reach;
    }
    const int64_t es = (int64_t)dtype_size(t.dtype());
    return std::pair<int64_t, int64_t>{lo * es, (hi + 1) * es};
  };
  const auto [a0, a1] = bytes(a);
  const auto [b0, b1] = bytes(b);
  return a0 < b1 && b0 < a1;
}

// The in-place forms write `written` (out, or the state) while the kernel still reads the inputs: none of
// them may share its memory.
void check_no_overlap(const char* op, const char* written_name, const Tensor& written,
                      std::initializer_list<std::pair<const char*, const Tensor*>> inputs) {
  for (auto& [name, t] : inputs)
    MG_CHECK(!memory_overlaps(written, *t),
             "[{}] {} overlaps {} in memory: the step would overwrite {} while it reads it (give {} memory of its "
             "own)",
             op, written_name, name, name, written_name);
}

Tensor silu_grad(const Tensor& g, const Tensor& v) {  // g * silu'(v) = g s (1 + v (1 - s)), s = sigmoid(v)
  Tensor sg = sigmoid(v);
  return mul(g, mul(sg, add_scalar(mul(v, add_scalar(neg(sg), 1.0)), 1.0)));
}

}  // namespace

StateUpdateResult selective_state_update(const Tensor& state_in, const Tensor& x_in, const Tensor& dt_in,
                                         const Tensor& A_in, const Tensor& B_in, const Tensor& C_in, const Tensor& D_in,
                                         const Tensor& z_in, const Tensor& bias_in, bool dt_softplus) {
  OpScope scope(OpId::selective_state_update, {&state_in, &x_in, &dt_in, &A_in, &B_in, &C_in, &D_in, &z_in, &bias_in});
  const StepDims s =
      check_state_update("selective_state_update", state_in, x_in, dt_in, A_in, B_in, C_in, D_in, z_in, bias_in);
  const Device dev = x_in.device();
  const DType dtype = x_in.dtype();
  Tensor state = dense(state_in);
  Tensor y = Tensor::empty({s.b, s.d}, dtype, dev);               // (b, d)
  Tensor new_state = Tensor::empty({s.b, s.d, s.n}, dtype, dev);  // (b, d, n)
  run_state_update(s, state, x_in, dt_in, A_in, B_in, C_in, D_in, z_in, bias_in, dt_softplus, y, new_state);

  constexpr OpId id = OpId::selective_state_update;
  auto save = [](const Tensor& t) { return SavedTensor(t.defined() ? t.detach() : Tensor(), id); };
  record(id, {state_in, x_in, dt_in, A_in, B_in, C_in, D_in, z_in, bias_in}, {&y, &new_state},
         [sh = save(state_in), sx = save(x_in), sdt = save(dt_in), sA = save(A_in), sB = save(B_in), sC = save(C_in),
          sD = save(D_in), sz = save(z_in), sbias = save(bias_in), dt_softplus](const VjpArgs& g) {
           Tensor h = sh.get(), x = sx.get(), dt_in = sdt.get(), A = sA.get(), B = sB.get(), C = sC.get(), D = sD.get(),
                  z = sz.get(), bias = sbias.get();
           const Tensor &gy = g[0], &gnew = g[1];
           Tensor s = bias.defined() ? add(dt_in, bias) : dt_in;  // (b, d)
           Tensor dt = dt_softplus ? softplus(s) : s;
           Tensor dt3 = unsqueeze(dt, 2);                      // (b, d, 1)
           Tensor a = exp(mul(dt3, A));                        // (b, d, n)
           Tensor B3 = unsqueeze(B, 1), C3 = unsqueeze(C, 1);  // (b, 1, n)
           Tensor dtx3 = unsqueeze(mul(dt, x), 2);             // (b, d, 1)
           Tensor ah = mul(a, h);                              // (b, d, n)
           Tensor hn = add(ah, mul(dtx3, B3));                 // h' (b, d, n)
           Tensor g0 = gy, dz;
           if (z.defined()) {
             g0 = mul(gy, silu(z));
             if (g.needs_grad(7)) {
               Tensor y0 = sum(mul(hn, C3), {2});
               if (D.defined()) y0 = add(y0, mul(D, x));
               dz = silu_grad(mul(gy, y0), z);
             }
           }
           Tensor G = add(gnew, mul(unsqueeze(g0, 2), C3));  // dL/dh' (b, d, n)
           Tensor GB = sum(mul(G, B3), {2});                 // (b, d)
           std::vector<Tensor> grads(9);
           if (g.needs_grad(0)) grads[0] = mul(G, a);
           if (g.needs_grad(1)) grads[1] = D.defined() ? add(mul(dt, GB), mul(g0, D)) : mul(dt, GB);
           if (g.needs_grad(2) || (bias.defined() && g.needs_grad(8))) {
             Tensor ddt = add(sum(mul(G, mul(A, ah)), {2}), mul(x, GB));  // dL/d(dt) (b, d)
             Tensor ds = dt_softplus ? mul(ddt, sigmoid(s)) : ddt;
             if (g.needs_grad(2)) grads[2] = ds;
             if (bias.defined() && g.needs_grad(8)) grads[8] = sum(ds, {0});
           }
           if (g.needs_grad(3)) grads[3] = sum(mul(mul(G, ah), dt3), {0});
           if (g.needs_grad(4)) grads[4] = sum(mul(G, dtx3), {1});
           if (g.needs_grad(5)) grads[5] = sum(mul(unsqueeze(g0, 2), hn), {1});
           if (D.defined() && g.needs_grad(6)) grads[6] = sum(mul(g0, x), {0});
           grads[7] = dz;
           return grads;
         });
  return {y, new_state};
}

void selective_state_update_(Tensor& state, const Tensor& x, const Tensor& dt, const Tensor& A, const Tensor& B,
                             const Tensor& C, const Tensor& D, const Tensor& z, const Tensor& dt_bias, bool dt_softplus,
                             Tensor& out) {
  OpScope scope(OpId::selective_state_update, {&state, &x, &dt, &A, &B, &C, &D, &z, &dt_bias});
  const char* op = "selective_state_update_";
  const StepDims s = check_state_update(op, state, x, dt, A, B, C, D, z, dt_bias);
  check_in_place(op, state, "state", out, x, {&state, &x, &dt, &A, &B, &C, &D, &z, &dt_bias, &out});
  check_no_overlap(op, "out", out,
                   {{"state", &state},
                    {"x", &x},
                    {"dt", &dt},
                    {"A", &A},
                    {"B", &B},
                    {"C", &C},
                    {"D", &D},
                    {"z", &z},
                    {"dt_bias", &dt_bias}});
  check_no_overlap(
      op, "state", state,
      {{"x", &x}, {"dt", &dt}, {"A", &A}, {"B", &B}, {"C", &C}, {"D", &D}, {"z", &z}, {"dt_bias", &dt_bias}});
  run_state_update(s, state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, out, state);
  state.storage()->bump_version();
  out.storage()->bump_version();
}

StateUpdateResult selective_state_update_reference(const Tensor& state, const Tensor& x, const Tensor& dt_in,
                                                   const Tensor& A, const Tensor& B, const Tensor& C, const Tensor& D,
                                                   const Tensor& z, const Tensor& dt_bias, bool dt_softplus) {
  check_state_update("selective_state_update_reference", state, x, dt_in, A, B, C, D, z, dt_bias);
  Tensor dt = dt_bias.defined() ? add(dt_in, dt_bias) : dt_in;  // (b, d)
  if (dt_softplus) dt = softplus(dt);
  Tensor decay = exp(mul(unsqueeze(dt, -1), A));  // (b, d, n)
  Tensor h = add(mul(decay, state), mul(unsqueeze(mul(dt, x), -1), unsqueeze(B, 1)));
  Tensor y = sum(mul(h, unsqueeze(C, 1)), {-1});  // (b, d)
  if (D.defined()) y = add(y, mul(x, D));
  if (z.defined()) y = mul(y, silu(z));
  return {y, h};
}

ConvUpdateResult causal_conv1d_update(const Tensor& state_in, const Tensor& x_in, const Tensor& w_in,
                                      const Tensor& bias_in, bool apply_silu) {
  OpScope scope(OpId::causal_conv1d_update, {&state_in, &x_in, &w_in, &bias_in});
  const StepDims s = check_conv_update("causal_conv1d_update", state_in, x_in, w_in, bias_in);
  const Device dev = x_in.device();
  const DType dtype = x_in.dtype();
  Tensor state = dense(state_in);
  Tensor y = Tensor::empty({s.b, s.d}, dtype, dev);                   // (b, d)
  Tensor new_state = Tensor::empty({s.b, s.d, s.n - 1}, dtype, dev);  // (b, d, k - 1)
  run_conv_update(s, state, x_in, w_in, bias_in, apply_silu, y, new_state);

  constexpr OpId id = OpId::causal_conv1d_update;
  auto save = [](const Tensor& t) { return SavedTensor(t.defined() ? t.detach() : Tensor(), id); };
  record(id, {state_in, x_in, w_in, bias_in}, {&y, &new_state},
         [ss = save(state_in), sx = save(x_in), sw = save(w_in), sb = save(bias_in), apply_silu](const VjpArgs& g) {
           Tensor st = ss.get(), x = sx.get(), w = sw.get(), bias = sb.get();
           const int64_t b = x.size(0), d = x.size(1), k = w.size(1);
           Tensor window = k > 1 ? cat({st, unsqueeze(x, 2)}, 2) : unsqueeze(x, 2);  // (b, d, k)
           Tensor gp = g[0];
           if (apply_silu) {
             Tensor pre = sum(mul(window, w), {2});
             if (bias.defined()) pre = add(pre, bias);
             gp = silu_grad(gp, pre);
           }
           Tensor gp3 = unsqueeze(gp, 2);  // (b, d, 1)
           Tensor gwin = mul(gp3, w);      // (b, d, k)
           if (k > 1) gwin = add(gwin, cat({zeros({b, d, 1}, x.dtype(), x.device()), g[1]}, 2));
           std::vector<Tensor> grads(4);
           if (g.needs_grad(0)) grads[0] = k > 1 ? narrow(gwin, 2, 0, k - 1) : zeros({b, d, 0}, x.dtype(), x.device());
           if (g.needs_grad(1)) grads[1] = squeeze(narrow(gwin, 2, k - 1, 1), 2);
           if (g.needs_grad(2)) grads[2] = sum(mul(gp3, window), {0});
           if (bias.defined() && g.needs_grad(3)) grads[3] = sum(gp, {0});
           return grads;
         });
  return {y, new_state};
}

void causal_conv1d_update_(Tensor& conv_state, const Tensor& x, const Tensor& weight, const Tensor& bias,
                           bool apply_silu, Tensor& out) {
  OpScope scope(OpId::causal_conv1d_update, {&conv_state, &x, &weight, &bias});
  const char* op = "causal_conv1d_update_";
  const StepDims s = check_conv_update(op, conv_state, x, weight, bias);
  check_in_place(op, conv_state, "conv_state", out, x, {&conv_state, &x, &weight, &bias, &out});
  check_no_overlap(op, "out", out, {{"conv_state", &conv_state}, {"x", &x}, {"weight", &weight}, {"bias", &bias}});
  check_no_overlap(op, "conv_state", conv_state, {{"x", &x}, {"weight", &weight}, {"bias", &bias}});
  run_conv_update(s, conv_state, x, weight, bias, apply_silu, out, conv_state);
  conv_state.storage()->bump_version();
  out.storage()->bump_version();
}

ConvUpdateResult causal_conv1d_update_reference(const Tensor& conv_state, const Tensor& x, const Tensor& weight,
                                                const Tensor& bias, bool apply_silu) {
  const StepDims s = check_conv_update("causal_conv1d_update_reference", conv_state, x, weight, bias);
  const int64_t k = s.n;
  Tensor window = k > 1 ? cat({conv_state, unsqueeze(x, 2)}, 2) : unsqueeze(x, 2);  // (b, d, k)
  Tensor y = sum(mul(window, weight), {2});                                         // (b, d)
  if (bias.defined()) y = add(y, bias);
  if (apply_silu) y = silu(y);
  Tensor next = k > 1 ? narrow(window, 2, 1, k - 1) : zeros({s.b, s.d, 0}, x.dtype(), x.device());
  return {y, next};
}

void register_state_update_gradchecks(GradcheckRegistry& r) {
  struct Cfg {
    const char* label;
    int64_t b, d, n;
    bool D, z, bias, softplus, strided;  // strided: x and z are narrows of one (b, 2d) input
  };
  const Cfg cfgs[] = {
      {"b 1, all inputs, softplus", 1, 3, 4, true, true, true, true, false},
      {"b 2, n 1, no optional inputs, softplus off", 2, 2, 1, false, false, false, false, false},
      {"b 3, d 17, n 16, D and dt_bias, softplus off", 3, 17, 16, true, false, true, false, false},
      {"b 2, z only, softplus", 2, 5, 3, false, true, false, true, false},
      {"b 2, x and z narrows of one (b, 2d), all inputs, softplus", 2, 4, 3, true, true, true, true, true},
  };
  for (const Cfg& c : cfgs) {
    r.add({OpId::selective_state_update, c.label,
           [c](Generator& g, Device dev) {
             return std::vector<Tensor>{
                 gc_randn({c.b, c.d, c.n}, g, dev),
                 gc_randn({c.b, c.strided ? 2 * c.d : c.d}, g, dev),
                 c.softplus ? gc_randn({c.b, c.d}, g, dev) : gc_uniform({c.b, c.d}, 0.05, 0.6, g, dev),
                 gc_uniform({c.d, c.n}, -2.0, -0.2, g, dev),
                 gc_randn({c.b, c.n}, g, dev),
                 gc_randn({c.b, c.n}, g, dev),
                 c.D ? gc_randn({c.d}, g, dev) : Tensor(),
                 c.z && !c.strided ? gc_randn({c.b, c.d}, g, dev) : Tensor(),
                 c.bias ? gc_uniform({c.d}, -1.0, 1.0, g, dev) : Tensor()};
           },
           [c](const std::vector<Tensor>& in) {
             Tensor x = c.strided ? narrow(in[1], 1, 0, c.d) : in[1];
             Tensor z = c.strided ? narrow(in[1], 1, c.d, c.d) : in[7];
             StateUpdateResult res =
                 selective_state_update(in[0], x, in[2], in[3], in[4], in[5], in[6], z, in[8], c.softplus);
             return cat({reshape(res.y, {res.y.numel()}), reshape(res.state, {res.state.numel()})}, 0);
           }});
  }
  struct ConvCfg {
    const char* label;
    int64_t b, d, k;
    bool bias, silu;
  };
  const ConvCfg conv_cfgs[] = {
      {"k 4, b 2, bias, silu", 2, 5, 4, true, true},
      {"k 4, b 1, no bias, no silu", 1, 3, 4, false, false},
      {"k 1 (empty state), b 2, bias, silu", 2, 3, 1, true, true},
      {"k 2, b 3, bias, no silu", 3, 4, 2, true, false},
  };
  for (const ConvCfg& c : conv_cfgs)
    r.add({OpId::causal_conv1d_update, c.label,
           [c](Generator& g, Device dev) {
             return std::vector<Tensor>{gc_randn({c.b, c.d, c.k - 1}, g, dev), gc_randn({c.b, c.d}, g, dev),
                                        gc_randn({c.d, c.k}, g, dev), c.bias ? gc_randn({c.d}, g, dev) : Tensor()};
           },
           [c](const std::vector<Tensor>& in) {
             ConvUpdateResult res = causal_conv1d_update(in[0], in[1], in[2], in[3], c.silu);
             if (res.state.numel() == 0) return res.y;
             return cat({reshape(res.y, {res.y.numel()}), reshape(res.state, {res.state.numel()})}, 0);
           }});
}

}  // namespace mg
