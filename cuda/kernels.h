// Host-side launchers of the general CUDA kernels, called from the CUDA branches of the ops in
// ops/*.cpp. C++17 and free of core/tensor.h (the .cu files include it): launchers take raw device
// pointers (already at the view's offset), element counts and the POD StridedIter. Each one queues
// its work on cuda::stream(device), checks the launch, and returns without waiting. Sizes and
// offsets are int64 throughout; empty inputs launch nothing.
//
// With CUDA the launchers are defined in cuda/*.cu; without it, cuda/no_cuda.cpp defines each one to
// throw "[op] this build has no CUDA support" (a CUDA tensor cannot exist in such a build anyway).
//
// Determinism: no kernel here adds floats with atomics. Every reduction sums in a fixed order that
// depends only on the sizes (one block per row, a fixed-shape tree, fixed chunks), so results and
// gradients are bit-identical from run to run.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/strided.h"

namespace mg::cuda {

constexpr int kMaxDims = 8;

// The layout of K operands over one iteration shape: element i (row-major over `sizes`) of operand
// k is at element offset sum_d idx_d * strides[k][d] from that operand's base pointer.
template <int K>
struct StridedIter {
  int ndim = 0;  // 0 with numel 1: a single element
  int64_t numel = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[K][kMaxDims] = {};
};

// Builds the iterator, dropping size-1 dims and merging dims that are contiguous with the next for
// every operand (so contiguous operands become one dim). Throws naming `op` when more than kMaxDims
// dims remain.
template <int K>
StridedIter<K> make_iter(const std::vector<int64_t>& shape, const std::array<std::vector<int64_t>, K>& strides,
                         const char* op) {
  StridedIter<K> it;
  it.numel = 1;
  for (int64_t s : shape) it.numel *= s;
  if (it.numel == 0) return it;
  std::vector<int64_t> sz;
  std::array<std::vector<int64_t>, K> st;
  coalesce_dims<K>(shape, strides, sz, st);  // core/strided.h
  MG_CHECK((int)sz.size() <= kMaxDims,
           "[{}] the cuda kernels take at most {} dims that cannot be merged, this layout has {} (call contiguous() "
           "first)",
           op, kMaxDims, sz.size());
  it.ndim = (int)sz.size();
  for (int d = 0; d < it.ndim; ++d) {
    it.sizes[d] = sz[d];
    for (int k = 0; k < K; ++k) it.strides[k][d] = st[k][d];
  }
  return it;
}

// ---- elementwise (cuda/elementwise.cu) ----
enum class BinaryOp { add, sub, mul, div };
// out = a op b; t is float32 or float64.
void binary(BinaryOp op, DType t, void* out, const void* a, const void* b, const StridedIter<3>& it, int device);
// out = F::f(x, p) for a functor F of core/unary_ops.h (fn::exp_op ...). cuda/elementwise.cu (and
// cuda/no_cuda.cpp) instantiate both for every entry of the list with MG_CUDA_INSTANTIATE_UNARY_LAUNCHERS
// below, so that no op can be left out; this header does not include the list: adding an op rebuilds
// one kernel file.
template <class F>
void unary(DType t, void* out, const void* x, double p, const StridedIter<2>& it, int device);
// dx = g * F::df(x, y, p).
template <class F>
void unary_backward(DType t, void* dx, const void* g, const void* x, const void* y, double p, const StridedIter<4>& it,
                    int device);
// Instantiates unary and unary_backward for every entry of core/unary_ops.h's lists (which the file
// that expands it includes), in namespace mg::cuda.
#define MG_CUDA_UNARY_LAUNCHERS_OF(op, ...)                                                              \
  template void unary<fn::op##_op>(DType, void*, const void*, double, const StridedIter<2>&, int);       \
  template void unary_backward<fn::op##_op>(DType, void*, const void*, const void*, const void*, double, \
                                            const StridedIter<4>&, int);
#define MG_CUDA_INSTANTIATE_UNARY_LAUNCHERS \
  MG_UNARY_OPS(MG_CUDA_UNARY_LAUNCHERS_OF)  \
  MG_UNARY_SCALAR_OPS(MG_CUDA_UNARY_LAUNCHERS_OF)
// dst += alpha * src (in place).
void add_scaled(DType t, void* dst, const void* src, double alpha, const StridedIter<2>& it, int device);
// dst *= s (in place).
void scale(DType t, void* dst, double s, const StridedIter<1>& it, int device);

// ---- copies and factories (cuda/copy.cu); every dtype ----
void fill(DType t, void* dst, double value, const StridedIter<1>& it, int device);
// dst = (dst_t) src, elementwise over the iterator (strided copy, broadcast copy and dtype conversion).
void copy(DType dst_t, void* dst, DType src_t, const void* src, const StridedIter<2>& it, int device);
// out[i] = start + i * step for i < n.
void arange(DType t, void* out, int64_t start, int64_t step, int64_t n, int device);

