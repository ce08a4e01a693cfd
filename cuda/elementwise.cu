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
  const char* name = names[(int)op];
  if (it.numel == 0) return;
  set_device(device, name);
  const unsigned grid = grid_for(it.numel);
  cudaStream_t s = stream(device);
  MG_CUDA_DISPATCH_FLOAT(t, name, {
    auto* o = static_cast<scalar_t*>(out);
    auto* pa = static_cast<const scalar_t*>(a);
    auto* pb = static_cast<const scalar_t*>(b);
    switch (op) {
      case BinaryOp::add:
        binary_kernel<scalar_t, BinaryOp::add><<<grid, kThreads, 0, s>>>(o, pa, pb, it);
        break;
      case BinaryOp::sub:
        binary_kernel<scalar_t, BinaryOp::sub><<<grid, kThreads, 0, s>>>(o, pa, pb, it);
        break;
      case BinaryOp::mul:
        binary_kernel<scalar_t, BinaryOp::mul><<<grid, kThreads, 0, s>>>(o, pa, pb, it);
        break;
      case BinaryOp::div:
        binary_kernel<scalar_t, BinaryOp::div><<<grid, kThreads, 0, s>>>(o, pa, pb, it);
        break;
    }
  });
  MG_CUDA_LAUNCH_CHECK(name);
}

template <class F>
void unary(DType t, void* out, const void* x, double p, const StridedIter<2>& it, int device) {
  const char* name = F::name;
  if (it.numel == 0) return;
  set_device(device, name);
  const unsigned grid = grid_for(it.numel);
  cudaStream_t s = stream(device);
  MG_CUDA_DISPATCH_FLOAT(t, name, {
    unary_kernel<scalar_t, F>
        <<<grid, kThreads, 0, s>>>(static_cast<scalar_t*>(out), static_cast<const scalar_t*>(x), (scalar_t)p, it);
  });
  MG_CUDA_LAUNCH_CHECK(name);
}

template <class F>
void unary_backward(DType t, void* dx, const void* g, const void* x, const void* y, double p, const StridedIter<4>& it,
                    int device) {
  const char* name = F::name;
  if (it.numel == 0) return;
  set_device(device, name);
  const unsigned grid = grid_for(it.numel);
  cudaStream_t s = stream(device);
  MG_CUDA_DISPATCH_FLOAT(t, name, {
    unary_backward_kernel<scalar_t, F>
        <<<grid, kThreads, 0, s>>>(static_cast<scalar_t*>(dx), static_cast<const scalar_t*>(g),
                                   static_cast<const scalar_t*>(x), static_cast<const scalar_t*>(y), (scalar_t)p, it);
  });
  MG_CUDA_LAUNCH_CHECK(name);
}

// Both launchers for every entry of the list: an op added there has its kernels with nothing else to edit.
#define MG_X(op, ...)                                                                                    \
  template void unary<fn::op##_op>(DType, void*, const void*, double, const StridedIter<2>&, int);       \
  template void unary_backward<fn::op##_op>(DType, void*, const void*, const void*, const void*, double, \
                                            const StridedIter<4>&, int);
MG_UNARY_OPS(MG_X)
MG_UNARY_SCALAR_OPS(MG_X)
#undef MG_X

void add_scaled(DType t, void* dst, const void* src, double alpha, const StridedIter<2>& it, int device) {
  if (it.numel == 0) return;
  set_device(device, "add_");
  MG_CUDA_DISPATCH_FLOAT(t, "add_", {
    add_scaled_kernel<scalar_t><<<grid_for(it.numel), kThreads, 0, stream(device)>>>(
        static_cast<scalar_t*>(dst), static_cast<const scalar_t*>(src), (scalar_t)alpha, it);
  });
  MG_CUDA_LAUNCH_CHECK("add_");
}

void scale(DType t, void* dst, double s, const StridedIter<1>& it, int device) {
  if (it.numel == 0) return;
  set_device(device, "mul_");
  MG_CUDA_DISPATCH_FLOAT(t, "mul_", {
    scale_kernel<scalar_t>
        <<<grid_for(it.numel), kThreads, 0, stream(device)>>>(static_cast<scalar_t*>(dst), (scalar_t)s, it);
  });
  MG_CUDA_LAUNCH_CHECK("mul_");
}

}  // namespace mg::cuda
