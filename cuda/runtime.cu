// CUDA runtime glue: device memory and copies. Every call is checked and a failure throws mg::Error
// naming the call, file and line. The caching allocator and kernels come with the CUDA backend.
#include <cuda_runtime.h>

#include "core/error.h"
#include "cuda/runtime.h"

#define MG_CUDA_CHECK(call, op)                                                                  \
  do {                                                                                           \
    cudaError_t err_ = (call);                                                                   \
    if (err_ != cudaSuccess)                                                                     \
      MG_THROW("[{}] CUDA error in {} at {}:{}: {}", op, #call, __FILE__, __LINE__,              \
               cudaGetErrorString(err_));                                                        \
  } while (0)

namespace mg::cuda {

bool built_with_cuda() { return true; }

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

void* device_malloc(size_t nbytes, int device, const char* op) {
  MG_CHECK(device < device_count(), "[{}] cuda:{} is not present (this machine has {} CUDA devices)", op,
           device, device_count());
  void* p = nullptr;
  MG_CUDA_CHECK(cudaSetDevice(device), op);
  MG_CUDA_CHECK(cudaMalloc(&p, nbytes == 0 ? 1 : nbytes), op);
  return p;
}

void device_free(void* p, int device) noexcept {
  cudaSetDevice(device);
  cudaFree(p);
}

void copy_host_to_device(void* dst, const void* src, size_t n, int device, const char* op) {
  MG_CUDA_CHECK(cudaSetDevice(device), op);
  MG_CUDA_CHECK(cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice), op);
}
void copy_device_to_host(void* dst, const void* src, size_t n, int device, const char* op) {
  MG_CUDA_CHECK(cudaSetDevice(device), op);
  MG_CUDA_CHECK(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost), op);
}
void copy_device_to_device(void* dst, const void* src, size_t n, int device, const char* op) {
  MG_CUDA_CHECK(cudaSetDevice(device), op);
  MG_CUDA_CHECK(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToDevice), op);
}
void synchronize(int device) {
  cudaSetDevice(device);
  cudaDeviceSynchronize();
}
void unsupported(const char* op) {
  MG_THROW("[{}] is not implemented on cuda yet (move the tensors to the cpu with .to(mg::kCPU))", op);
}

}  // namespace mg::cuda
