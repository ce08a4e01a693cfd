// The recurrent-step kernels on CUDA (math: ops/scan.h; the ops: ops/state_update.cpp), one launch
// per op per layer and token. Both are elementwise over (b, d), one thread per (batch row, channel):
//   selective_state_update: the thread reads its channel's n states (contiguous), writes the n new
//     ones and y; the sum over k is the thread's own loop, in k order, so every row's result depends
//     on that row alone (no reduction across threads, no dependence on b or the grid).
//   causal_conv1d_update: the thread reads its k - 1 state values and x, writes y and the shifted state.
// Each thread reads before it writes its own state, so the new state may be the old one's memory.
#include <cuda_runtime.h>

#include <cstdint>

#include "core/unary_functors.h"
#include "cuda/launch.cuh"
#include "cuda/scan_kernels.h"

namespace mg::cuda {

namespace {

__device__ __forceinline__ float exp_of(float x) { return expf(x); }
__device__ __forceinline__ double exp_of(double x) { return exp(x); }

template <class T>
__global__ void state_update_kernel(StateUpdateArgs<T> a, T* y, T* hout) {
  const int64_t m = a.b * a.d;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < m; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t i = e / a.d, c = e % a.d;
    T dt = a.dt[i * a.dt_rs + c];
    if (a.dt_bias) dt += a.dt_bias[c];
    if (a.softplus) dt = fn::softplus(dt);
    const T x = a.x[i * a.x_rs + c], dtx = dt * x;
    const T* h = a.state + e * a.n;
    T* ho = hout + e * a.n;
    const T *Ac = a.A + c * a.A_rs, *Bi = a.B + i * a.B_rs, *Ci = a.C + i * a.C_rs;
    T acc = T(0);
    for (int64_t k = 0; k < a.n; ++k) {
      const T hk = exp_of(dt * Ac[k]) * h[k] + dtx * Bi[k];
      ho[k] = hk;
      acc += hk * Ci[k];
    }
    if (a.D) acc += a.D[c] * x;
    if (a.z) acc = acc * fn::silu(a.z[i * a.z_rs + c]);
    y[e] = acc;
  }
}

template <class T>
__global__ void conv_update_kernel(ConvUpdateArgs<T> a, T* y, T* sout) {
  const int64_t m = a.b * a.d, km = a.k - 1;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < m; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t i = e / a.d, c = e % a.d;
    const T* s = a.state + e * km;
    T* so = sout + e * km;
    const T* w = a.weight + c * a.k;
    const T xv = a.x[i * a.x_rs + c];
    T acc = a.bias ? a.bias[c] : T(0);
    for (int64_t q = 0; q < km; ++q) acc += w[q] * s[q];  // the window, oldest first
    acc += w[km] * xv;
    for (int64_t q = 0; q + 1 < km; ++q) so[q] = s[q + 1];  // ascending: reads q + 1 before it is written
    if (km > 0) so[km - 1] = xv;
    y[e] = a.silu ? fn::silu(acc) : acc;
  }
}

}  // namespace

template <class T>
void selective_state_update(const StateUpdateArgs<T>& a, T* y, T* new_state, int device) {
  set_device(device, "selective_state_update");
  state_update_kernel<T><<<grid_for(a.b * a.d), kThreads, 0, stream(device)>>>(a, y, new_state);
  MG_CUDA_LAUNCH_CHECK("selective_state_update");
}

template <class T>
void causal_conv1d_update(const ConvUpdateArgs<T>& a, T* y, T* new_state, int device) {
  set_device(device, "causal_conv1d_update");
  conv_update_kernel<T><<<grid_for(a.b * a.d), kThreads, 0, stream(device)>>>(a, y, new_state);
  MG_CUDA_LAUNCH_CHECK("causal_conv1d_update");
}

template void selective_state_update<float>(const StateUpdateArgs<float>&, float*, float*, int);
template void selective_state_update<double>(const StateUpdateArgs<double>&, double*, double*, int);
template void causal_conv1d_update<float>(const ConvUpdateArgs<float>&, float*, float*, int);
template void causal_conv1d_update<double>(const ConvUpdateArgs<double>&, double*, double*, int);

}  // namespace mg::cuda
