// CUDA runtime glue: the stream, copies, the TF32 switch. Every call is checked and a failure throws mg::Error
// naming the call, file and line. Device memory is in cuda/allocator.cu, cuBLAS in cuda/blas.cu.
#include <cuda_runtime.h>

#include <mutex>
#include <vector>

#include "core/error.h"
#include "cuda/check.cuh"
#include "cuda/runtime.h"

namespace mg::cuda {

bool built_with_cuda() { return true; }

cudaStream_t stream(int device) {
  static PerDevice<cudaStream_t> streams;
  return streams.get(device, "stream", [] {
    cudaStream_t s = nullptr;
    MG_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream");
    return s;
  });
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

void copy_host_to_device(void* dst, const void* src, size_t n, int device, const char* op) {
  if (n == 0) return;
  set_device(device, op);
  MG_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, stream(device)), op);
  MG_CUDA_CHECK(cudaStreamSynchronize(stream(device)), op);  // src is pageable host memory the caller may free
}
void copy_device_to_host(void* dst, const void* src, size_t n, int device, const char* op) {
  if (n == 0) return;
  set_device(device, op);
  MG_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, stream(device)), op);
  MG_CUDA_CHECK(cudaStreamSynchronize(stream(device)), op);
}
void copy_device_to_device(void* dst, const void* src, size_t n, int device, const char* op) {
  if (n == 0) return;
  set_device(device, op);
  MG_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, stream(device)), op);
}
void copy_between_devices(void* dst, int dst_device, const void* src, int src_device, size_t n, const char* op) {
  if (n == 0) return;
  // dst may be a cached block still read by work queued on its device's stream: wait for that first.
  synchronize(dst_device);
  set_device(src_device, op);
  MG_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_device, src, src_device, n, stream(src_device)), op);
  MG_CUDA_CHECK(cudaStreamSynchronize(stream(src_device)), op);
}
void synchronize(int device) {
  set_device(device, "synchronize");
  MG_CUDA_CHECK(cudaStreamSynchronize(stream(device)), "synchronize");
}
TimingEvent record_timing_event(int device) {
  set_device(device, "profiler");
  cudaEvent_t e = nullptr;
  MG_CUDA_CHECK(cudaEventCreate(&e), "profiler");
  const cudaError_t recorded = cudaEventRecord(e, stream(device));
  if (recorded != cudaSuccess) {
    cudaEventDestroy(e);
    MG_CUDA_CHECK(recorded, "profiler");
  }
  return e;
}
float elapsed_ms(TimingEvent start, TimingEvent end) {
  float ms = 0;
  MG_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(end)), "profiler");
  MG_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)), "profiler");
  return ms;
}
void release_timing_event(TimingEvent e) noexcept {
  if (e) cudaEventDestroy(static_cast<cudaEvent_t>(e));
}
namespace {
bool g_allow_tf32 = false;
}
void set_allow_tf32(bool on) { g_allow_tf32 = on; }
bool allow_tf32() { return g_allow_tf32; }

}  // namespace mg::cuda
