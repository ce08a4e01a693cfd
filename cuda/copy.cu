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
  if (it.numel == 0) return;
  set_device(device, "fill_");
  MG_CUDA_DISPATCH_ALL(t, "fill_", {
    fill_kernel<scalar_t>
        <<<grid_for(it.numel), kThreads, 0, stream(device)>>>(static_cast<scalar_t*>(dst), (scalar_t)value, it);
  });
  MG_CUDA_LAUNCH_CHECK("fill_");
}

void copy(DType dst_t, void* dst, DType src_t, const void* src, const StridedIter<2>& it, int device) {
  if (it.numel == 0) return;
  set_device(device, "copy");
  const unsigned grid = grid_for(it.numel);
  cudaStream_t s = stream(device);
  MG_CUDA_DISPATCH_ALL(dst_t, "copy", {
    using D = scalar_t;
    MG_CUDA_DISPATCH_ALL(src_t, "copy", {
      copy_kernel<D, scalar_t><<<grid, kThreads, 0, s>>>(static_cast<D*>(dst), static_cast<const scalar_t*>(src), it);
    });
  });
  MG_CUDA_LAUNCH_CHECK("copy");
}

void arange(DType t, void* out, int64_t start, int64_t step, int64_t n, int device) {
  if (n <= 0) return;
  set_device(device, "arange");
  MG_CUDA_DISPATCH_ALL(t, "arange", {
    arange_kernel<scalar_t><<<grid_for(n), kThreads, 0, stream(device)>>>(static_cast<scalar_t*>(out), start, step, n);
  });
  MG_CUDA_LAUNCH_CHECK("arange");
}

}  // namespace mg::cuda
