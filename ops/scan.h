// The Mamba scan ops, fused on the CPU with composed references (math and gradients: docs/design.md).
//
// selective_scan: for each batch, channel c and state k, starting from h[-1] = initial_state (zeros
// when it is undefined),
//     dt[t] = softplus(delta[t] + delta_bias[c])   (softplus only when delta_softplus)
//     h[t]  = exp(dt[t] A[c,k]) h[t-1] + dt[t] B[t,k] u[t]
//     y[t]  = sum_k C[t,k] h[t,k] + D[c] u[t],   out = y * silu(z) when z is given.
// The fused op never holds a (b, l, d, n) tensor: the forward keeps the state of one block of
// channels in registers/locals and saves for backward only its inputs and the state at the end of
// every kScanChunk time steps; the backward recomputes each chunk's states from the saved start
// state and runs the reverse recurrence (ops/cpu/selective_scan.cpp). Gradients are bit-identical
// across runs and thread counts. The returned last_state (b, d, n), when requested, is
// differentiable: its gradient is the reverse recurrence's starting dh. The initial state is
// differentiable too: its gradient is the dh that the reverse recurrence carries past t = 0,
// dh0 = dL/dh[0] * exp(dt[0] A). A sequence cut in pieces therefore runs piece by piece, each piece's
// last_state the next one's initial_state, with the same outputs and gradients as in one call.
//
// causal_conv1d: depthwise over time, y[t, c] = bias[c] + sum_{j<k} weight[c, j] x[t-(k-1)+j, c], then
// silu when apply_silu. The inputs at negative times are the optional initial_state (b, d, k-1), the
// previous k-1 inputs oldest first (the conv state of causal_conv1d_update), or zeros without one.
// causal_conv1d_with_state also returns the final state, the last k-1 inputs of [initial_state, x],
// to start the next piece from; both states are differentiable.
//
// selective_state_update and causal_conv1d_update: one time step of each for decoding, one token per
// sequence (ops/state_update.cpp, docs/design.md#the-recurrent-step-ops); stepping them over a
// sequence from zero states gives the two sequence ops above.
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

// u, delta, z: (b, l, d); A: (d, n); B, C: (b, l, n); D, delta_bias: (d); initial_state: (b, d, n); the
// optional ones may be undefined Tensor(). All share one floating dtype and device. Without an
// initial state the scan starts from zeros.
ScanResult selective_scan(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B, const Tensor& C,
                          const Tensor& D = Tensor(), const Tensor& z = Tensor(), const Tensor& delta_bias = Tensor(),
                          bool delta_softplus = false, bool return_last_state = false,
                          const Tensor& initial_state = Tensor());
ScanResult selective_scan_reference(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B,
                                    const Tensor& C, const Tensor& D = Tensor(), const Tensor& z = Tensor(),
                                    const Tensor& delta_bias = Tensor(), bool delta_softplus = false,
                                    bool return_last_state = false, const Tensor& initial_state = Tensor());

// x (b, l, d), weight (d, k) with k >= 1, bias (d) optional, initial_state (b, d, k-1) optional (for
// k = 1 it is (b, d, 0)) -> (b, l, d).
Tensor causal_conv1d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(), bool apply_silu = false,
                     const Tensor& initial_state = Tensor());
Tensor causal_conv1d_reference(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
                               bool apply_silu = false, const Tensor& initial_state = Tensor());
struct ConvResult {
  Tensor y;            // (b, l, d)
  Tensor final_state;  // (b, d, k - 1): the last k - 1 inputs of [initial_state, x] along time, oldest first
};
// causal_conv1d and its final state, the initial_state of the next piece of the sequence (zeros stand
// for a missing initial state when l < k - 1). Differentiable in both outputs.
ConvResult causal_conv1d_with_state(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
                                    bool apply_silu = false, const Tensor& initial_state = Tensor());
ConvResult causal_conv1d_with_state_reference(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
                                              bool apply_silu = false, const Tensor& initial_state = Tensor());

// One time step of selective_scan for a batch of single tokens (decoding):
//   dt = softplus(dt + dt_bias[c]) (softplus when dt_softplus), h' = exp(dt A[c,k]) h + dt B[k] x,
//   y = sum_k C[k] h'[k] + D[c] x, out = y * silu(z) when z is given.
// state (b, d, n); x, dt, z: (b, d); A (d, n); B, C: (b, n); D, dt_bias: (d); optional ones may be undefined.
// x, dt, z, B, C and A may be views with any row stride (inner stride 1 is read without a copy).
// Differentiable in every input, the state included, and through both outputs.
struct StateUpdateResult {
  Tensor y;      // (b, d)
  Tensor state;  // the new state (b, d, n)
};
StateUpdateResult selective_state_update(const Tensor& state, const Tensor& x, const Tensor& dt, const Tensor& A,
                                         const Tensor& B, const Tensor& C, const Tensor& D = Tensor(),
                                         const Tensor& z = Tensor(), const Tensor& dt_bias = Tensor(),
                                         bool dt_softplus = false);
// The same in place for decoding: overwrites `state` with the new state and writes y into `out` (b, d);
// records nothing; throws (naming the op) when grad mode is on and any input requires grad, when
// state/out are not contiguous or have the wrong shape/dtype/device. No allocation (unless an input's
// inner stride is not 1, when it is copied first).
void selective_state_update_(Tensor& state, const Tensor& x, const Tensor& dt, const Tensor& A, const Tensor& B,
                             const Tensor& C, const Tensor& D, const Tensor& z, const Tensor& dt_bias, bool dt_softplus,
                             Tensor& out);
StateUpdateResult selective_state_update_reference(const Tensor& state, const Tensor& x, const Tensor& dt,
                                                   const Tensor& A, const Tensor& B, const Tensor& C,
                                                   const Tensor& D = Tensor(), const Tensor& z = Tensor(),
                                                   const Tensor& dt_bias = Tensor(), bool dt_softplus = false);

// The conv's step: conv_state (b, d, k - 1) holds the last k - 1 inputs, oldest first (it is the
// zero padding at the start of a sequence); window = [conv_state, x] (k values per channel);
//   out[c] = bias[c] + sum_j weight[c, j] window[c, j], then silu when apply_silu; new state = window[1:].
// x (b, d), weight (d, k) (k >= 1; for k == 1 the state is (b, d, 0)), bias (d) optional.
struct ConvUpdateResult {
  Tensor y;      // (b, d)
  Tensor state;  // the new state (b, d, k - 1)
};
ConvUpdateResult causal_conv1d_update(const Tensor& conv_state, const Tensor& x, const Tensor& weight,
                                      const Tensor& bias = Tensor(), bool apply_silu = false);
// In place, like selective_state_update_: conv_state becomes the new state, y goes into out (b, d).
void causal_conv1d_update_(Tensor& conv_state, const Tensor& x, const Tensor& weight, const Tensor& bias,
                           bool apply_silu, Tensor& out);
ConvUpdateResult causal_conv1d_update_reference(const Tensor& conv_state, const Tensor& x, const Tensor& weight,
                                                const Tensor& bias = Tensor(), bool apply_silu = false);

}  // namespace mg
