// selective_scan: argument checks, the fused op's forward dispatch and vjp, the composed reference,
// and the gradcheck cases. The math is in ops/scan.h and docs/design.md#the-selective-scan; the CPU kernels and the
// account of where their memory goes are in ops/cpu/selective_scan.cpp.
//
// Memory: the forward saves for backward only its inputs (contiguous, or the views of z, B and C it read in
// place) and the chunk-end states (b, ceil(l / kScanChunk), d, n), i.e. 1/kScanChunk of all states; it
// saves nothing when no input requires grad. The backward recomputes each chunk's states from the saved state before
// it. On CUDA (cuda/selective_scan.cu, docs/cuda-scan.md) the same, with chunks of kScanChunkCuda steps and the states
// laid out (b, nchunks, n, d); the backward's scratch (per-channel-group partials of dB and dC, per-batch partials of
// dA, dD, ddelta_bias) is allocated here as device tensors.
#include <cmath>

#include "ops/gradcheck.h"
#include "ops/input_checks.h"
#include "autograd/node.h"
#include "autograd/observer.h"
#include "cuda/runtime.h"
#include "cuda/scan_kernels.h"
#include "ops/cpu/loops.h"
#include "ops/cpu/selective_scan.h"
#include "ops/ops.h"

namespace mg {

namespace {

struct ScanDims {
  int64_t b, l, d, n;
};

ScanDims check_scan(const char* op, const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B,
                    const Tensor& C, const Tensor& D, const Tensor& z, const Tensor& delta_bias,
                    const Tensor& initial_state) {
  const std::pair<const char*, const Tensor*> required[] = {
      {"u", &u}, {"delta", &delta}, {"A", &A}, {"B", &B}, {"C", &C}};
  for (auto& [name, t] : required) MG_CHECK(t->defined(), "[{}] {} is required but was undefined", op, name);
  MG_CHECK(is_floating(u.dtype()), "[{}] u must be float32 or float64, got {}", op, u.dtype());
  MG_CHECK(u.dim() == 3, "[{}] u must be (b, l, d), got {}", op, u.shape());
  const int64_t b = u.size(0), l = u.size(1), d = u.size(2);
  MG_CHECK(A.dim() == 2 && A.size(0) == d, "[{}] A must be ({}, n) to match u {}, got {}", op, d, u.shape(), A.shape());
  const int64_t n = A.size(1);
  MG_CHECK(b > 0 && l > 0 && d > 0 && n > 0, "[{}] every size must be positive, got u {} and A {}", op, u.shape(),
           A.shape());
  const Shape bld{b, l, d};
  MG_CHECK(delta.shape() == bld, "[{}] delta must be {} like u, got {}", op, bld, delta.shape());
  check_scan_operands(op, "u", u, A, Shape{b, l, n}, B, C, D, z, "delta_bias", delta_bias);
  const Shape bdn{b, d, n};
  MG_CHECK(!initial_state.defined() || initial_state.shape() == bdn,
           "[{}] initial_state must be {} (b, d, n) to match u {} and A {}, got {}", op, bdn, u.shape(), A.shape(),
           initial_state.shape());
  check_same_dtype_device(op, "u", u,
                          {{"delta", &delta},
                           {"A", &A},
                           {"B", &B},
                           {"C", &C},
                           {"D", &D},
                           {"z", &z},
                           {"delta_bias", &delta_bias},
                           {"initial_state", &initial_state}});
  return {b, l, d, n};
}

template <class T>
ScanArgs<T> scan_args(const ScanDims& s, const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B,
                      const Tensor& C, const Tensor& D, const Tensor& z, const Tensor& delta_bias, const Tensor& h0,
                      bool softplus) {
  auto ptr = [](const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; };
  ScanArgs<T> a;
  a.b = s.b, a.l = s.l, a.d = s.d, a.n = s.n;
  a.u = ptr(u), a.delta = ptr(delta), a.A = ptr(A), a.B = ptr(B), a.C = ptr(C);
  a.D = ptr(D), a.z = ptr(z), a.delta_bias = ptr(delta_bias);
  a.h0 = ptr(h0);
  a.z_rs = row_stride(z), a.B_rs = row_stride(B), a.C_rs = row_stride(C);
  a.softplus = softplus;
  return a;
}

}  // namespace

ScanResult selective_scan(const Tensor& u_in, const Tensor& delta_in, const Tensor& A_in, const Tensor& B_in,
                          const Tensor& C_in, const Tensor& D_in, const Tensor& z_in, const Tensor& delta_bias_in,
                          bool delta_softplus, bool return_last_state, const Tensor& h0_in) {
  OpScope scope(OpId::selective_scan, {&u_in, &delta_in, &A_in, &B_in, &C_in, &D_in, &z_in, &delta_bias_in, &h0_in});
  const ScanDims s = check_scan("selective_scan", u_in, delta_in, A_in, B_in, C_in, D_in, z_in, delta_bias_in, h0_in);
  const Device dev = u_in.device();
  const bool on_cuda = dev.is_cuda();
  auto prep = [](const Tensor& t) { return t.defined() ? contiguous(t.detach()) : Tensor(); };
  // z, B and C are read in place where they are narrows of a wider tensor's last dim (in the Mamba layer,
  // of in_proj's and x_proj's outputs): no copy, and the backward keeps the views.
  Tensor u = prep(u_in), delta = prep(delta_in), A = prep(A_in), B = rows_of(B_in), C = rows_of(C_in), D = prep(D_in),
         z = rows_of(z_in), delta_bias = prep(delta_bias_in), h0 = prep(h0_in);
  const DType dtype = u.dtype();
  const bool needs_backward =
      any_requires_grad({&u_in, &delta_in, &A_in, &B_in, &C_in, &D_in, &z_in, &delta_bias_in, &h0_in});

  Tensor y = Tensor::empty({s.b, s.l, s.d}, dtype, dev);  // (b, l, d)
  // The state at the end of every chunk: all that the backward keeps beyond the inputs.
  // CPU (b, nchunks, d, n); CUDA (b, nchunks, n, d), so that a warp's 32 channels store one row.
  Tensor states = !needs_backward ? Tensor()
                  : on_cuda       ? Tensor::empty({s.b, cuda::scan_num_chunks_cuda(s.l), s.n, s.d}, dtype, dev)
                                  : Tensor::empty({s.b, cpu::scan_num_chunks(s.l), s.d, s.n}, dtype);
  Tensor last = return_last_state ? Tensor::empty({s.b, s.d, s.n}, dtype, dev) : Tensor();  // (b, d, n)
  MG_DISPATCH_FLOAT(dtype, "selective_scan", [&] {
    scalar_t* pstates = states.defined() ? states.data<scalar_t>() : nullptr;
    scalar_t* plast = last.defined() ? last.data<scalar_t>() : nullptr;
    if (on_cuda) {
      auto a = scan_args<scalar_t>(s, u, delta, A, B, C, D, z, delta_bias, h0, delta_softplus);
      cuda::selective_scan_forward(a, y.data<scalar_t>(), pstates, plast, dev.index);
    } else {
      auto a = scan_args<scalar_t>(s, u, delta, A, B, C, D, z, delta_bias, h0, delta_softplus);
      cpu::selective_scan_forward(a, y.data<scalar_t>(), pstates, plast);
    }
  });

  std::vector<Tensor*> outs{&y};
  if (return_last_state) outs.push_back(&last);
  constexpr OpId id = OpId::selective_scan;
  record(id, {u_in, delta_in, A_in, B_in, C_in, D_in, z_in, delta_bias_in, h0_in}, outs,
         [su = SavedTensor(u, id), sdelta = SavedTensor(delta, id), sA = SavedTensor(A, id), sB = SavedTensor(B, id),
          sC = SavedTensor(C, id), sD = SavedTensor(D, id), sz = SavedTensor(z, id),
          sbias = SavedTensor(delta_bias, id), sh0 = SavedTensor(h0, id), states = kept_for_backward(states, id), s,
          delta_softplus, return_last_state](const VjpArgs& g) {
           Tensor u = su.get(), delta = sdelta.get(), A = sA.get(), B = sB.get(), C = sC.get(), D = sD.get(),
                  z = sz.get(), delta_bias = sbias.get(), h0 = sh0.get();
           Tensor dout = contiguous(g[0]);
           Tensor dlast = return_last_state ? contiguous(g[1]) : Tensor();
           const DType dt = u.dtype();
           const Device dev = u.device();
           auto grad_like = [&](size_t i, const Tensor& t) {
             return g.needs_grad(i) ? Tensor::empty(t.shape(), dt, dev) : Tensor();
           };
           std::vector<Tensor> grads{grad_like(0, u),
                                     grad_like(1, delta),
                                     grad_like(2, A),
                                     grad_like(3, B),
                                     grad_like(4, C),
                                     D.defined() ? grad_like(5, D) : Tensor(),
                                     z.defined() ? grad_like(6, z) : Tensor(),
                                     delta_bias.defined() ? grad_like(7, delta_bias) : Tensor(),
                                     h0.defined() ? grad_like(8, h0) : Tensor()};
           if (dev.is_cuda()) {
             MG_DISPATCH_FLOAT(dt, "selective_scan", [&] {
               using T = scalar_t;
               auto ptr = [](const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; };
               auto dptr = [](const Tensor& t) { return t.defined() ? t.data<double>() : nullptr; };
               auto a = scan_args<T>(s, u, delta, A, B, C, D, z, delta_bias, h0, delta_softplus);
               ScanGrads<T> gr;
               gr.du = ptr(grads[0]), gr.ddelta = ptr(grads[1]), gr.dA = ptr(grads[2]), gr.dB = ptr(grads[3]);
               gr.dC = ptr(grads[4]), gr.dD = ptr(grads[5]), gr.dz = ptr(grads[6]), gr.ddelta_bias = ptr(grads[7]);
               gr.dh0 = ptr(grads[8]);
               // Scratch: one (b, n, l) partial of dB and dC per group of 32 channels, summed in group
               // order; per-batch float64 partials of dA, dD, ddelta_bias, summed in batch order.
               const int64_t G = cuda::scan_num_groups_cuda(s.d);
               Tensor part_dB = gr.dB ? Tensor::empty({G, s.b, s.n, s.l}, dt, dev) : Tensor();           // (G, b, n, l)
               Tensor part_dC = gr.dC ? Tensor::empty({G, s.b, s.n, s.l}, dt, dev) : Tensor();           // (G, b, n, l)
               Tensor part_dA = gr.dA ? Tensor::empty({s.b, s.d, s.n}, DType::f64, dev) : Tensor();      // (b, d, n)
               Tensor part_dD = gr.dD ? Tensor::empty({s.b, s.d}, DType::f64, dev) : Tensor();           // (b, d)
               Tensor part_db = gr.ddelta_bias ? Tensor::empty({s.b, s.d}, DType::f64, dev) : Tensor();  // (b, d)
               cuda::ScanScratch<T> sc;
               sc.part_dB = ptr(part_dB), sc.part_dC = ptr(part_dC);
               sc.part_dA = dptr(part_dA), sc.part_dD = dptr(part_dD), sc.part_dbias = dptr(part_db);
               cuda::selective_scan_backward(a, dout.data<T>(), ptr(dlast), states.data<T>(), gr, sc, dev.index);
             });
             return grads;
           }
           MG_DISPATCH_FLOAT(dt, "selective_scan", [&] {
             auto a = scan_args<scalar_t>(s, u, delta, A, B, C, D, z, delta_bias, h0, delta_softplus);
             auto ptr = [](const Tensor& t) { return t.defined() ? t.data<scalar_t>() : nullptr; };
             ScanGrads<scalar_t> gr;
             gr.du = ptr(grads[0]), gr.ddelta = ptr(grads[1]), gr.dA = ptr(grads[2]), gr.dB = ptr(grads[3]);
             gr.dC = ptr(grads[4]), gr.dD = ptr(grads[5]), gr.dz = ptr(grads[6]), gr.ddelta_bias = ptr(grads[7]);
             gr.dh0 = ptr(grads[8]);
             cpu::selective_scan_backward(a, dout.data<scalar_t>(), ptr(dlast), states.data<scalar_t>(), gr);
           });
           return grads;
         });
  return {y, last};
}

ScanResult selective_scan_reference(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B,
                                    const Tensor& C, const Tensor& D, const Tensor& z, const Tensor& delta_bias,
                                    bool delta_softplus, bool return_last_state, const Tensor& initial_state) {
  const ScanDims s = check_scan("selective_scan_reference", u, delta, A, B, C, D, z, delta_bias, initial_state);
  Tensor dt = delta_bias.defined() ? add(delta, delta_bias) : delta;  // (b, l, d)
  if (delta_softplus) dt = softplus(dt);
  Tensor h = initial_state.defined() ? initial_state : zeros({s.b, s.d, s.n}, u.dtype(), u.device());  // (b, d, n)
  std::vector<Tensor> ys;
  for (int64_t t = 0; t < s.l; ++t) {
    Tensor dt_t = squeeze(narrow(dt, 1, t, 1), 1);    // (b, d)
    Tensor u_t = squeeze(narrow(u, 1, t, 1), 1);      // (b, d)
    Tensor B_t = narrow(B, 1, t, 1);                  // (b, 1, n)
    Tensor C_t = narrow(C, 1, t, 1);                  // (b, 1, n)
    Tensor decay = exp(mul(unsqueeze(dt_t, -1), A));  // (b, d, n)
    h = add(mul(decay, h), mul(unsqueeze(mul(dt_t, u_t), -1), B_t));
    ys.push_back(unsqueeze(sum(mul(h, C_t), {-1}), 1));  // (b, 1, d)
  }
  Tensor y = cat(ys, 1);  // (b, l, d)
  if (D.defined()) y = add(y, mul(u, D));
  if (z.defined()) y = mul(y, silu(z));
  return {y, return_last_state ? h : Tensor()};
}

void register_selective_scan_gradchecks(GradcheckRegistry& r) {
  struct Cfg {
    const char* label;
    int64_t b, l, d, n;
    bool D, z, bias, softplus, last, h0 = false;
  };
  // l 130 is not a multiple of the chunk on either device (128 on the CPU, 64 on CUDA).
  const Cfg cfgs[] = {
      {"all inputs, softplus, last state, 2 chunks", 1, 130, 3, 4, true, true, true, true, true},
      {"l 1, n 1, no optional inputs", 2, 1, 2, 1, false, false, false, false, false},
      {"d 17 (partial block), n 16, D and z", 1, 6, 17, 16, true, true, false, true, false},
      {"initial state, all inputs, softplus, last state, l 130", 1, 130, 3, 2, true, true, true, true, true, true},
      {"initial state, l 1, no optional inputs, no softplus", 2, 1, 2, 3, false, false, false, false, true, true},
      {"initial state, D and delta_bias without z, no last state", 2, 7, 3, 2, true, false, true, true, false, true},
      {"initial state, z only, no softplus", 1, 9, 17, 4, false, true, false, false, true, true},
  };
  for (const Cfg& c : cfgs) {
    r.add({OpId::selective_scan, c.label,
           [c](Generator& g, Device dev) {
             std::vector<Tensor> in{
                 gc_randn({c.b, c.l, c.d}, g, dev),
                 c.softplus ? gc_randn({c.b, c.l, c.d}, g, dev) : gc_uniform({c.b, c.l, c.d}, 0.05, 0.6, g, dev),
                 gc_uniform({c.d, c.n}, -2.0, -0.2, g, dev),
                 gc_randn({c.b, c.l, c.n}, g, dev),
                 gc_randn({c.b, c.l, c.n}, g, dev),
                 c.D ? gc_randn({c.d}, g, dev) : Tensor(),
                 c.z ? gc_randn({c.b, c.l, c.d}, g, dev) : Tensor(),
                 c.bias ? gc_uniform({c.d}, -1.0, 1.0, g, dev) : Tensor(),
                 c.h0 ? gc_randn({c.b, c.d, c.n}, g, dev) : Tensor()};
             return in;
           },
           [c](const std::vector<Tensor>& in) {
             ScanResult res =
                 selective_scan(in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7], c.softplus, c.last, in[8]);
             if (!c.last) return res.y;
             return cat({reshape(res.y, {res.y.numel()}), reshape(res.last_state, {res.last_state.numel()})}, 0);
           }});
  }
}

}  // namespace mg
