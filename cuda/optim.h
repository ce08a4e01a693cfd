// Launchers of the optimizer kernels (cuda/optim.cu): AdamW over every parameter of a device in one
// launch per dtype, and the global gradient norm for clipping. C++17 and free of core/tensor.h so the
// .cu file can include it; ops/optim.cpp builds the tables from tensors. In a build without CUDA
// cuda/no_cuda.cpp defines them to throw "[op] this build has no CUDA support".
//
// Work is described by a host table of tensors; the launcher splits each tensor into chunks of at
// most kOptimChunk elements (make_chunks below), copies the chunk table to the device through a
// pinned staging buffer (asynchronously, on the device's one stream) and launches one block per
// chunk. Tensors must be contiguous, on `device`, all of one dtype per call entry (f32 or f64).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "cuda/runtime.h"

namespace mg::cuda {

// Elements handled by one block (a multiple of any vector width; 256 threads x 128 elements).
inline constexpr int64_t kOptimChunk = 32768;

// One parameter for adamw_step: device pointers to its value, gradient and both moments (same
// dtype, contiguous, `numel` elements) and its decay factor 1 - lr * weight_decay.
struct AdamWTensor {
  void* param = nullptr;
  const void* grad = nullptr;
  void* exp_avg = nullptr;
  void* exp_avg_sq = nullptr;
  int64_t numel = 0;
  double decay = 1.0;
  bool f64 = false;  // float64 when true, else float32
};

// The scalars every parameter shares, precomputed in double on the host (train/optim.cpp), the same
// for the CPU kernel: step_size = lr / (1 - beta1^t), bc2_sqrt = sqrt(1 - beta2^t).
struct AdamWScalars {
  double beta1 = 0.9, beta2 = 0.95, step_size = 0, bc2_sqrt = 1, eps = 1e-8;
};

// One gradient for grad_sum_squares / scale_grads.
struct GradTensor {
  void* data = nullptr;
  int64_t numel = 0;
  bool f64 = false;
};

// A piece of tensor `index`: elements [begin, begin + count).
struct Chunk {
  int32_t index = 0;
  int64_t begin = 0, count = 0;
};

// Splits tensors of the given sizes into chunks of at most `chunk` elements, in tensor order then
// element order (empty tensors give no chunk). Host code, testable without a GPU.
inline std::vector<Chunk> make_chunks(const std::vector<int64_t>& numels, int64_t chunk = kOptimChunk) {
  std::vector<Chunk> out;
  for (size_t i = 0; i < numels.size(); ++i)
    for (int64_t b = 0; b < numels[i]; b += chunk)
      out.push_back({(int32_t)i, b, numels[i] - b < chunk ? numels[i] - b : chunk});
  return out;
}

// One AdamW step over every tensor in `ts` (one launch per dtype present), with the same per-element
// arithmetic as the CPU AdamW (ops/cpu/optim.cpp).
void adamw_step(const std::vector<AdamWTensor>& ts, const AdamWScalars& s, int device);

// Sum over every element of every gradient of x^2, accumulated in double: per-block partial sums
// (each a fixed-order tree), then one block adds the partials in order. Deterministic: the same
// gradients give the same bits on every run. Waits for the result (returns it to the host). Errors
// name `op`, the op that called it (sum_squares).
double grad_sum_squares(const std::vector<GradTensor>& gs, int device, const char* op);

// g *= coef for every gradient, in the gradient's precision (one launch per dtype present). Errors name
// `op` (mul_each_).
void scale_grads(const std::vector<GradTensor>& gs, double coef, int device, const char* op);

}  // namespace mg::cuda
