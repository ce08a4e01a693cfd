// Copies and factories on the device: fill, strided/broadcast copy with dtype conversion (contiguous,
// clone, to_dtype, copy_, cat's slices), and arange.
#include "cuda/launch.cuh"

namespace mg::cuda {

namespace {

template <class T>
__global__ void fill_kernel(T* dst, T v, StridedIter<1> it) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < it.numel; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t off[1];
    iter_offsets(it, i, off);
    dst[off[0]] = v;
  }
}

template <class D, class S>
__global__ void copy_kernel(D* dst, const S* src, StridedIter<2> it) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < it.numel; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t off[2];
    iter_offsets(it, i, off);
    dst[off[0]] = (D)src[off[1]];
  }
}

template <class T>
__global__ void arange_kernel(T* out, int64_t start, int64_t step, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = (T)(start + i * step);
}

}  // namespace

void fill(DType t, void* dst, double value, const StridedIter<1>& it, int device) {
  launch_elementwise<true>(t, it.numel, device, "fill_", [&](auto zero, unsigned grid, cudaStream_t s) {
    using T = decltype(zero);
    fill_kernel<T><<<grid, kThreads, 0, s>>>(static_cast<T*>(dst), (T)value, it);
  });
}

void copy(DType dst_t, void* dst, DType src_t, const void* src, const StridedIter<2>& it, int device) {
  launch_elementwise<true>(dst_t, it.numel, device, "copy", [&](auto zero, unsigned grid, cudaStream_t s) {
    using D = decltype(zero);
    MG_DISPATCH_ALL(src_t, "copy", [&] {
      copy_kernel<D, scalar_t><<<grid, kThreads, 0, s>>>(static_cast<D*>(dst), static_cast<const scalar_t*>(src), it);
    });
  });
}

void arange(DType t, void* out, int64_t start, int64_t step, int64_t n, int device) {
  launch_elementwise<true>(t, n, device, "arange", [&](auto zero, unsigned grid, cudaStream_t s) {
    using T = decltype(zero);
    arange_kernel<T><<<grid, kThreads, 0, s>>>(static_cast<T*>(out), start, step, n);
  });
}

}  // namespace mg::cuda
