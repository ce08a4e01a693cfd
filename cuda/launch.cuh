// Shared by the kernel files: dtype dispatch (core/dispatch.h), launch geometry, element offsets of a StridedIter,
// fixed-shape block reductions, the rows of a row-reducing kernel (a warp or a block each), and scratch
// device memory from the caching allocator.
//
// The launch convention of every kernel file: a launcher makes the device current with
// `set_device(device, op)` (cuda/check.cuh), sizes its grid with one of the three helpers below
// (`grid_for` for a grid-stride loop over elements, `blocks_for` for a block-stride loop over
// items, `grid_of` for exactly one block per item), queues the kernel on `stream(device)` and checks
// the launch at once with `MG_CUDA_LAUNCH_CHECK(op)`.
#pragma once
#include <cuda_runtime.h>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "core/dispatch.h"
#include "core/error.h"
#include "cuda/check.cuh"
#include "cuda/kernels.h"
#include "cuda/runtime.h"

namespace mg::cuda {

constexpr int kThreads = 256;                // threads per block of every kernel that takes no other; a power of two
constexpr unsigned kFullMask = 0xffffffffu;  // every lane of a warp, for the __shfl_*_sync intrinsics

// The most blocks a launch of a stride loop gets in one grid dimension (the y and z limit, and a
// grid large enough to fill any device in x).
constexpr int64_t kMaxStrideBlocks = 65535;

// Blocks for a block-stride loop over `items` (items > 0): one block per item (a row, a segment),
// each block taking item blockIdx.x, then blockIdx.x + gridDim.x, ...; capped at kMaxStrideBlocks.
inline unsigned blocks_for(int64_t items) { return (unsigned)(items < kMaxStrideBlocks ? items : kMaxStrideBlocks); }

// Blocks for a grid-stride loop over n elements (n > 0), `threads` per block.
inline unsigned grid_for(int64_t n, int threads = kThreads) { return blocks_for((n + threads - 1) / threads); }

// Threads for a kernel that reduces each row of n values in one block (block_reduce): n rounded up to
// a power of two, at least one warp and at most kThreads. A short row then leaves no threads idle
// through every barrier of the reduction, with the same result: the threads past n hold the
// reduction's identity, which the kThreads-wide tree would only have combined into lanes below n in
// its first steps, leaving them unchanged.
inline int row_threads(int64_t n) {
  int t = 32;
  while (t < kThreads && t < n) t *= 2;
  return t;
}

// Blocks for a launch of one block per item (count > 0), e.g. per chunk of a table of tensors
// (cuda/optim.cu): no grid-stride loop, so every item needs its own block; throws past INT_MAX.
inline unsigned grid_of(size_t count, const char* op) {
  MG_CHECK(count <= (size_t)INT_MAX, "[{}] {} blocks is more than one launch can take", op, count);
  return (unsigned)count;
}

// The launch convention for a grid-stride kernel over n elements, in one place: nothing for n <= 0;
// else the device made current and `launch(scalar_t{}, grid, stream)` run under the dtype dispatch of `op`
// (All: every dtype, else float32 / float64), then the launch checked.
template <bool All = false, class Launch>
void launch_elementwise(DType t, int64_t n, int device, const char* op, Launch&& launch) {
  if (n <= 0) return;
  set_device(device, op);
  const unsigned grid = grid_for(n);
  cudaStream_t s = stream(device);
  if constexpr (All)
    MG_DISPATCH_ALL(t, op, [&] { launch(scalar_t{}, grid, s); });
  else
    MG_DISPATCH_FLOAT(t, op, [&] { launch(scalar_t{}, grid, s); });
  MG_CUDA_LAUNCH_CHECK(op);
}

// Element offsets of element i for each of K operands.
template <int K>
__device__ __forceinline__ void iter_offsets(const StridedIter<K>& it, int64_t i, int64_t (&off)[K]) {
#pragma unroll
  for (int k = 0; k < K; ++k) off[k] = 0;
  if (it.ndim == 1) {
#pragma unroll
    for (int k = 0; k < K; ++k) off[k] = i * it.strides[k][0];
    return;
  }
  for (int d = it.ndim - 1; d >= 0; --d) {
    const int64_t s = it.sizes[d];
    const int64_t idx = i % s;
    i /= s;
#pragma unroll
    for (int k = 0; k < K; ++k) off[k] += idx * it.strides[k][d];
  }
}

// The two combinations of the block reductions: a sum, and a max whose NaN handling follows `a < b ? b : a`.
struct SumOp {
  template <class T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};
struct MaxOp {
  template <class T>
  __device__ T operator()(T a, T b) const {
    return a < b ? b : a;
  }
};

// One value per thread combined over the block by `op` in a fixed tree (same order on every run): lane
// i + blockDim.x/2 into lane i, then i + blockDim.x/4, ... All threads of the block must call it; the
// result is valid in every thread. blockDim.x must be a power of two, at most kThreads (row_threads).
template <class T, class Op>
__device__ T block_reduce(T v, Op op) {
  __shared__ T buf[kThreads];
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int s = (int)blockDim.x / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) {
      const T a = buf[threadIdx.x], b = buf[threadIdx.x + s];  // values, not the emulator's checked references
      buf[threadIdx.x] = op(a, b);
    }
    __syncthreads();
  }
  T r = buf[0];
  __syncthreads();  // buf may be reused by the next call
  return r;
}
template <class T>
__device__ T block_sum(T v) {
  return block_reduce(v, SumOp{});
}

// Kernels that reduce rows of n values (rms_norm, log_softmax, cross_entropy) take one warp per row of up
// to kWarpRow values, kThreads / 32 rows to a block, and one block of row_threads(n) per longer row. A
// warp's reductions are shuffles, with no barrier of the block (PyTorch's softmax and layer norms do
// the same for short rows); a block per row leaves most of its threads waiting at every barrier of a
// short row's tree. RowSplit says which rows a thread works on and which of its values it takes.
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

// One value per lane combined over the row's lanes by `op`: the block's fixed tree, or the xor
// butterfly of the warp, whose every step has the same two operands in every lane (so every lane
// ends with the same bits), then lane 0's value (for the max: lanes could keep different NaNs).
// Every lane of the row must call it.
template <bool Warp, class T, class Op>
__device__ T row_reduce(T v, Op op) {
  if constexpr (Warp) {
    for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_xor_sync(kFullMask, v, off));
    return __shfl_sync(kFullMask, v, 0);
  } else {
    return block_reduce(v, op);
  }
}

// Calls launch(warp, grid, block) for a kernel over `rows` rows of n values (rows > 0): warp is
// std::true_type (a warp per row) where n <= kWarpRow, else std::false_type (a block per row), whose
// `warp.value` is the kernel's template argument.
template <class Launch>
void launch_rows(int64_t rows, int64_t n, Launch&& launch) {
  constexpr int64_t warps = kThreads / 32;
  if (n <= kWarpRow)
    launch(std::true_type{}, dim3(blocks_for((rows + warps - 1) / warps)), dim3(kThreads));
  else
    launch(std::false_type{}, dim3(blocks_for(rows)), dim3(row_threads(n)));
}

// Scratch device memory for the length of one launcher call. Freeing it right after the kernels
// are queued is safe: the next user of the block is queued after them on the same stream.
class Scratch {
 public:
  Scratch(size_t nbytes, int device, const char* op) : device_(device), p_(device_malloc(nbytes, device, op)) {}
  ~Scratch() { device_free(p_, device_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }

 private:
  int device_;
  void* p_;
};

}  // namespace mg::cuda
