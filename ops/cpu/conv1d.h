// The CPU kernels of causal_conv1d (ops/causal_conv1d.cpp has the definition and the autograd):
// depthwise over time, one pass over the rows of each sequence, vectorised over channels (ops/cpu/vec.h).
#pragma once
#include <cstdint>

namespace mg::cpu {

template <class T>
struct Conv1dArgs {
  const T* x;  // x(i, t, c) = x[i * xs0 + t * xs1 + c]: channels contiguous, any row strides
  int64_t xs0, xs1;
  const T* w;     // the weight (d, k)
  const T* bias;  // (d) or null
  const T* init;  // (b, d, k - 1), the inputs at times -(k-1) .. -1, or null (zeros)
  int64_t b, l, d, k;
  bool silu;
  // With silu, the forward's output y (b, l, d), contiguous, or null: the backward then takes silu's
  // sigmoid as y / pre (1/2 where |pre| < 2^-60) instead of computing an exponential; else it recomputes it.
  const T* y = nullptr;
};

// y (b, l, d), contiguous: silu(pre) or pre.
template <class T>
void conv1d_forward(const Conv1dArgs<T>& a, T* y);

// The vjp from dy (b, l, d), contiguous. Any output may be null (not needed): dx (b, l, d), dw (d, k),
// db (d), dinit (b, d, k - 1). dw and db are summed per sequence in T, then over the sequences in order
// in double: the same bits for any thread count.
template <class T>
void conv1d_backward(const Conv1dArgs<T>& a, const T* dy, T* dx, T* dw, T* db, T* dinit);

}  // namespace mg::cpu
