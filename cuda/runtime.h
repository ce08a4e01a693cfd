// The host-side face of the CUDA backend. With CUDA these are defined in cuda/runtime.cu, the memory
// functions in cuda/allocator.cu; in a build without CUDA, cuda/no_cuda.cpp defines each one to throw
// "[op] this build has no CUDA support" or to report nothing (no devices, no memory).
#pragma once
#include <cstddef>
#include <cstdint>

namespace mg::cuda {

bool built_with_cuda();
int device_count();  // 0 without CUDA or without a device
void* device_malloc(size_t nbytes, int device, const char* op);
void device_free(void* p, int device) noexcept;
void copy_host_to_device(void* dst, const void* src, size_t nbytes, int device, const char* op);
void copy_device_to_host(void* dst, const void* src, size_t nbytes, int device, const char* op);
void copy_device_to_device(void* dst, const void* src, size_t nbytes, int device, const char* op);
// Between two devices: waits for the destination's queued work, copies, and waits for the copy.
void copy_between_devices(void* dst, int dst_device, const void* src, int src_device, size_t nbytes, const char* op);
void synchronize(int device);  // waits for all work queued on the device's stream; throws on a device fault
// Device memory counters of the caching allocator (cuda/allocator.cu): bytes held by live tensors
// (counted in the allocator's block sizes, see cuda/block_cache.h), their high-water mark since the
// last reset, bytes cached (freed by tensors, kept for reuse), and how many times the allocator has
// called cudaMalloc (flat after warm-up: no cudaMalloc per op). All 0 without CUDA.
struct MemoryStats {
  size_t in_use = 0, peak = 0, cached = 0;
  uint64_t driver_mallocs = 0;
};
MemoryStats memory_stats(int device);
void reset_peak_memory(int device);  // sets the peak to the bytes in use now
void empty_cache(int device);        // returns cached blocks to the driver

// Device-side timing (the op profiler's, as torch.profiler's CUDA events): record_timing_event queues an
// event on the device's stream and returns its handle; elapsed_ms waits for `end` and gives the device
// time from `start` to it; release_timing_event frees a handle. Nothing is synchronised around the op.
using TimingEvent = void*;
TimingEvent record_timing_event(int device);
float elapsed_ms(TimingEvent start, TimingEvent end);
void release_timing_event(TimingEvent e) noexcept;

// cuBLAS float32 matmuls in TF32 (faster, ~1e-3 relative error) when on; off (full float32) by default.
void set_allow_tf32(bool on);
bool allow_tf32();

}  // namespace mg::cuda
