// sample_rows: one token per row of logits, on the device (ops/sample.cpp states the rule and holds
// the CPU loop). One block per row: each thread ranks its entries against the whole row (value
// descending, lower index first on ties), the kept ones (rank < keep) land in rank order in scratch,
// and thread 0 walks them in that order with the CPU's own arithmetic (core/sample_pick.h), so both
// devices pick the same token from the same uniform draw.
#include "core/sample_pick.h"
#include "cuda/launch.cuh"

namespace mg::cuda {

namespace {

template <class T>
__global__ void sample_kernel(const T* logits, int64_t ld, int64_t vocab, double temperature, int64_t keep,
                              double top_p, const double* uniforms, int64_t* out, double* kept_value,
                              int64_t* kept_index) {
  __shared__ int has_nan;
  const int64_t row = blockIdx.x;
  const T* l = logits + row * ld;
  double* value = kept_value + row * keep;
  int64_t* index = kept_index + row * keep;
  if (threadIdx.x == 0) has_nan = 0;
  __syncthreads();
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    const T v = l[i];
    if (v != v) has_nan = 1;
    int64_t rank = 0;
    for (int64_t j = 0; j < vocab && rank < keep; ++j) rank += l[j] > v || (l[j] == v && j < i);
    if (rank < keep) value[rank] = (double)v, index[rank] = i;
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  if (has_nan) {
    out[row] = -1;
    return;
  }
  if (temperature == 0) {
    out[row] = index[0];
    return;
  }
  out[row] = pick_ranked(value, index, keep, temperature, top_p, uniforms[row]);
}

}  // namespace

void sample_rows(DType t, const void* logits, int64_t rows, int64_t ld, int64_t vocab, double temperature, int64_t keep,
                 double top_p, const double* uniforms, int64_t* out, int device) {
  if (rows == 0) return;
  set_device(device, "sample");
  Scratch scratch((size_t)(rows * keep) * (sizeof(double) + sizeof(int64_t)), device, "sample");
  double* value = scratch.as<double>();
  int64_t* index = reinterpret_cast<int64_t*>(value + rows * keep);
  MG_DISPATCH_FLOAT(t, "sample", [&] {
    sample_kernel<scalar_t><<<grid_of((size_t)rows, "sample"), kThreads, 0, stream(device)>>>(
        static_cast<const scalar_t*>(logits), ld, vocab, temperature, keep, top_p, uniforms, out, value, index);
  });
  MG_CUDA_LAUNCH_CHECK("sample");
}

}  // namespace mg::cuda
