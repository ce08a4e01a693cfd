// CUDA runtime glue: the stream, device memory and copies. Every call is checked and a failure throws mg::Error
// naming the call, file and line. The caching allocator and kernels come with the CUDA backend.
#include <cuda_runtime.h>

#include <mutex>
#include <vector>

#include "core/error.h"
#include "cuda/check.cuh"
#include "cuda/runtime.h"

namespace mg::cuda {

bool built_with_cuda() { return true; }

cudaStream_t stream(int device) {
  static std::mutex mu;
  static std::vector<cudaStream_t> streams;
  std::lock_guard<std::mutex> lock(mu);
  if (device >= (int)streams.size()) streams.resize(device + 1, nullptr);
  if (!streams[device]) {
    MG_CUDA_CHECK(cudaSetDevice(device), "stream");
    MG_CUDA_CHECK(cudaStreamCreateWithFlags(&streams[device], cudaStreamNonBlocking), "stream");
  }
  return streams[device];
}

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
  MG_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, stream(device)), op);
  MG_CUDA_CHECK(cudaStreamSynchronize(stream(device)), op);  // src is pageable host memory the caller may free
}
void copy_device_to_host(void* dst, const void* src, size_t n, int device, const char* op) {
  MG_CUDA_CHECK(cudaSetDevice(device), op);
  MG_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, stream(device)), op);
  MG_CUDA_CHECK(cudaStreamSynchronize(stream(device)), op);
}
void copy_device_to_device(void* dst, const void* src, size_t n, int device, const char* op) {
  MG_CUDA_CHECK(cudaSetDevice(device), op);
  MG_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, stream(device)), op);
}
void synchronize(int device) {
  MG_CUDA_CHECK(cudaSetDevice(device), "synchronize");
  MG_CUDA_CHECK(cudaStreamSynchronize(stream(device)), "synchronize");
}
// Placeholders until the caching allocator lands (it owns these counters).
MemoryStats memory_stats(int) { return {}; }
void reset_peak_memory(int) {}
void empty_cache(int) {}
namespace {
bool g_allow_tf32 = false;
}
void set_allow_tf32(bool on) { g_allow_tf32 = on; }
bool allow_tf32() { return g_allow_tf32; }

void unsupported(const char* op) {
  MG_THROW("[{}] is not implemented on cuda yet (move the tensors to the cpu with .to(mg::kCPU))", op);
}

}  // namespace mg::cuda
