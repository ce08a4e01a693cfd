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
#include <vector>

#include "core/bf16.h"
#include "cuda/launch.cuh"

#define MG_CUBLAS_CHECK(call, op)                                                                                    \
  do {                                                                                                               \
    cublasStatus_t st_ = (call);                                                                                     \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                                                \
      MG_THROW("[{}] cuBLAS error in {} at {}:{}: {} ({})", op, #call, __FILE__, __LINE__, cublasGetStatusName(st_), \
               cublasGetStatusString(st_));                                                                          \
  } while (0)

namespace mg::cuda {

namespace {

cublasHandle_t handle(int device) {
  static std::mutex mu;
  static std::vector<cublasHandle_t> handles;
  std::lock_guard<std::mutex> lock(mu);
  if (device >= (int)handles.size()) handles.resize(device + 1, nullptr);
  if (!handles[device]) {
    set_device(device, "cublas");
    cublasHandle_t h = nullptr;
    MG_CUBLAS_CHECK(cublasCreate(&h), "cublas");
    MG_CUBLAS_CHECK(cublasSetStream(h, stream(device)), "cublas");
    handles[device] = h;  // never destroyed: the driver may be gone at static destruction
  }
  return handles[device];
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
  const int m = (int)M, n = (int)N, k = (int)K, ia = (int)lda, ib = (int)ldb, ic = (int)ldc, nb = (int)batch;
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
    MG_CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, op_b, op_a, n, m, k, &alpha, b16.as<uint16_t>(), CUDA_R_16BF, ib,
                                               stride_b, a16.as<uint16_t>(), CUDA_R_16BF, ia, stride_a, &b, C,
                                               CUDA_R_32F, ic, stride_c, nb, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                    "matmul");
  } else if (t == DType::f32) {
    MG_CUBLAS_CHECK(cublasSetMathMode(h, allow_tf32() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH), "matmul");
    const float alpha = 1.0f, b = (float)beta;
    auto pa = static_cast<const float*>(A), pb = static_cast<const float*>(B);
    auto pc = static_cast<float*>(C);
    if (batch == 1)
      MG_CUBLAS_CHECK(cublasSgemm(h, op_b, op_a, n, m, k, &alpha, pb, ib, pa, ia, &b, pc, ic), "matmul");
    else
      MG_CUBLAS_CHECK(cublasSgemmStridedBatched(h, op_b, op_a, n, m, k, &alpha, pb, ib, stride_b, pa, ia, stride_a, &b,
                                                pc, ic, stride_c, nb),
                      "matmul");
  } else if (t == DType::f64) {
    MG_CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH), "matmul");
    const double alpha = 1.0, b = beta;
    auto pa = static_cast<const double*>(A), pb = static_cast<const double*>(B);
    auto pc = static_cast<double*>(C);
    if (batch == 1)
      MG_CUBLAS_CHECK(cublasDgemm(h, op_b, op_a, n, m, k, &alpha, pb, ib, pa, ia, &b, pc, ic), "matmul");
    else
      MG_CUBLAS_CHECK(cublasDgemmStridedBatched(h, op_b, op_a, n, m, k, &alpha, pb, ib, stride_b, pa, ia, stride_a, &b,
                                                pc, ic, stride_c, nb),
                      "matmul");
  } else {
    MG_THROW("[matmul] expects float32 or float64 on cuda, got {}", dtype_name(t));
  }
}

}  // namespace mg::cuda
