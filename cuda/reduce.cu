// Reductions: row sums (sum, mean, sum_to all reduce contiguous rows after ops/reduce.cpp has moved
// the reduced dims last) and max along one dim with its vjp.
//
// Row sums accumulate in double, as on the cpu, and are deterministic: a short row (n <= 32) is
// summed in order by one thread; a longer one by one block, each thread summing a fixed stride of
// the row and the block combining the partials in a fixed tree; when there are few rows, each
// longer than kChunk, every chunk of kChunk elements gets a block and a second pass sums the chunk
// partials in the same way. The order depends only on (rows, n), never on the GPU or the run.
#include <cmath>

#include "cuda/launch.cuh"

namespace mg::cuda {

namespace {

constexpr int64_t kChunk = 16384;

template <class T>
__global__ void short_rows_kernel(const T* x, T* out, int64_t rows, int64_t n, double scale) {
  for (int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; r < rows; r += (int64_t)gridDim.x * blockDim.x) {
    double acc = 0;
    for (int64_t i = 0; i < n; ++i) acc += (double)x[r * n + i];
    out[r] = (T)(acc * scale);
  }
}

// Segment s = (row r, chunk c) of `chunks` per row: out[s] = scale * sum of x[r * n + c * chunk ...]
// over min(chunk, n - c * chunk) elements.
template <class In, class Out>
__global__ void segment_sum_kernel(const In* x, Out* out, int64_t rows, int64_t n, int64_t chunks, int64_t chunk,
                                   double scale) {
  for (int64_t s = blockIdx.x; s < rows * chunks; s += gridDim.x) {
    const int64_t r = s / chunks, c = s % chunks;
    const int64_t begin = c * chunk;
    const int64_t len = n - begin < chunk ? n - begin : chunk;
    const In* p = x + r * n + begin;
    double acc = 0;
    for (int64_t i = threadIdx.x; i < len; i += blockDim.x) acc += (double)p[i];
    acc = block_sum(acc);
    if (threadIdx.x == 0) out[s] = (Out)(acc * scale);
  }
}

template <class T>
__global__ void max_dim_kernel(const T* x, T* values, int64_t* indices, int64_t outer, int64_t n, int64_t inner) {
  for (int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; r < outer * inner;
       r += (int64_t)gridDim.x * blockDim.x) {
    const int64_t o = r / inner, in = r % inner;
    const T* p = x + o * n * inner + in;
    int64_t best = 0;
    T bv = p[0];
    for (int64_t i = 1; i < n; ++i) {
      const T v = p[i * inner];
      if (v > bv || (std::isnan(v) && !std::isnan(bv))) bv = v, best = i;
    }
    values[r] = bv;
    indices[r] = best;
  }
}

template <class T>
__global__ void max_backward_kernel(const T* g, const int64_t* indices, T* dx, int64_t outer, int64_t n,
                                    int64_t inner) {
  for (int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; r < outer * inner;
       r += (int64_t)gridDim.x * blockDim.x) {
    const int64_t o = r / inner, in = r % inner;
    dx[o * n * inner + indices[r] * inner + in] = g[r];
  }
}

}  // namespace

void sum_rows(DType t, const void* x, void* out, int64_t rows, int64_t n, double scale, int device) {
  if (rows == 0) return;
  set_device(device, "sum");
  cudaStream_t s = stream(device);
  MG_DISPATCH_FLOAT(t, "sum", [&] {
    auto* px = static_cast<const scalar_t*>(x);
    auto* po = static_cast<scalar_t*>(out);
    if (n <= 32) {  // also n == 0: every row sums to 0
      short_rows_kernel<scalar_t><<<grid_for(rows), kThreads, 0, s>>>(px, po, rows, n, scale);
      MG_CUDA_LAUNCH_CHECK("sum");
    } else if (rows >= 256 || n <= kChunk) {
      segment_sum_kernel<scalar_t, scalar_t><<<blocks_for(rows), row_threads(n), 0, s>>>(px, po, rows, n, 1, n, scale);
      MG_CUDA_LAUNCH_CHECK("sum");
    } else {
      const int64_t chunks = (n + kChunk - 1) / kChunk;
      Scratch partial((size_t)(rows * chunks) * sizeof(double), device, "sum");
      segment_sum_kernel<scalar_t, double>
          <<<blocks_for(rows * chunks), kThreads, 0, s>>>(px, partial.as<double>(), rows, n, chunks, kChunk, 1.0);
      MG_CUDA_LAUNCH_CHECK("sum");
      segment_sum_kernel<double, scalar_t>
          <<<blocks_for(rows), row_threads(chunks), 0, s>>>(partial.as<double>(), po, rows, chunks, 1, chunks, scale);
      MG_CUDA_LAUNCH_CHECK("sum");
    }
  });
}

void max_dim(DType t, const void* x, void* values, int64_t* indices, int64_t outer, int64_t n, int64_t inner,
             int device) {
  if (outer * inner == 0) return;
  set_device(device, "max");
  MG_DISPATCH_FLOAT(t, "max", [&] {
    max_dim_kernel<scalar_t><<<grid_for(outer * inner), kThreads, 0, stream(device)>>>(
        static_cast<const scalar_t*>(x), static_cast<scalar_t*>(values), indices, outer, n, inner);
  });
  MG_CUDA_LAUNCH_CHECK("max");
}

void max_backward(DType t, const void* g, const int64_t* indices, void* dx, int64_t outer, int64_t n, int64_t inner,
                  int device) {
  if (outer * inner == 0) return;
  set_device(device, "max");
  MG_DISPATCH_FLOAT(t, "max", [&] {
    max_backward_kernel<scalar_t><<<grid_for(outer * inner), kThreads, 0, stream(device)>>>(
        static_cast<const scalar_t*>(g), indices, static_cast<scalar_t*>(dx), outer, n, inner);
  });
  MG_CUDA_LAUNCH_CHECK("max");
}

}  // namespace mg::cuda
