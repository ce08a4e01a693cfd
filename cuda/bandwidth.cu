// Timing helpers of the CUDA benchmarks (bench/scan_bench_cuda.cpp): CUDA events on the one stream,
// and the device-to-device copy that the scan's bytes per second are compared with.
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "cuda/check.cuh"
#include "cuda/scan_kernels.h"

namespace mg::cuda {

namespace {

// Owns a pair of events; destroyed even when a checked call throws.
struct EventPair {
  cudaEvent_t start = nullptr, stop = nullptr;
  EventPair() {
    MG_CUDA_CHECK(cudaEventCreate(&start), "bench");
    MG_CUDA_CHECK(cudaEventCreate(&stop), "bench");
  }
  ~EventPair() {
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
  }
  EventPair(const EventPair&) = delete;
  EventPair& operator=(const EventPair&) = delete;
};

}  // namespace

double time_on_stream(int device, const std::function<void()>& enqueue) {
  set_device(device, "bench");
  cudaStream_t st = stream(device);
  EventPair ev;
  MG_CUDA_CHECK(cudaEventRecord(ev.start, st), "bench");
  enqueue();
  MG_CUDA_CHECK(cudaEventRecord(ev.stop, st), "bench");
  MG_CUDA_CHECK(cudaEventSynchronize(ev.stop), "bench");
  float ms = 0;
  MG_CUDA_CHECK(cudaEventElapsedTime(&ms, ev.start, ev.stop), "bench");
  return ms * 1e-3;
}

double time_device_copy(void* dst, const void* src, size_t nbytes, int reps, int device) {
  set_device(device, "bench");
  cudaStream_t st = stream(device);
  auto copy = [&] { MG_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, st), "bench"); };
  time_on_stream(device, copy);  // warm-up
  std::vector<double> times;
  for (int r = 0; r < std::max(1, reps); ++r) times.push_back(time_on_stream(device, copy));
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace mg::cuda
