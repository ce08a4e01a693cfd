// The raw arguments of the fused selective scan kernels, shared by the CPU (ops/cpu/selective_scan.h)
// and CUDA (cuda/scan_kernels.h) launchers. Pointers are to row-major data on the kernels' device, contiguous
// except z, B and C, whose rows may be further apart (the row strides below); the optional inputs and the
// gradients that are not wanted are null; the gradients are contiguous. C++17, so .cu files include it.
#pragma once
#include <cstdint>

namespace mg {

template <class T>
struct ScanArgs {
  int64_t b = 0, l = 0, d = 0, n = 0;
  const T *u = nullptr, *delta = nullptr, *A = nullptr, *B = nullptr, *C = nullptr;  // required
  const T *D = nullptr, *z = nullptr, *delta_bias = nullptr;                         // optional
  const T* h0 = nullptr;  // optional (b, d, n): the state before the first step (null: zeros)
  // Row (i, t) of z (b, l, d) starts at z + (i l + t) z_rs, of B and C (b, l, n) at B + (i l + t) B_rs and
  // C + (i l + t) C_rs; elements within a row are adjacent. d and n for contiguous tensors; wider for the
  // narrows of a projection's output (the Mamba layer's z, B and C), which are then read in place.
  int64_t z_rs = 0, B_rs = 0, C_rs = 0;
  bool softplus = false;
};

// Gradients to write (null: not wanted). Shapes as the inputs.
template <class T>
struct ScanGrads {
  T *du = nullptr, *ddelta = nullptr, *dA = nullptr, *dB = nullptr, *dC = nullptr;
  T *dD = nullptr, *dz = nullptr, *ddelta_bias = nullptr;
  T* dh0 = nullptr;  // (b, d, n), the gradient of ScanArgs::h0 (which must be set when this is)
};

}  // namespace mg

namespace mg {

// The raw arguments of the recurrent-step kernels (selective_state_update, ops/state_update.cpp).
// x, dt, z (b, d) and B, C (b, n) are read at row i from ptr + i * row stride (inner stride 1), so
// that narrows of a wider projection's output need no copy; A (d, n) likewise with its row stride.
// state (b, d, n) is contiguous; D and dt_bias (d) are contiguous; the optional ones are null.
template <class T>
struct StateUpdateArgs {
  int64_t b = 0, d = 0, n = 0;
  const T* state = nullptr;  // (b, d, n), may be the same memory as the new state (in place)
  const T *x = nullptr, *dt = nullptr, *z = nullptr, *A = nullptr, *B = nullptr, *C = nullptr;
  int64_t x_rs = 0, dt_rs = 0, z_rs = 0, A_rs = 0, B_rs = 0, C_rs = 0;  // row strides, in elements
  const T *D = nullptr, *dt_bias = nullptr;
  bool softplus = false;
};

// The conv's step: conv_state (b, d, k - 1) contiguous (may be the new state's memory), x (b, d)
// with row stride x_rs, weight (d, k) and bias (d) contiguous (bias optional).
template <class T>
struct ConvUpdateArgs {
  int64_t b = 0, d = 0, k = 0;
  const T* state = nullptr;
  const T* x = nullptr;
  int64_t x_rs = 0;
  const T *weight = nullptr, *bias = nullptr;
  bool silu = false;
};

}  // namespace mg