// ---- reductions (cuda/reduce.cu) ----
// out[r] = scale * sum_{i<n} x[r * n + i] for r < rows, summed in double (x contiguous; float32/64).
void sum_rows(DType t, const void* x, void* out, int64_t rows, int64_t n, double scale, int device);
// x viewed as (outer, n, inner), contiguous: the largest value along n and its first index (NaN wins,
// as on the cpu). values and indices are (outer, inner).
void max_dim(DType t, const void* x, void* values, int64_t* indices, int64_t outer, int64_t n, int64_t inner,
             int device);
// dx (outer, n, inner), already zero, gets g (outer, inner) at the indices of max_dim.
void max_backward(DType t, const void* g, const int64_t* indices, void* dx, int64_t outer, int64_t n, int64_t inner,
                  int device);

// ---- sampling (cuda/sample.cu) ----
// out[r] = the token picked from row r of logits (rows, ld) among its first `vocab` entries, by the rule
// of mg::sample_tokens (ops/sample.cpp), with uniforms[r] (device, double; null when temperature is 0);
// -1 for a row holding NaN.
void sample_rows(DType t, const void* logits, int64_t rows, int64_t ld, int64_t vocab, double temperature, int64_t keep,
                 double top_p, const double* uniforms, int64_t* out, int device);

// ---- embedding (cuda/embedding.cu) ----
// out (n, D) = weight rows ids[i] (ids already checked to be in range).
void embedding_forward(DType t, const void* weight, const int64_t* ids, void* out, int64_t n, int64_t D, int device);
// The deterministic scatter-add of the vjp. `csr` (device, int64) holds the positions grouped by id:
// [pos (n) | seg_start (nseg + 1) | seg_id (nseg)]; positions within a segment ascend. dw row
// seg_id[s] = sum of g rows pos[seg_start[s] .. seg_start[s+1]) in that order; other rows are left as
// they are (the caller zeroes dw).
void embedding_backward(DType t, const void* g, const int64_t* csr, int64_t n, int64_t nseg, void* dw, int64_t D,
                        int device);

// ---- log_softmax and cross_entropy (cuda/softmax.cu); rows contiguous ----
void log_softmax_rows(DType t, const void* x, void* y, int64_t rows, int64_t n, int device);
// lse (N) = logsumexp of each row; loss (one element) = mean over the `count` rows whose target is not
// ignore_index of lse - x[target] (NaN when count is 0). Targets already checked to be in range.
void cross_entropy_forward(DType t, const void* logits, const int64_t* targets, int64_t N, int64_t C,
                           int64_t ignore_index, int64_t count, void* lse, void* loss, int device);
// dx = (softmax - one_hot) * gloss[0] / count on counted rows, 0 on ignored ones (gloss is on the device).
void cross_entropy_backward(DType t, const void* logits, const void* lse, const int64_t* targets, const void* gloss,
                            int64_t N, int64_t C, int64_t ignore_index, int64_t count, void* dx, int device);

// ---- rms_norm (cuda/rms_norm.cu); x (rows, D) contiguous ----
void rms_norm_forward(DType t, const void* x, const void* w, void* out, void* rstd, int64_t rows, int64_t D, double eps,
                      int device);
// dx (rows, D) and dw (D); either may be null when not needed.
void rms_norm_backward(DType t, const void* x, const void* w, const void* g, const void* rstd, void* dx, void* dw,
                       int64_t rows, int64_t D, int device);

// ---- cuBLAS (cuda/blas.cu) ----
// For i < batch, row-major C_i (M, N) = op(A_i) op(B_i) + beta C_i with A_i = A + i * stride_a, etc.
// op(A) is A (M, K) with row stride lda, or with trans_a the transpose of a stored (K, M) matrix with
// row stride lda (the same convention as ops/cpu/gemm.h). float32 runs in TF32 when allow_tf32().
// A stride of 0 broadcasts one matrix over the batch. Sizes must fit cuBLAS's int arguments.
// bf16 (float32 only): A and B are rounded to bfloat16 copies (round to nearest even) and multiplied
// by cuBLAS's bf16 GEMM with float32 accumulation and a float32 C (tensor cores; mixed precision).
void gemm(DType t, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const void* A, int64_t lda,
          int64_t stride_a, const void* B, int64_t ldb, int64_t stride_b, double beta, void* C, int64_t ldc,
          int64_t stride_c, int64_t batch, int device, bool bf16 = false);

}  // namespace mg::cuda
