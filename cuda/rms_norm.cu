// Fused rms_norm: the forward and the row part of the vjp take one warp per row of up to kWarpRow values
// and one block per longer row (cuda/launch.cuh), with sums of squares and dot products in double in a
// fixed order; dw sums over rows in two passes, fixed chunks of kRowChunk rows then the chunk partials
// in order, so it is deterministic without atomics.
#include <cmath>

#include "cuda/launch.cuh"

namespace mg::cuda {

namespace {

constexpr int64_t kRowChunk = 64;

template <bool Warp, class T>
__global__ void rms_forward_kernel(const T* x, const T* w, T* out, T* rstd, int64_t rows, int64_t D, double eps) {
  const RowSplit<Warp> rs;
  for (int64_t r = rs.first(); r < rows; r += rs.step()) {
    const T* xr = x + r * D;
    double ss = 0;
    for (int64_t i = rs.lane(); i < D; i += rs.lanes()) ss += (double)xr[i] * xr[i];
    ss = row_reduce<Warp>(ss, SumOp{});
    const T inv = (T)(1.0 / std::sqrt(ss / (double)D + eps));
    if (rs.lane() == 0) rstd[r] = inv;
    for (int64_t i = rs.lane(); i < D; i += rs.lanes()) out[r * D + i] = xr[i] * inv * w[i];
  }
}

template <bool Warp, class T>
__global__ void rms_backward_dx_kernel(const T* x, const T* w, const T* g, const T* rstd, T* dx, int64_t rows,
                                       int64_t D) {
  const RowSplit<Warp> rs;
  for (int64_t r = rs.first(); r < rows; r += rs.step()) {
    const T *xr = x + r * D, *gr = g + r * D;
    const T inv = rstd[r];
    double dot = 0;  // sum(g * w * xhat)
    for (int64_t i = rs.lane(); i < D; i += rs.lanes()) dot += (double)gr[i] * w[i] * xr[i] * inv;
    dot = row_reduce<Warp>(dot, SumOp{});
    const T c = (T)(dot / (double)D);
    for (int64_t i = rs.lane(); i < D; i += rs.lanes()) dx[r * D + i] = inv * (gr[i] * w[i] - xr[i] * inv * c);
  }
}

// partial[chunk, j] = sum over the chunk's rows of g * x * rstd (column j).
template <class T>
__global__ void rms_dw_partial_kernel(const T* x, const T* g, const T* rstd, double* partial, int64_t rows, int64_t D,
                                      int64_t chunks) {
  for (int64_t c = blockIdx.y; c < chunks; c += gridDim.y) {
    const int64_t r0 = c * kRowChunk, r1 = r0 + kRowChunk < rows ? r0 + kRowChunk : rows;
    for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < D; j += (int64_t)gridDim.x * blockDim.x) {
      double acc = 0;
      for (int64_t r = r0; r < r1; ++r) acc += (double)g[r * D + j] * x[r * D + j] * rstd[r];
      partial[c * D + j] = acc;
    }
  }
}

template <class T>
__global__ void rms_dw_final_kernel(const double* partial, T* dw, int64_t D, int64_t chunks) {
  for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < D; j += (int64_t)gridDim.x * blockDim.x) {
    double acc = 0;
    for (int64_t c = 0; c < chunks; ++c) acc += partial[c * D + j];
    dw[j] = (T)acc;
  }
}

}  // namespace

void rms_norm_forward(DType t, const void* x, const void* w, void* out, void* rstd, int64_t rows, int64_t D, double eps,
                      int device) {
  if (rows == 0) return;
  set_device(device, "rms_norm");
  MG_DISPATCH_FLOAT(t, "rms_norm", [&] {
    launch_rows(rows, D, [&](auto warp, dim3 grid, dim3 block) {
      rms_forward_kernel<warp.value, scalar_t>
          <<<grid, block, 0, stream(device)>>>(static_cast<const scalar_t*>(x), static_cast<const scalar_t*>(w),
                                               static_cast<scalar_t*>(out), static_cast<scalar_t*>(rstd), rows, D, eps);
    });
  });
  MG_CUDA_LAUNCH_CHECK("rms_norm");
}

void rms_norm_backward(DType t, const void* x, const void* w, const void* g, const void* rstd, void* dx, void* dw,
                       int64_t rows, int64_t D, int device) {
  if (D == 0) return;
  set_device(device, "rms_norm");
  cudaStream_t s = stream(device);
  MG_DISPATCH_FLOAT(t, "rms_norm", [&] {
    auto* px = static_cast<const scalar_t*>(x);
    auto* pg = static_cast<const scalar_t*>(g);
    auto* pr = static_cast<const scalar_t*>(rstd);
    if (dx && rows > 0) {
      launch_rows(rows, D, [&](auto warp, dim3 grid, dim3 block) {
        rms_backward_dx_kernel<warp.value, scalar_t>
            <<<grid, block, 0, s>>>(px, static_cast<const scalar_t*>(w), pg, pr, static_cast<scalar_t*>(dx), rows, D);
      });
      MG_CUDA_LAUNCH_CHECK("rms_norm");
    }
    if (dw) {
      const int64_t chunks = (rows + kRowChunk - 1) / kRowChunk;
      Scratch partial((size_t)((chunks > 0 ? chunks : 1) * D) * sizeof(double), device, "rms_norm");
      const unsigned col_blocks = grid_for(D);
      if (chunks > 0) {
        rms_dw_partial_kernel<scalar_t><<<dim3(col_blocks, blocks_for(chunks)), kThreads, 0, s>>>(
            px, pg, pr, partial.as<double>(), rows, D, chunks);
        MG_CUDA_LAUNCH_CHECK("rms_norm");
      }
      rms_dw_final_kernel<scalar_t>
          <<<col_blocks, kThreads, 0, s>>>(partial.as<double>(), static_cast<scalar_t*>(dw), D, chunks);
      MG_CUDA_LAUNCH_CHECK("rms_norm");
    }
  });
}

}  // namespace mg::cuda
