// The raw arguments of the fused selective scan kernels, shared by the CPU (ops/cpu/selective_scan.h)
// and CUDA (cuda/scan_kernels.h) launchers. Pointers are to contiguous row-major data on the kernels' device;
// the optional inputs and the gradients that are not wanted are null. C++17, so .cu files include it.
#pragma once
#include <cstdint>

namespace mg {

template <class T>
struct ScanArgs {
  int64_t b = 0, l = 0, d = 0, n = 0;
  const T *u = nullptr, *delta = nullptr, *A = nullptr, *B = nullptr, *C = nullptr;  // required
  const T *D = nullptr, *z = nullptr, *delta_bias = nullptr;                         // optional
  bool softplus = false;
};

// Gradients to write (null: not wanted). Shapes as the inputs.
template <class T>
struct ScanGrads {
  T *du = nullptr, *ddelta = nullptr, *dA = nullptr, *dB = nullptr, *dC = nullptr;
  T *dD = nullptr, *dz = nullptr, *ddelta_bias = nullptr;
};

}  // namespace mg
