// causal_conv1d (+silu) on CUDA, forward and backward (docs/design.md#causal-depthwise-conv;
// the op is ops/causal_conv1d.cpp):
//     pre[t, c] = bias[c] + sum_{j<k} w[c, j] x[t-(k-1)+j, c],  y = silu(pre),
// where x at the negative times -(k-1) .. -1 is init[:, c, 0 .. k-2] (the initial conv state, oldest
// first) or zero when init is null. The gradient of init is its own small kernel over (b, d, k-1).
// Forward and dx are elementwise over (b, l, d) with c fastest (coalesced); each output reads its k
// inputs, which the caches share between neighbouring time steps. The backward first writes
// dpre = dy * silu'(pre) (pre recomputed) when silu is on. dweight and dbias are sums over (b, l):
// blocks of 32 channels (lanes) x 8 warps each sum a fixed range of rows in row order (in float64),
// the warps' sums are added in warp order, and a last kernel adds the blocks' partials in order, so
// the result is bit-identical run to run. Any k >= 1: taps are handled kTapGroup at a time.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/check.cuh"
#include "cuda/launch.cuh"
#include "cuda/scan_kernels.h"

namespace mg::cuda {

namespace {

constexpr int kLanes = 32, kWarps = 8, kTapGroup = 8;
constexpr int64_t kRowsPerBlock = 512;  // target rows of (b*l) per block of the dweight reduction
constexpr int64_t kMaxRowBlocks = 256;

__device__ __forceinline__ float sigmoid_of(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ double sigmoid_of(double x) { return 1.0 / (1.0 + exp(-x)); }

// The input at time s < 0 of row r = i * l + t: init[i, c, s + (k-1)] (zero without init).
template <class T>
__device__ __forceinline__ T conv_before(const T* init, int64_t r, int64_t l, int64_t s, int64_t c, int64_t d,
                                         int64_t k) {
  return init ? init[((r / l) * d + c) * (k - 1) + (s + k - 1)] : T(0);
}

template <class T>
__device__ __forceinline__ T conv_pre(const T* x, const T* w, const T* bias, const T* init, int64_t r, int64_t l,
                                      int64_t t, int64_t c, int64_t d, int64_t k) {
  T acc = bias ? bias[c] : T(0);
  for (int64_t j = 0; j < k; ++j) {
    const int64_t s = t - (k - 1) + j;
    if (s >= 0)
      acc += w[c * k + j] * x[(r - t + s) * d + c];
    else if (init)
      acc += w[c * k + j] * conv_before(init, r, l, s, c, d, k);
  }
  return acc;
}

template <class T>
__global__ void conv_forward_kernel(const T* x, const T* w, const T* bias, const T* init, int64_t b, int64_t l,
                                    int64_t d, int64_t k, bool apply_silu, T* out) {
  const int64_t m = b * l * d;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < m; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t c = e % d, r = e / d, t = r % l;
    const T pre = conv_pre(x, w, bias, init, r, l, t, c, d, k);
    out[e] = apply_silu ? pre * sigmoid_of(pre) : pre;
  }
}

template <class T>
__global__ void conv_dpre_kernel(const T* x, const T* w, const T* bias, const T* init, const T* dout, int64_t b,
                                 int64_t l, int64_t d, int64_t k, T* dpre) {
  const int64_t m = b * l * d;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < m; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t c = e % d, r = e / d, t = r % l;
    const T pre = conv_pre(x, w, bias, init, r, l, t, c, d, k), sg = sigmoid_of(pre);
    dpre[e] = dout[e] * sg * (T(1) + pre * (T(1) - sg));
  }
}

// dx[s, c] = sum_j w[c, j] dpre[s + (k-1) - j, c] over the steps inside the sequence.
template <class T>
__global__ void conv_dx_kernel(const T* w, const T* dpre, int64_t b, int64_t l, int64_t d, int64_t k, T* dx) {
  const int64_t m = b * l * d;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < m; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t c = e % d, r = e / d, s = r % l;
    T acc = T(0);
    for (int64_t j = 0; j < k; ++j) {
      const int64_t t = s + (k - 1) - j;
      if (t < l) acc += w[c * k + j] * dpre[(r - s + t) * d + c];
    }
    dx[e] = acc;
  }
}

