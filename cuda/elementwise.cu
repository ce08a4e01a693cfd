// Elementwise kernels: broadcasting binary ops, the unary functions of core/unary_ops.h and
// their derivatives, and the in-place updates (dst += alpha * src, dst *= s). One grid-stride
// kernel per shape of work; operands are addressed through a StridedIter (contiguous operands
// coalesce to one dim, so the common case does no index division).
#include "cuda/launch.cuh"
#include "core/unary_ops.h"

namespace mg::cuda {

namespace {

template <class T, BinaryOp op>
__device__ __forceinline__ T bin(T a, T b) {
  if constexpr (op == BinaryOp::add) return a + b;
  if constexpr (op == BinaryOp::sub) return a - b;
  if constexpr (op == BinaryOp::mul) return a * b;
  if constexpr (op == BinaryOp::div) return a / b;
}

template <class T, BinaryOp op>
__global__ void binary_kernel(T* out, const T* a, const T* b, StridedIter<3> it) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < it.numel; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t off[3];
    iter_offsets(it, i, off);
    out[off[0]] = bin<T, op>(a[off[1]], b[off[2]]);
  }
}

template <class T, class F>
__global__ void unary_kernel(T* out, const T* x, T p, StridedIter<2> it) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < it.numel; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t off[2];
    iter_offsets(it, i, off);
    out[off[0]] = F::f(x[off[1]], p);
  }
}

template <class T, class F>
__global__ void unary_backward_kernel(T* dx, const T* g, const T* x, const T* y, T p, StridedIter<4> it) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < it.numel; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t off[4];
    iter_offsets(it, i, off);
    dx[off[0]] = g[off[1]] * F::df(x[off[2]], y[off[3]], p);
  }
}

template <class T>
__global__ void add_scaled_kernel(T* dst, const T* src, T alpha, StridedIter<2> it) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < it.numel; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t off[2];
    iter_offsets(it, i, off);
    dst[off[0]] += alpha * src[off[1]];
  }
}

template <class T>
__global__ void scale_kernel(T* dst, T s, StridedIter<1> it) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < it.numel; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t off[1];
    iter_offsets(it, i, off);
    dst[off[0]] *= s;
  }
}

}  // namespace

void binary(BinaryOp op, DType t, void* out, const void* a, const void* b, const StridedIter<3>& it, int device) {
  static const char* names[] = {"add", "sub", "mul", "div"};
  launch_elementwise(t, it.numel, device, names[(int)op], [&](auto zero, unsigned grid, cudaStream_t s) {
    using T = decltype(zero);
    // The kernel of each BinaryOp, in the enum's order.
    void (*const kernels[])(T*, const T*, const T*, StridedIter<3>) = {
        binary_kernel<T, BinaryOp::add>, binary_kernel<T, BinaryOp::sub>, binary_kernel<T, BinaryOp::mul>,
        binary_kernel<T, BinaryOp::div>};
    auto* kernel = kernels[(int)op];
    kernel<<<grid, kThreads, 0, s>>>(static_cast<T*>(out), static_cast<const T*>(a), static_cast<const T*>(b), it);
  });
}

template <class F>
void unary(DType t, void* out, const void* x, double p, const StridedIter<2>& it, int device) {
  launch_elementwise(t, it.numel, device, F::name, [&](auto zero, unsigned grid, cudaStream_t s) {
    using T = decltype(zero);
    unary_kernel<T, F><<<grid, kThreads, 0, s>>>(static_cast<T*>(out), static_cast<const T*>(x), (T)p, it);
  });
}

template <class F>
void unary_backward(DType t, void* dx, const void* g, const void* x, const void* y, double p, const StridedIter<4>& it,
                    int device) {
  launch_elementwise(t, it.numel, device, F::name, [&](auto zero, unsigned grid, cudaStream_t s) {
    using T = decltype(zero);
    unary_backward_kernel<T, F><<<grid, kThreads, 0, s>>>(static_cast<T*>(dx), static_cast<const T*>(g),
                                                          static_cast<const T*>(x), static_cast<const T*>(y), (T)p, it);
  });
}

// Both launchers for every entry of the list: an op added there has its kernels with nothing else to edit.
MG_CUDA_INSTANTIATE_UNARY_LAUNCHERS

void add_scaled(DType t, void* dst, const void* src, double alpha, const StridedIter<2>& it, int device) {
  launch_elementwise(t, it.numel, device, "add_", [&](auto zero, unsigned grid, cudaStream_t s) {
    using T = decltype(zero);
    add_scaled_kernel<T><<<grid, kThreads, 0, s>>>(static_cast<T*>(dst), static_cast<const T*>(src), (T)alpha, it);
  });
}

void scale(DType t, void* dst, double s, const StridedIter<1>& it, int device) {
  launch_elementwise(t, it.numel, device, "mul_", [&](auto zero, unsigned grid, cudaStream_t st) {
    using T = decltype(zero);
    scale_kernel<T><<<grid, kThreads, 0, st>>>(static_cast<T*>(dst), (T)s, it);
  });
}

}  // namespace mg::cuda
