// Shared by the kernel files: dtype dispatch, launch geometry, element offsets of a StridedIter,
// fixed-shape block reductions, and scratch device memory from the caching allocator.
#pragma once
#include <cuda_runtime.h>

#include <climits>
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "cuda/check.cuh"
#include "cuda/kernels.h"
#include "cuda/runtime.h"

namespace mg::cuda {

constexpr int kThreads = 256;  // threads per block of every kernel that takes no other; a power of two

// Blocks for a grid-stride loop over n elements (n > 0).
inline unsigned grid_for(int64_t n, int threads = kThreads) {
  int64_t b = (n + threads - 1) / threads;
  return (unsigned)(b < 65535 ? b : 65535);
}

// Blocks for a launch of one block per item (count > 0), e.g. per chunk of a table of tensors
// (cuda/optim.cu): no grid-stride loop, so every item needs its own block; throws past INT_MAX.
inline unsigned grid_of(size_t count, const char* op) {
  MG_CHECK(count <= (size_t)INT_MAX, "[{}] {} blocks is more than one launch can take", op, count);
  return (unsigned)count;
}

// Before a launch: the device is current. After: MG_CUDA_LAUNCH_CHECK.
inline void set_device(int device, const char* op) { MG_CUDA_CHECK(cudaSetDevice(device), op); }

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

// Sum over the block of one value per thread, in a fixed tree (same order on every run). All threads
// of the block must call it; the result is valid in every thread. blockDim.x must be kThreads.
template <class T>
__device__ T block_sum(T v) {
  __shared__ T buf[kThreads];
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
    __syncthreads();
  }
  T r = buf[0];
  __syncthreads();  // buf may be reused by the next call
  return r;
}

// Max over the block (order does not matter for max; NaN handling follows `a < b ? b : a`).
template <class T>
__device__ T block_max(T v) {
  __shared__ T buf[kThreads];
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) {
      T a = buf[threadIdx.x], b = buf[threadIdx.x + s];
      buf[threadIdx.x] = a < b ? b : a;
    }
    __syncthreads();
  }
  T r = buf[0];
  __syncthreads();
  return r;
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

// Runs the body with scalar_t bound to float or double.
#define MG_CUDA_DISPATCH_FLOAT(dtype, op, ...)                                                   \
  do {                                                                                           \
    switch (dtype) {                                                                             \
      case ::mg::DType::f32: {                                                                   \
        using scalar_t = float;                                                                  \
        __VA_ARGS__;                                                                             \
        break;                                                                                   \
      }                                                                                          \
      case ::mg::DType::f64: {                                                                   \
        using scalar_t = double;                                                                 \
        __VA_ARGS__;                                                                             \
        break;                                                                                   \
      }                                                                                          \
      default:                                                                                   \
        MG_THROW("[{}] expects float32 or float64 on cuda, got {}", op, ::mg::dtype_name(dtype)); \
    }                                                                                            \
  } while (0)

#define MG_CUDA_DISPATCH_ALL(dtype, op, ...)  \
  do {                                        \
    switch (dtype) {                          \
      case ::mg::DType::f32: {                \
        using scalar_t = float;               \
        __VA_ARGS__;                          \
        break;                                \
      }                                       \
      case ::mg::DType::f64: {                \
        using scalar_t = double;              \
        __VA_ARGS__;                          \
        break;                                \
      }                                       \
      case ::mg::DType::i64: {                \
        using scalar_t = int64_t;             \
        __VA_ARGS__;                          \
        break;                                \
      }                                       \
    }                                         \
  } while (0)
