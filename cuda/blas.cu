// cuBLAS: one handle per device, bound to that device's one stream, and the row-major gemm of
// cuda/kernels.h on top of cuBLAS's column-major one. A row-major (M, N) matrix is the column-major
// (N, M) matrix in the same memory, so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T: cuBLAS
// gets B first, then A, with the same transpose flags. float32 uses TF32 tensor cores only when
// allow_tf32() (cublasSetMathMode before each call); otherwise full float32.
//
// Determinism: cuBLAS gives bit-identical results from run to run for the same sizes, GPU model and
// toolkit when all calls go to one stream (they do), so matmul gradients repeat exactly too.
//
// Mixed precision (bf16): the operands are rounded to bfloat16 copies by a kernel (round to nearest even,
// core/bf16.h, as the CPU rounds) and multiplied by cublasGemmStridedBatchedEx with bf16 inputs, float32
// compute and a float32 C: tensor cores, with the sums kept in float32 as the CPU's bf16 gemm keeps them.
#include <cublas_v2.h>

#include <climits>
#include <mutex>
#include <type_traits>
#include <vector>

#include "core/bf16.h"
#include "cuda/launch.cuh"

#define MG_CUBLAS_CHECK(call, op)                            \
  MG_CHECK_STATUS(call, op, CUBLAS_STATUS_SUCCESS, "cuBLAS", \
                  ::mg::format("{} ({})", cublasGetStatusName(st_), cublasGetStatusString(st_)))

namespace mg::cuda {

namespace {

cublasHandle_t handle(int device) {
  static PerDevice<cublasHandle_t> handles;
  return handles.get(device, "cublas", [&] {
    cublasHandle_t h = nullptr;
    MG_CUBLAS_CHECK(cublasCreate(&h), "cublas");
    MG_CUBLAS_CHECK(cublasSetStream(h, stream(device)), "cublas");
    return h;
  });
}

void check_int(const char* what, int64_t v) {
  MG_CHECK(v >= 0 && v <= INT_MAX, "[matmul] {} = {} does not fit cuBLAS's int arguments", what, v);
}

__global__ void round_to_bf16_kernel(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] = bf16_bits(x[i]);
}

// Elements from the first to the last of a strided batch of stored (rows, cols) matrices, row stride ld.
int64_t span_of(int64_t rows, int64_t cols, int64_t ld, int64_t stride, int64_t batch) {
  return (batch - 1) * stride + (rows - 1) * ld + cols;
}

// The sizes of one cuBLAS call of the row-major product (C^T = op(B)^T op(A)^T, see the top).
struct GemmDims {
  cublasOperation_t op_a, op_b;
  int m, n, k, ia, ib, ic, nb;
  int64_t stride_a, stride_b, stride_c;
};

// The float32 and float64 calls under one name: one product, or a strided batch of them.
cublasStatus_t cublas_gemm(cublasHandle_t h, const GemmDims& g, const float* alpha, const float* A, const float* B,
                           const float* beta, float* C) {
  if (g.nb == 1) return cublasSgemm(h, g.op_b, g.op_a, g.n, g.m, g.k, alpha, B, g.ib, A, g.ia, beta, C, g.ic);
  return cublasSgemmStridedBatched(h, g.op_b, g.op_a, g.n, g.m, g.k, alpha, B, g.ib, g.stride_b, A, g.ia, g.stride_a,
                                   beta, C, g.ic, g.stride_c, g.nb);
}
cublasStatus_t cublas_gemm(cublasHandle_t h, const GemmDims& g, const double* alpha, const double* A, const double* B,
                           const double* beta, double* C) {
  if (g.nb == 1) return cublasDgemm(h, g.op_b, g.op_a, g.n, g.m, g.k, alpha, B, g.ib, A, g.ia, beta, C, g.ic);
  return cublasDgemmStridedBatched(h, g.op_b, g.op_a, g.n, g.m, g.k, alpha, B, g.ib, g.stride_b, A, g.ia, g.stride_a,
                                   beta, C, g.ic, g.stride_c, g.nb);
}

}  // namespace

void gemm(DType t, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const void* A, int64_t lda,
          int64_t stride_a, const void* B, int64_t ldb, int64_t stride_b, double beta, void* C, int64_t ldc,
          int64_t stride_c, int64_t batch, int device, bool bf16) {
  if (M == 0 || N == 0 || batch == 0) return;
  MG_ASSERT(K > 0);
  MG_ASSERT(lda >= (trans_a ? M : K) && ldb >= (trans_b ? K : N) && ldc >= N);
  check_int("M", M), check_int("N", N), check_int("K", K), check_int("batch", batch);
  check_int("lda", lda), check_int("ldb", ldb), check_int("ldc", ldc);
  set_device(device, "matmul");
  cublasHandle_t h = handle(device);
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const GemmDims g{op_a,     op_b,     (int)M,     (int)N,   (int)K,   (int)lda,
                   (int)ldb, (int)ldc, (int)batch, stride_a, stride_b, stride_c};
  if (bf16) {
    MG_CHECK(t == DType::f32, "[matmul] bf16 mixed precision takes float32 tensors, got {}", dtype_name(t));
    // bf16 copies with the operands' own layout (strides and leading dimensions unchanged).
    const int64_t na = span_of(trans_a ? K : M, trans_a ? M : K, lda, stride_a, batch);
    const int64_t nb16 = span_of(trans_b ? N : K, trans_b ? K : N, ldb, stride_b, batch);
    Scratch a16(size_t(na) * 2, device, "matmul"), b16(size_t(nb16) * 2, device, "matmul");
    round_to_bf16_kernel<<<grid_for(na), kThreads, 0, stream(device)>>>(static_cast<const float*>(A),
                                                                        a16.as<uint16_t>(), na);
    MG_CUDA_LAUNCH_CHECK("matmul");
    round_to_bf16_kernel<<<grid_for(nb16), kThreads, 0, stream(device)>>>(static_cast<const float*>(B),
                                                                          b16.as<uint16_t>(), nb16);
    MG_CUDA_LAUNCH_CHECK("matmul");
    MG_CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH), "matmul");
    const float alpha = 1.0f, b = (float)beta;
    MG_CUBLAS_CHECK(
        cublasGemmStridedBatchedEx(h, op_b, op_a, g.n, g.m, g.k, &alpha, b16.as<uint16_t>(), CUDA_R_16BF, g.ib,
                                   stride_b, a16.as<uint16_t>(), CUDA_R_16BF, g.ia, stride_a, &b, C, CUDA_R_32F, g.ic,
                                   stride_c, g.nb, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "matmul");
  } else {
    MG_DISPATCH_FLOAT(t, "matmul", [&] {
      const bool tf32 = std::is_same_v<scalar_t, float> && allow_tf32();
      MG_CUBLAS_CHECK(cublasSetMathMode(h, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH), "matmul");
      const scalar_t alpha = 1, b = (scalar_t)beta;
      MG_CUBLAS_CHECK(cublas_gemm(h, g, &alpha, static_cast<const scalar_t*>(A), static_cast<const scalar_t*>(B), &b,
                                  static_cast<scalar_t*>(C)),
                      "matmul");
    });
  }
}

}  // namespace mg::cuda
