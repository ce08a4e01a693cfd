// The CUDA emulator (cuda/emulator/, a build with -DMG_CUDA=EMULATE) checked on its own: the CUDA tests
// mean something under it only if barriers, shuffles, launch limits and cuBLAS's conventions behave as on
// a GPU, and if the misuses a GPU would punish are errors here too. Kernels are written in this file with
// the launcher that translate.cmake produces from `<<<...>>>`. Other builds report these cases skipped.
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif
#include <doctest/doctest.h>

#include <cstdio>
#include <vector>

#if MG_CUDA_EMULATED
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cmath>
#include <string>

#include "cuda/runtime.h"
#endif

#if !MG_CUDA_EMULATED
TEST_CASE("cuda emulator: (this build does not use it)") {
  std::printf("SKIPPED: this build does not use the CUDA emulator (configure with -DMG_CUDA=EMULATE)\n");
}
#else

namespace {

template <class T>
T* device_alloc(size_t n) {
  T* p = nullptr;
  REQUIRE(cudaMalloc(&p, n * sizeof(T)) == cudaSuccess);
  return p;
}

// out[i] = in[(i + 1) % n] through shared memory: right only if the barrier orders the writes before the
// reads whatever order the threads run in.
__global__ void rotate_kernel(const int* in, int* out) {
  __shared__ int buf[256];
  const int i = (int)threadIdx.x, n = (int)blockDim.x;
  buf[i] = in[blockIdx.x * n + i];
  __syncthreads();
  out[blockIdx.x * n + i] = buf[(i + 1) % n];
}

// The same without the barrier: a race a real GPU would also lose.
__global__ void rotate_racy_kernel(const int* in, int* out) {
  __shared__ int buf[256];
  const int i = (int)threadIdx.x, n = (int)blockDim.x;
  buf[i] = in[blockIdx.x * n + i];
  out[blockIdx.x * n + i] = buf[(i + 1) % n];
}

// Warp sum by butterfly shuffles, written by lane 0 of each warp; a 2-d block.
__global__ void warp_sum_kernel(const double* in, double* out) {
  const int t = (int)(threadIdx.x + blockDim.x * threadIdx.y);
  double v = in[t];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  if (t % 32 == 0) out[t / 32] = v;
}

// Half the block waits at __syncthreads while the other half of the same warp shuffles: a hang on a GPU.
__global__ void divergent_kernel(int* out) {
  if (threadIdx.x < 16)
    __syncthreads();
  else
    out[0] = __shfl_xor_sync(0xffffffffu, (int)threadIdx.x, 1);
}

__global__ void dynamic_smem_kernel(float* out) {
  float* s = reinterpret_cast<float*>(::mg_emu::dynamic_smem());
  s[threadIdx.x] = (float)threadIdx.x;
  __syncthreads();
  out[threadIdx.x] = s[blockDim.x - 1 - threadIdx.x];
}

// Writes n + extra floats to a tensor of n.
__global__ void overrun_kernel(float* out, int n, int extra) {
  for (int i = (int)threadIdx.x; i < n + extra; i += (int)blockDim.x) out[i] = 1.0f;
}

__global__ void noop_kernel(int* out) {
  if (out) out[0] = 1;
}

}  // namespace

