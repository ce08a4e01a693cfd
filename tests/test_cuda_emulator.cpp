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
#include <cstdlib>
#include <string>

#include "core/tensor.h"
#include "cuda/runtime.h"
#include "ops/ops.h"
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

// The race check's kernels declare their shared memory as translate.cmake rewrites `__shared__ T x[n];`.

// rotate_kernel with the check: correct, and the same without the barrier (read-after-write or
// write-after-read, depending on the order the threads run in).
__global__ void rotate_checked_kernel(const int* in, int* out) {
  MG_EMU_SHARED(int, buf, [256]);
  const int i = (int)threadIdx.x, n = (int)blockDim.x;
  buf[i] = in[blockIdx.x * n + i];
  __syncthreads();
  out[blockIdx.x * n + i] = buf[(i + 1) % n];
}
__global__ void rotate_checked_racy_kernel(const int* in, int* out) {
  MG_EMU_SHARED(int, buf, [256]);
  const int i = (int)threadIdx.x, n = (int)blockDim.x;
  buf[i] = in[blockIdx.x * n + i];
  out[blockIdx.x * n + i] = buf[(i + 1) % n];
}

// A tree sum over a 2-d array, rows reused after a barrier: correct. out[0] = sum of in[0..64).
__global__ void tree_sum_kernel(const double* in, double* out) {
  MG_EMU_SHARED(double, sh, [2][32]);
  const int w = (int)threadIdx.x / 32, l = (int)threadIdx.x % 32;
  sh[w][l] = in[threadIdx.x];
  __syncthreads();
  for (int s = 16; s > 0; s >>= 1) {
    if (l < s) sh[w][l] += sh[w][l + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[0] = sh[0][0] + sh[1][0];
}

// Every thread writes its own index into one int: a write-after-write race.
__global__ void last_writer_kernel(int* out) {
  MG_EMU_SHARED(int, who, );
  who = (int)threadIdx.x;
  __syncthreads();
  if (threadIdx.x == 0) out[0] = who;
}

// Every thread that sees a negative value sets one flag to 1 (as cuda/sample.cu does for NaN): writes
// of the same value, which every order of the threads agrees on, are no race.
__global__ void flag_kernel(const int* in, int* out) {
  MG_EMU_SHARED(int, flag, );
  if (threadIdx.x == 0) flag = 0;
  __syncthreads();
  if (in[threadIdx.x] < 0) flag = 1;
  __syncthreads();
  if (threadIdx.x == 0) out[0] = flag;
}

// Lanes swap values through shared memory with only a warp barrier between the write and the read:
// ordered within each warp. With `across`, lane l of warp 0 reads what lane l of warp 1 wrote: a race,
// which a warp barrier does not order.
__global__ void warp_swap_kernel(int* out, int across) {
  MG_EMU_SHARED(int, buf, [64]);
  const int i = (int)threadIdx.x;
  buf[i] = i;
  __syncwarp();
  out[i] = across ? buf[(i + 32) % 64] : buf[i ^ 1];
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

// The launch's error message, read once (and so cleared).
std::string launch_message() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? "" : cudaGetErrorString(e);
}

TEST_CASE("cuda emulator: the shared-memory race check passes correct kernels") {
  const int blocks = 2, n = 256;
  std::vector<int> in(blocks * n), out(blocks * n);
  for (int i = 0; i < blocks * n; ++i) in[i] = 5 * i - 300;
  int* din = device_alloc<int>(in.size());
  int* dout = device_alloc<int>(out.size());
  REQUIRE(cudaMemcpyAsync(din, in.data(), in.size() * 4, cudaMemcpyHostToDevice) == cudaSuccess);
  ::mg_emu::launch(rotate_checked_kernel, "rotate_checked_kernel", blocks, n)(din, dout);
  REQUIRE(launch_message() == "");
  REQUIRE(cudaMemcpyAsync(out.data(), dout, out.size() * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  for (int b = 0; b < blocks; ++b)
    for (int i = 0; i < n; ++i) REQUIRE(out[b * n + i] == in[b * n + (i + 1) % n]);

  ::mg_emu::launch(flag_kernel, "flag_kernel", 1, 64)(din, dout);  // in[0..60) are negative
  REQUIRE(launch_message() == "");
  int flag = 0;
  REQUIRE(cudaMemcpyAsync(&flag, dout, 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  CHECK(flag == 1);

  ::mg_emu::launch(warp_swap_kernel, "warp_swap_kernel", 1, 64)(dout, 0);
  REQUIRE(launch_message() == "");
  REQUIRE(cudaMemcpyAsync(out.data(), dout, 64 * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  for (int i = 0; i < 64; ++i) CHECK(out[i] == (i ^ 1));

  std::vector<double> x(64);
  double ref = 0;
  for (int i = 0; i < 64; ++i) ref += x[i] = 1.0 / (i + 1);
  double* dx = device_alloc<double>(64);
  REQUIRE(cudaMemcpyAsync(dx, x.data(), 64 * 8, cudaMemcpyHostToDevice) == cudaSuccess);
  ::mg_emu::launch(tree_sum_kernel, "tree_sum_kernel", 1, 64)(dx, dx);
  REQUIRE(launch_message() == "");
  double sum = 0;
  REQUIRE(cudaMemcpyAsync(&sum, dx, 8, cudaMemcpyDeviceToHost) == cudaSuccess);
  CHECK(sum == doctest::Approx(ref).epsilon(1e-14));
  cudaFree(din), cudaFree(dout), cudaFree(dx);
}

TEST_CASE("cuda emulator: the shared-memory race check names the kernel, the two threads and the byte") {
  const bool reverse = std::getenv("MG_CUDA_EMU_ORDER") && std::string(std::getenv("MG_CUDA_EMU_ORDER")) == "reverse";
  int* din = device_alloc<int>(256);
  int* dout = device_alloc<int>(256);
  REQUIRE(cudaMemcpyAsync(din, std::vector<int>(256, 1).data(), 256 * 4, cudaMemcpyHostToDevice) == cudaSuccess);

  // Forward: thread 0 reads buf[1] (bytes 4..7), then thread 1 writes it. Reverse: thread 255 writes
  // buf[255] (bytes 1020..1023), then thread 254 reads it. The first byte of the element is reported.
  // The last launch's message names the kernel and, for this thread order, the race.
  auto check_race = [&](const std::string& kernel, const std::string& forward, const std::string& reversed) {
    const std::string msg = launch_message();
    CHECK(msg.find("kernel " + kernel) != std::string::npos);
    CHECK(msg.find(reverse ? reversed : forward) != std::string::npos);
    return msg;
  };
  ::mg_emu::launch(rotate_checked_racy_kernel, "rotate_checked_racy_kernel", 1, 256)(din, dout);
  const std::string msg =
      check_race("rotate_checked_racy_kernel", "byte 4: thread (1,0,0) writes it and thread (0,0,0) read it",
                 "byte 1020: thread (254,0,0) reads it and thread (255,0,0) wrote it");
  CHECK(msg.find("shared-memory race on buf") != std::string::npos);

  ::mg_emu::launch(last_writer_kernel, "last_writer_kernel", 1, 8)(dout);
  check_race("last_writer_kernel", "on who, byte 0: thread (1,0,0) writes it and thread (0,0,0) wrote it",
             "on who, byte 0: thread (6,0,0) writes it and thread (7,0,0) wrote it");

  // Across warps a warp barrier orders nothing: every thread writes, then (after the warp barrier) lane l
  // of one warp reads what lane l of the other wrote. Forward, thread 0 reads first; reverse, thread 63.
  ::mg_emu::launch(warp_swap_kernel, "warp_swap_kernel", 1, 64)(dout, 1);
  check_race("warp_swap_kernel", "byte 128: thread (0,0,0) reads it and thread (32,0,0) wrote it",
             "byte 124: thread (63,0,0) reads it and thread (31,0,0) wrote it");
  cudaFree(din), cudaFree(dout);
}

TEST_CASE("cuda emulator: the library's kernels run with their static shared memory checked") {
  // A row sum of 300 floats goes through block_sum (cuda/launch.cuh), whose buffer is a checked array.
  const uint64_t before = ::mg_emu::shared_accesses_checked();
  std::vector<float> v(2 * 300);
  for (size_t i = 0; i < v.size(); ++i) v[i] = (float)(i % 7);
  const mg::Tensor x = mg::from_vector(v, {2, 300}, mg::kCUDA);
  const std::vector<float> s = mg::sum(x, {1}).to(mg::kCPU).to_vector<float>();
  CHECK(launch_message() == "");
  CHECK(::mg_emu::shared_accesses_checked() > before);
  double r0 = 0, r1 = 0;
  for (int i = 0; i < 300; ++i) r0 += v[i], r1 += v[300 + i];
  CHECK(s == std::vector<float>{(float)r0, (float)r1});
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
