// log_softmax over contiguous rows, and the fused cross_entropy forward and backward. One warp per row
// of up to kWarpRow values, one block per longer row (cuda/launch.cuh): the max by a reduction, then
// sum(exp(x - max)) in double in a fixed order (as the cpu keeps that sum in double); the loss is the
// mean of the per-row losses, summed in one block in a fixed tree.
#include <cmath>

#include "cuda/launch.cuh"

namespace mg::cuda {

namespace {

// log(sum(exp(row))) as the row's max m and log(sum(exp(row - m))), kept apart as on the cpu
// (ops/softmax.cpp: log_softmax is (x - m) - log_sum); every lane of the row gets them.
template <class T>
struct RowLse {
  T max;
  double log_sum;
};
template <bool Warp, class T>
__device__ RowLse<T> row_logsumexp(const T* row, int64_t n) {
  const RowSplit<Warp> rs;
  T m = -INFINITY;
  for (int64_t i = rs.lane(); i < n; i += rs.lanes()) m = m < row[i] ? row[i] : m;
  m = row_reduce<Warp>(m, MaxOp{});
  double s = 0;
  for (int64_t i = rs.lane(); i < n; i += rs.lanes()) s += std::exp((double)(row[i] - m));
  s = row_reduce<Warp>(s, SumOp{});
  return {m, std::log(s)};
}

template <bool Warp, class T>
__global__ void log_softmax_kernel(const T* x, T* y, int64_t rows, int64_t n) {
  const RowSplit<Warp> rs;
  for (int64_t r = rs.first(); r < rows; r += rs.step()) {
    const T* row = x + r * n;
    const RowLse<T> lse = row_logsumexp<Warp>(row, n);
    const T ls = (T)lse.log_sum;
    for (int64_t i = rs.lane(); i < n; i += rs.lanes()) y[r * n + i] = (row[i] - lse.max) - ls;
  }
}

template <bool Warp, class T>
__global__ void ce_rows_kernel(const T* x, const int64_t* targets, int64_t N, int64_t C, int64_t ignore_index, T* lse,
                               double* row_loss) {
  const RowSplit<Warp> rs;
  for (int64_t r = rs.first(); r < N; r += rs.step()) {
    const T* row = x + r * C;
    const RowLse<T> l = row_logsumexp<Warp>(row, C);
    if (rs.lane() == 0) {
      lse[r] = l.max + (T)l.log_sum;
      const int64_t t = targets[r];
      row_loss[r] = t == ignore_index ? 0.0 : ((double)l.max - (double)row[t]) + l.log_sum;
    }
  }
}

template <class T>
__global__ void ce_mean_kernel(const double* row_loss, int64_t N, int64_t count, T* loss) {
  double acc = 0;
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) acc += row_loss[i];
  acc = block_sum(acc);
  if (threadIdx.x == 0) loss[0] = count ? (T)(acc / (double)count) : (T)NAN;
}

template <class T>
__global__ void ce_backward_kernel(const T* x, const T* lse, const int64_t* targets, const T* gloss, int64_t N,
                                   int64_t C, int64_t ignore_index, int64_t count, T* dx) {
  const T scale = count ? (T)((double)gloss[0] / (double)count) : T(0);
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < N * C; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = i / C, c = i % C;
    const int64_t t = targets[r];
    if (t == ignore_index) {
      dx[i] = T(0);
      continue;
    }
    T d = std::exp(x[i] - lse[r]) * scale;
    if (c == t) d -= scale;
    dx[i] = d;
  }
}

}  // namespace

void log_softmax_rows(DType t, const void* x, void* y, int64_t rows, int64_t n, int device) {
  if (rows == 0 || n == 0) return;
  set_device(device, "log_softmax");
  MG_DISPATCH_FLOAT(t, "log_softmax", [&] {
    auto* px = static_cast<const scalar_t*>(x);
    auto* py = static_cast<scalar_t*>(y);
    launch_rows(rows, n, [&](auto warp, dim3 grid, dim3 block) {
      log_softmax_kernel<warp.value, scalar_t><<<grid, block, 0, stream(device)>>>(px, py, rows, n);
    });
  });
  MG_CUDA_LAUNCH_CHECK("log_softmax");
}

void cross_entropy_forward(DType t, const void* logits, const int64_t* targets, int64_t N, int64_t C,
                           int64_t ignore_index, int64_t count, void* lse, void* loss, int device) {
  set_device(device, "cross_entropy");
  cudaStream_t s = stream(device);
  Scratch row_loss((size_t)(N > 0 ? N : 1) * sizeof(double), device, "cross_entropy");
  MG_DISPATCH_FLOAT(t, "cross_entropy", [&] {
    if (N > 0 && C > 0) {
      auto* px = static_cast<const scalar_t*>(logits);
      auto* pl = static_cast<scalar_t*>(lse);
      launch_rows(N, C, [&](auto warp, dim3 grid, dim3 block) {
        ce_rows_kernel<warp.value, scalar_t>
            <<<grid, block, 0, s>>>(px, targets, N, C, ignore_index, pl, row_loss.as<double>());
      });
      MG_CUDA_LAUNCH_CHECK("cross_entropy");
    }
    ce_mean_kernel<scalar_t>
        <<<1, kThreads, 0, s>>>(row_loss.as<double>(), C > 0 ? N : 0, count, static_cast<scalar_t*>(loss));
    MG_CUDA_LAUNCH_CHECK("cross_entropy");
  });
}

void cross_entropy_backward(DType t, const void* logits, const void* lse, const int64_t* targets, const void* gloss,
                            int64_t N, int64_t C, int64_t ignore_index, int64_t count, void* dx, int device) {
  if (N * C == 0) return;
  set_device(device, "cross_entropy");
  MG_DISPATCH_FLOAT(t, "cross_entropy", [&] {
    ce_backward_kernel<scalar_t><<<grid_for(N * C), kThreads, 0, stream(device)>>>(
        static_cast<const scalar_t*>(logits), static_cast<const scalar_t*>(lse), targets,
        static_cast<const scalar_t*>(gloss), N, C, ignore_index, count, static_cast<scalar_t*>(dx));
  });
  MG_CUDA_LAUNCH_CHECK("cross_entropy");
}

}  // namespace mg::cuda
