// log_softmax over contiguous rows, and the fused cross_entropy forward and backward. One warp per row
// of up to 1024 values, one block per longer row: the max by a reduction, then sum(exp(x - max)) in
// double in a fixed order (as the cpu keeps that sum in double); the loss is the mean of the per-row
// losses, summed in one block in a fixed tree.
#include <cmath>

#include "cuda/launch.cuh"

namespace mg::cuda {

namespace {

// Which rows a thread works on: one block per row, or (Warp) one warp per row, blockDim.x / 32 rows
// to a block. Rows of at most kWarpRow values take a warp: their reductions are shuffles within the
// warp, with no barrier of the block (PyTorch's softmax does the same for short rows); a block per
// row leaves most of 256 threads waiting at ten barriers for a row of a few hundred values.
constexpr int64_t kWarpRow = 1024;
template <bool Warp>
struct RowSplit {
  __device__ int64_t first() const {
    return Warp ? blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32 : blockIdx.x;
  }
  __device__ int64_t step() const { return Warp ? (int64_t)gridDim.x * (blockDim.x / 32) : gridDim.x; }
  __device__ int64_t lane() const { return Warp ? threadIdx.x % 32 : threadIdx.x; }
  __device__ int64_t lanes() const { return Warp ? 32 : blockDim.x; }
};

// The launch of a kernel over `rows` rows of n values: a warp per row (kThreads / 32 rows a block)
// or a block of row_threads(n) per row.
inline dim3 row_grid(int64_t rows, int64_t n) {
  return n <= kWarpRow ? blocks_for((rows + kThreads / 32 - 1) / (kThreads / 32)) : blocks_for(rows);
}
inline dim3 row_block(int64_t n) { return n <= kWarpRow ? kThreads : row_threads(n); }

// One value per lane combined over the row's lanes by `op`: the block's fixed tree, or the xor
// butterfly of the warp, whose every addition has the same two operands in every lane (so every lane
// ends with the same bits), then lane 0's value (for the max: lanes could keep different NaNs).
template <bool Warp, class T, class Op>
__device__ T row_reduce(T v, Op op) {
  if constexpr (Warp) {
    for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, off));
    return __shfl_sync(0xffffffffu, v, 0);
  } else {
    return block_reduce(v, op);
  }
}

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
    if (n <= kWarpRow)
      log_softmax_kernel<true, scalar_t><<<row_grid(rows, n), row_block(n), 0, stream(device)>>>(px, py, rows, n);
    else
      log_softmax_kernel<false, scalar_t><<<row_grid(rows, n), row_block(n), 0, stream(device)>>>(px, py, rows, n);
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
      if (C <= kWarpRow)
        ce_rows_kernel<true, scalar_t>
            <<<row_grid(N, C), row_block(C), 0, s>>>(px, targets, N, C, ignore_index, pl, row_loss.as<double>());
      else
        ce_rows_kernel<false, scalar_t>
            <<<row_grid(N, C), row_block(C), 0, s>>>(px, targets, N, C, ignore_index, pl, row_loss.as<double>());
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
