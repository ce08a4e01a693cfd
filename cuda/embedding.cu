// embedding: the forward gathers rows; the vjp adds gradient rows into the table deterministically.
// The caller groups positions by id on the host (ops/embedding.cpp, a counting sort that keeps
// positions ascending within an id), so each table row is summed by one thread per column, in
// position order, with no atomics: the same order, and the same bits, as the cpu kernel.
#include "cuda/launch.cuh"

namespace mg::cuda {

namespace {

template <class T>
__global__ void embedding_forward_kernel(const T* w, const int64_t* ids, T* out, int64_t n, int64_t D) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n * D; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = i / D, j = i % D;
    out[i] = w[ids[r] * D + j];
  }
}

// Block (segment s, column tile): dw[seg_id[s], j] = sum of g[pos, j] over the segment's positions.
template <class T>
__global__ void embedding_backward_kernel(const T* g, const int64_t* pos, const int64_t* seg_start,
                                          const int64_t* seg_id, int64_t nseg, T* dw, int64_t D) {
  for (int64_t s = blockIdx.x; s < nseg; s += gridDim.x) {
    const int64_t row = seg_id[s], b = seg_start[s], e = seg_start[s + 1];
    for (int64_t j = blockIdx.y * (int64_t)blockDim.x + threadIdx.x; j < D; j += (int64_t)gridDim.y * blockDim.x) {
      T acc = dw[row * D + j];
      for (int64_t k = b; k < e; ++k) acc += g[pos[k] * D + j];
      dw[row * D + j] = acc;
    }
  }
}

}  // namespace

void embedding_forward(DType t, const void* weight, const int64_t* ids, void* out, int64_t n, int64_t D, int device) {
  if (n * D == 0) return;
  set_device(device, "embedding");
  MG_DISPATCH_FLOAT(t, "embedding", [&] {
    embedding_forward_kernel<scalar_t><<<grid_for(n * D), kThreads, 0, stream(device)>>>(
        static_cast<const scalar_t*>(weight), ids, static_cast<scalar_t*>(out), n, D);
  });
  MG_CUDA_LAUNCH_CHECK("embedding");
}

void embedding_backward(DType t, const void* g, const int64_t* csr, int64_t n, int64_t nseg, void* dw, int64_t D,
                        int device) {
  if (nseg == 0 || D == 0) return;
  set_device(device, "embedding");
  const int64_t tiles = (D + kThreads - 1) / kThreads;
  dim3 grid(blocks_for(nseg), blocks_for(tiles));
  MG_DISPATCH_FLOAT(t, "embedding", [&] {
    embedding_backward_kernel<scalar_t><<<grid, kThreads, 0, stream(device)>>>(
        static_cast<const scalar_t*>(g), csr, csr + n, csr + n + nseg + 1, nseg, static_cast<scalar_t*>(dw), D);
  });
  MG_CUDA_LAUNCH_CHECK("embedding");
}

}  // namespace mg::cuda