// dinit[i, c, m] = sum_{j <= m, m - j < l} w[c, j] dpre[i, m - j, c]: the taps that reach back to the
// input at time m - (k-1) < 0. One thread per element of (b, d, k-1); k > 1.
template <class T>
__global__ void conv_dinit_kernel(const T* w, const T* dpre, int64_t b, int64_t l, int64_t d, int64_t k, T* dinit) {
  const int64_t km = k - 1, m_all = b * d * km;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < m_all; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t m = e % km, c = (e / km) % d, i = e / (km * d);
    T acc = T(0);
    for (int64_t j = 0; j <= m; ++j)
      if (m - j < l) acc += w[c * k + j] * dpre[(i * l + m - j) * d + c];
    dinit[e] = acc;
  }
}

// Partial sums of taps [j0, j0 + kTapGroup) (tap k is the bias) over rows [blockIdx.y * rows_per_block, ...)
// for channels blockIdx.x * 32 + lane: partials[(row_block * (k+1) + tap) * d + c].
template <class T>
__global__ void __launch_bounds__(kLanes* kWarps)
    conv_dw_kernel(const T* x, const T* init, const T* dpre, int64_t rows, int64_t l, int64_t d, int64_t k,
                   int64_t rows_per_block, double* partials) {
  __shared__ double red[kWarps][kTapGroup][kLanes];
  const int lane = threadIdx.x, w = threadIdx.y;
  const int64_t c = blockIdx.x * (int64_t)kLanes + lane, j0 = blockIdx.z * (int64_t)kTapGroup;
  const int64_t taps = k + 1;
  const int64_t r_begin = blockIdx.y * rows_per_block;
  const int64_t r_end = r_begin + rows_per_block < rows ? r_begin + rows_per_block : rows;
  const int64_t per_warp = (rows_per_block + kWarps - 1) / kWarps;
  const int64_t w_begin = r_begin + w * per_warp;
  const int64_t w_end = w_begin + per_warp < r_end ? w_begin + per_warp : r_end;
  double acc[kTapGroup];
#pragma unroll
  for (int q = 0; q < kTapGroup; ++q) acc[q] = 0.0;
  if (c < d) {
    for (int64_t r = w_begin; r < w_end; ++r) {
      const int64_t t = r % l;
      const T gr = dpre[r * d + c];
#pragma unroll
      for (int q = 0; q < kTapGroup; ++q) {
        const int64_t j = j0 + q;
        if (j < k) {
          const int64_t s = t - (k - 1) + j;
          if (s >= 0)
            acc[q] += (double)(gr * x[(r - t + s) * d + c]);
          else if (init)
            acc[q] += (double)(gr * conv_before(init, r, l, s, c, d, k));
        } else if (j == k) {
          acc[q] += (double)gr;
        }
      }
    }
  }
#pragma unroll
  for (int q = 0; q < kTapGroup; ++q) red[w][q][lane] = acc[q];
  __syncthreads();
  if (w == 0 && c < d) {
    for (int q = 0; q < kTapGroup; ++q) {
      const int64_t j = j0 + q;
      if (j >= taps) break;
      double s = 0.0;
      for (int ww = 0; ww < kWarps; ++ww) s += red[ww][q][lane];
      partials[(blockIdx.y * taps + j) * d + c] = s;
    }
  }
}

template <class T>
__global__ void conv_dw_finish_kernel(const double* partials, int64_t row_blocks, int64_t d, int64_t k, T* dw,
                                      T* dbias) {
  const int64_t taps = k + 1, m = taps * d;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < m; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t j = e / d, c = e % d;
    double s = 0.0;
    for (int64_t q = 0; q < row_blocks; ++q) s += partials[q * m + e];
    if (j < k) {
      if (dw) dw[c * k + j] = (T)s;
    } else if (dbias) {
      dbias[c] = (T)s;
    }
  }
}

template <class T>
__global__ void zero_kernel(T* p, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    p[i] = T(0);
}

// p[0, n) = 0; nothing for a null or empty p.
template <class T>
void zero(T* p, int64_t n, cudaStream_t st) {
  if (!p || n <= 0) return;
  zero_kernel<T><<<grid_for(n), kThreads, 0, st>>>(p, n);
  MG_CUDA_LAUNCH_CHECK("causal_conv1d");
}

int64_t row_blocks(int64_t rows) {
  const int64_t r = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  return r < 1 ? 1 : (r > kMaxRowBlocks ? kMaxRowBlocks : r);
}

}  // namespace

