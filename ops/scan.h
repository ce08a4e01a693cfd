// The Mamba scan ops, fused on the CPU with composed references (math and gradients: docs/design.md).
//
// selective_scan: for each batch, channel c and state k, starting from h = 0,
//     dt[t] = softplus(delta[t] + delta_bias[c])   (softplus only when delta_softplus)
//     h[t]  = exp(dt[t] A[c,k]) h[t-1] + dt[t] B[t,k] u[t]
//     y[t]  = sum_k C[t,k] h[t,k] + D[c] u[t],   out = y * silu(z) when z is given.
// The fused op never holds a (b, l, d, n) tensor: the forward keeps the state of one block of
// channels in registers/locals and saves for backward only its inputs and the state at the end of
// every kScanChunk time steps; the backward recomputes each chunk's states from the saved start
// state and runs the reverse recurrence (ops/cpu/selective_scan.cpp). Gradients are bit-identical
// across runs and thread counts. The returned last_state (b, d, n), when requested, is
// differentiable: its gradient is the reverse recurrence's starting dh.
//
// causal_conv1d: depthwise over time, y[t, c] = bias[c] + sum_{j<k} weight[c, j] x[t-(k-1)+j, c] with
// x = 0 at negative times, then silu when apply_silu.
//
// The *_reference functions compute the same from primitive ops (a loop over time for the scan):
// the test oracle and the readable statement of the math. Both accept the same arguments.
#pragma once
#include "core/tensor.h"

namespace mg {

struct ScanResult {
  Tensor y;           // (b, l, d)
  Tensor last_state;  // (b, d, n); undefined unless return_last_state
};

// u, delta, z: (b, l, d); A: (d, n); B, C: (b, l, n); D, delta_bias: (d); the optional ones may be
// undefined Tensor(). All share one floating dtype and device.
ScanResult selective_scan(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B, const Tensor& C,
                          const Tensor& D = Tensor(), const Tensor& z = Tensor(), const Tensor& delta_bias = Tensor(),
                          bool delta_softplus = false, bool return_last_state = false);
ScanResult selective_scan_reference(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B,
                                    const Tensor& C, const Tensor& D = Tensor(), const Tensor& z = Tensor(),
                                    const Tensor& delta_bias = Tensor(), bool delta_softplus = false,
                                    bool return_last_state = false);

// x (b, l, d), weight (d, k) with k >= 1, bias (d) optional -> (b, l, d).
Tensor causal_conv1d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(), bool apply_silu = false);
Tensor causal_conv1d_reference(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
                               bool apply_silu = false);

}  // namespace mg