TEST_CASE("cuda emulator: __syncthreads orders shared memory, and a missing barrier shows") {
  const int blocks = 3, n = 256;
  std::vector<int> in(blocks * n), out(blocks * n);
  for (int i = 0; i < blocks * n; ++i) in[i] = 7 * i + 1;
  int* din = device_alloc<int>(in.size());
  int* dout = device_alloc<int>(out.size());
  REQUIRE(cudaMemcpyAsync(din, in.data(), in.size() * 4, cudaMemcpyHostToDevice) == cudaSuccess);

  ::mg_emu::launch(rotate_kernel, "rotate_kernel", blocks, n)(din, dout);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  REQUIRE(cudaMemcpyAsync(out.data(), dout, out.size() * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  for (int b = 0; b < blocks; ++b)
    for (int i = 0; i < n; ++i) REQUIRE(out[b * n + i] == in[b * n + (i + 1) % n]);

  // Without the barrier, threads run one after another up to the end: thread i reads buf[i + 1] before
  // thread i + 1 wrote it (in forward order; in reverse order the last thread reads buf[0] too early).
  ::mg_emu::launch(rotate_racy_kernel, "rotate_racy_kernel", blocks, n)(din, dout);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  REQUIRE(cudaMemcpyAsync(out.data(), dout, out.size() * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  int wrong = 0;
  for (int b = 0; b < blocks; ++b)
    for (int i = 0; i < n; ++i) wrong += out[b * n + i] != in[b * n + (i + 1) % n];
  CHECK(wrong > 0);
  cudaFree(din), cudaFree(dout);
}

TEST_CASE("cuda emulator: warp shuffles sum each warp of a 2-d block") {
  const int nx = 32, ny = 4;
  std::vector<double> in(nx * ny), out(ny);
  for (size_t i = 0; i < in.size(); ++i) in[i] = std::sin(1.7 * (double)i) * (1.0 + (double)i / 7);
  double* din = device_alloc<double>(in.size());
  double* dout = device_alloc<double>(out.size());
  REQUIRE(cudaMemcpyAsync(din, in.data(), in.size() * 8, cudaMemcpyHostToDevice) == cudaSuccess);
  ::mg_emu::launch(warp_sum_kernel, "warp_sum_kernel", 1, dim3(nx, ny))(din, dout);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  REQUIRE(cudaMemcpyAsync(out.data(), dout, out.size() * 8, cudaMemcpyDeviceToHost) == cudaSuccess);
  for (int w = 0; w < ny; ++w) {
    double ref = 0;
    for (int l = 0; l < 32; ++l) ref += in[w * 32 + l];
    CHECK(out[w] == doctest::Approx(ref).epsilon(1e-14));
  }
  cudaFree(din), cudaFree(dout);
}

TEST_CASE("cuda emulator: a barrier and a shuffle that can never meet are a launch failure, not a hang") {
  int* d = device_alloc<int>(1);
  ::mg_emu::launch(divergent_kernel, "divergent_kernel", 1, 32)(d);
  const cudaError_t e = cudaGetLastError();
  CHECK(e == cudaErrorLaunchFailure);
  CHECK(std::string(cudaGetErrorString(e)).find("deadlock") != std::string::npos);
  CHECK(cudaGetLastError() == cudaSuccess);  // read once, then cleared, as in CUDA
  cudaFree(d);
}

TEST_CASE("cuda emulator: launch limits and shared memory limits are those of an H100") {
  int* d = device_alloc<int>(1);
  ::mg_emu::launch(noop_kernel, "noop_kernel", 1, 1025)(d);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  ::mg_emu::launch(noop_kernel, "noop_kernel", dim3(1, 65536), 32)(d);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  ::mg_emu::launch(noop_kernel, "noop_kernel", 0, 32)(d);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);

  // Dynamic shared memory: 48 KiB without the opt-in, up to 227 KiB with it.
  float* out = device_alloc<float>(64);
  ::mg_emu::launch(dynamic_smem_kernel, "dynamic_smem_kernel", 1, 64, 64 << 10)(out);
  CHECK(cudaGetLastError() == cudaErrorInvalidValue);
  CHECK(cudaFuncSetAttribute(dynamic_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 228 << 10) ==
        cudaErrorInvalidValue);
  cudaGetLastError();
  REQUIRE(cudaFuncSetAttribute(dynamic_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 << 10) ==
          cudaSuccess);
  ::mg_emu::launch(dynamic_smem_kernel, "dynamic_smem_kernel", 1, 64, 64 << 10)(out);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  std::vector<float> h(64);
  REQUIRE(cudaMemcpyAsync(h.data(), out, 64 * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  for (int i = 0; i < 64; ++i) CHECK(h[i] == (float)(63 - i));
  cudaFree(d), cudaFree(out);
}

TEST_CASE("cuda emulator: host pointers given to kernels and copies in the wrong direction are errors") {
  int host = 0;
  ::mg_emu::launch(noop_kernel, "noop_kernel", 1, 1)(&host);
  CHECK(cudaGetLastError() == cudaErrorIllegalAddress);
  CHECK(host == 0);  // the kernel did not run

  int* d = device_alloc<int>(4);
  int h[4] = {1, 2, 3, 4};
  CHECK(cudaMemcpyAsync(h, d, sizeof h, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
  cudaGetLastError();
  CHECK(cudaMemcpyAsync(d, h, sizeof h + 4, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);  // overruns d
  cudaGetLastError();
  CHECK(cudaMemcpyAsync(d, h, sizeof h, cudaMemcpyHostToDevice) == cudaSuccess);
  CHECK(cudaFree(h) == cudaErrorInvalidValue);
  cudaGetLastError();
  CHECK(cudaFree(d) == cudaSuccess);
}

TEST_CASE("cuda emulator: a kernel writing past the end of its tensor fails, though the block has room") {
  const int n = 100;  // 400 bytes in a 512-byte block
  auto* p = static_cast<float*>(mg::cuda::device_malloc(n * sizeof(float), 0, "test"));
  ::mg_emu::launch(overrun_kernel, "overrun_kernel", 1, 64)(p, n, 0);
  CHECK(cudaGetLastError() == cudaSuccess);
#if defined(__SANITIZE_ADDRESS__)
  // Under AddressSanitizer the bytes past the tensor are poisoned instead of checked afterwards: the
  // overrunning write would stop the program at the access, with ASan's report.
  CHECK(__asan_address_is_poisoned(p + n));
  CHECK(!__asan_address_is_poisoned(p + n - 1));
  mg::cuda::device_free(p, 0);
  CHECK(__asan_address_is_poisoned(p));  // a free block in the cache: any access is caught
  return;
#endif
  ::mg_emu::launch(overrun_kernel, "overrun_kernel", 1, 64)(p, n, 1);
  const cudaError_t e = cudaGetLastError();
  CHECK(e == cudaErrorIllegalAddress);
  const std::string msg = cudaGetErrorString(e);
  CHECK(msg.find("overrun_kernel") != std::string::npos);
  CHECK(msg.find("byte 400") != std::string::npos);
  mg::cuda::device_free(p, 0);
  cudaGetLastError();
}

TEST_CASE("cuda emulator: cuBLAS gemm is column-major, checks its leading dimensions and rounds to TF32 on request") {
  cublasHandle_t h = nullptr;
  REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
  // Column-major A (2 x 3) and B (3 x 2): C = A B (2 x 2), and C = A^T-stored variant via CUBLAS_OP_T.
  const float A[6] = {1, 2, 3, 4, 5, 6};  // columns (1, 2), (3, 4), (5, 6)
  const float B[6] = {1, 0, 2, 0, 1, 1};  // columns (1, 0, 2), (0, 1, 1)
  float* dA = device_alloc<float>(6);
  float* dB = device_alloc<float>(6);
  float* dC = device_alloc<float>(4);
  REQUIRE(cudaMemcpyAsync(dA, A, sizeof A, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemcpyAsync(dB, B, sizeof B, cudaMemcpyHostToDevice) == cudaSuccess);
  const float one = 1, zero = 0;
  REQUIRE(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, dA, 2, dB, 3, &zero, dC, 2) == CUBLAS_STATUS_SUCCESS);
  float C[4];
  REQUIRE(cudaMemcpyAsync(C, dC, sizeof C, cudaMemcpyDeviceToHost) == cudaSuccess);
  // C(:,0) = 1*(1,2) + 2*(5,6) = (11, 14); C(:,1) = (3,4) + (5,6) = (8, 10)
  CHECK(std::vector<float>(C, C + 4) == std::vector<float>{11, 14, 8, 10});

  // B^T A^T = (A B)^T with both stored operands transposed.
  REQUIRE(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_T, 2, 2, 3, &one, dB, 3, dA, 2, &zero, dC, 2) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cudaMemcpyAsync(C, dC, sizeof C, cudaMemcpyDeviceToHost) == cudaSuccess);
  CHECK(std::vector<float>(C, C + 4) == std::vector<float>{11, 8, 14, 10});

  // lda below the rows of A, and an operand that overruns its allocation.
  CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, dA, 1, dB, 3, &zero, dC, 2) ==
        CUBLAS_STATUS_INVALID_VALUE);
  CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, dA, 3, dB, 3, &zero, dC, 2) ==
        CUBLAS_STATUS_EXECUTION_FAILED);

  // TF32: 1 + 2^-12 loses its low bits; full float32 keeps them.
  const float x = 1.0f + 1.0f / 4096;
  REQUIRE(cudaMemcpyAsync(dA, &x, 4, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemcpyAsync(dB, &one, 4, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, dA, 1, dB, 1, &zero, dC, 1) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cudaMemcpyAsync(C, dC, 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  CHECK(C[0] == x);
  REQUIRE(cublasSetMathMode(h, CUBLAS_TF32_TENSOR_OP_MATH) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, dA, 1, dB, 1, &zero, dC, 1) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cudaMemcpyAsync(C, dC, 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  CHECK(C[0] == 1.0f);
  cudaFree(dA), cudaFree(dB), cudaFree(dC);
}

#endif