int64_t causal_conv1d_partials(int64_t b, int64_t l, int64_t d, int64_t k) { return row_blocks(b * l) * (k + 1) * d; }

template <class T>
void causal_conv1d_forward(const T* x, const T* w, const T* bias, const T* init, int64_t b, int64_t l, int64_t d,
                           int64_t k, bool apply_silu, T* out, int device) {
  if (b * l * d == 0) return;  // empty inputs launch nothing (a grid of 0 blocks is an invalid launch)
  set_device(device, "causal_conv1d");
  conv_forward_kernel<T>
      <<<grid_for(b * l * d), kThreads, 0, stream(device)>>>(x, w, bias, init, b, l, d, k, apply_silu, out);
  MG_CUDA_LAUNCH_CHECK("causal_conv1d");
}

template <class T>
void causal_conv1d_backward(const T* x, const T* w, const T* bias, const T* init, const T* dout, int64_t b, int64_t l,
                            int64_t d, int64_t k, bool apply_silu, T* dpre, T* dx, T* dw, T* dbias, T* dinit,
                            double* partials, int device) {
  set_device(device, "causal_conv1d");
  MG_CHECK(!apply_silu || dpre, "[causal_conv1d] internal error: the silu backward needs its dpre buffer");
  MG_CHECK(!(dw || dbias) || partials, "[causal_conv1d] internal error: dweight needs its partials");
  cudaStream_t st = stream(device);
  const int64_t m = b * l * d;
  if (m == 0) {  // no output: the gradients are sums of nothing (dx is empty), as on the cpu
    zero(dw, d * k, st);
    zero(dbias, d, st);
    zero(dinit, b * d * (k - 1), st);
    return;
  }
  const T* g = dout;
  if (apply_silu) {
    conv_dpre_kernel<T><<<grid_for(m), kThreads, 0, st>>>(x, w, bias, init, dout, b, l, d, k, dpre);
    MG_CUDA_LAUNCH_CHECK("causal_conv1d");
    g = dpre;
  }
  if (dx) {
    conv_dx_kernel<T><<<grid_for(m), kThreads, 0, st>>>(w, g, b, l, d, k, dx);
    MG_CUDA_LAUNCH_CHECK("causal_conv1d");
  }
  if (dinit && k > 1) {
    conv_dinit_kernel<T><<<grid_for(b * d * (k - 1)), kThreads, 0, st>>>(w, g, b, l, d, k, dinit);
    MG_CUDA_LAUNCH_CHECK("causal_conv1d");
  }
  if (dw || dbias) {
    const int64_t rows = b * l, rb = row_blocks(rows), rows_per_block = (rows + rb - 1) / rb;
    const int64_t groups = (d + kLanes - 1) / kLanes, tap_groups = (k + 1 + kTapGroup - 1) / kTapGroup;
    MG_CHECK(groups < INT32_MAX && tap_groups < 65536, "[causal_conv1d] d = {} or k = {} is too large for the grid", d,
             k);
    dim3 grid((unsigned)groups, (unsigned)rb, (unsigned)tap_groups);
    conv_dw_kernel<T><<<grid, dim3(kLanes, kWarps), 0, st>>>(x, init, g, rows, l, d, k, rows_per_block, partials);
    MG_CUDA_LAUNCH_CHECK("causal_conv1d");
    conv_dw_finish_kernel<T><<<grid_for((k + 1) * d), kThreads, 0, st>>>(partials, rb, d, k, dw, dbias);
    MG_CUDA_LAUNCH_CHECK("causal_conv1d");
  }
}

template void causal_conv1d_forward<float>(const float*, const float*, const float*, const float*, int64_t, int64_t,
                                           int64_t, int64_t, bool, float*, int);
template void causal_conv1d_forward<double>(const double*, const double*, const double*, const double*, int64_t,
                                            int64_t, int64_t, int64_t, bool, double*, int);
template void causal_conv1d_backward<float>(const float*, const float*, const float*, const float*, const float*,
                                            int64_t, int64_t, int64_t, int64_t, bool, float*, float*, float*, float*,
                                            float*, double*, int);
template void causal_conv1d_backward<double>(const double*, const double*, const double*, const double*, const double*,
                                             int64_t, int64_t, int64_t, int64_t, bool, double*, double*, double*,
                                             double*, double*, double*, int);

}  // namespace mg::cuda
