// The caching device allocator behind device_malloc/device_free (installed below as core's device backend,
// which Storage allocates through): one BlockCache
// (cuda/block_cache.h, where the policy is) per device over cudaMalloc/cudaFree. The caches are never
// destroyed: tensors that die during static destruction still find theirs, and nothing is handed back
// to a driver that may already be shutting down.
#include <cuda_runtime.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "core/device_backend.h"
#include "core/error.h"
#include "cuda/block_cache.h"
#include "cuda/check.cuh"
#include "cuda/runtime.h"

namespace mg::cuda {

namespace {

int cached_device_count() {
  static const int n = device_count();
  return n;
}

BlockCache& cache(int device) {
  static std::mutex mu;
  static auto* caches = new std::vector<std::unique_ptr<BlockCache>>();  // leaked on purpose (see above)
  std::lock_guard<std::mutex> lock(mu);
  if (device >= (int)caches->size()) caches->resize(device + 1);
  auto& c = (*caches)[device];
  if (!c) {
    c = std::make_unique<BlockCache>(
        [device](size_t n) -> void* {
          set_device(device, "device_malloc");
          void* p = nullptr;
          cudaError_t err = cudaMalloc(&p, n);
          if (err == cudaErrorMemoryAllocation) {
            cudaGetLastError();  // clear it: the cache retries after emptying itself
            return nullptr;
          }
          MG_CUDA_CHECK(err, "device_malloc");
          return p;
        },
        [device](void* p) {
          cudaSetDevice(device);
          cudaFree(p);
        },
        [device] {
          set_device(device, "empty_cache");
          MG_CUDA_CHECK(cudaStreamSynchronize(stream(device)), "empty_cache");
        });
  }
  return *c;
}

void check_device(int device, const char* op) {
  MG_CHECK(device >= 0 && device < cached_device_count(),
           "[{}] cuda:{} is not present (this machine has {} CUDA devices)", op, device, cached_device_count());
}

}  // namespace

void* device_malloc(size_t nbytes, int device, const char* op) {
  check_device(device, op);
  BlockCache& c = cache(device);
  void* p = c.allocate(nbytes);
  if (!p) {
    BlockCacheStats s = c.stats();
    size_t free_b = 0, total_b = 0;
    cudaSetDevice(device);
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) cudaGetLastError();
    MG_THROW(
        "[{}] out of memory on cuda:{}: asked for {} bytes (block of {}); tensors hold {} bytes, the cache held {} "
        "bytes before it was emptied for a retry; the driver reports {} of {} bytes free",
        op, device, nbytes, round_block_size(nbytes), s.in_use, s.cached, free_b, total_b);
  }
#if MG_CUDA_EMULATED
  // Under the emulator every block, new or reused, starts as NaN bytes: a kernel that reads memory nobody
  // wrote fails its test instead of passing on stale values. The rest of the block holds guard bytes that
  // the emulator checks after each launch (cuda/emulator/cuda_runtime.h).
  ::mg_emu::guard_block(p, nbytes, round_block_size(nbytes));  // (under ASan: unpoisons the tensor's bytes)
  std::memset(p, 0xff, nbytes);
#endif
  return p;
}

void device_free(void* p, int device) noexcept {
  if (!p || device < 0) return;
#if MG_CUDA_EMULATED
  ::mg_emu::unguard_block(p);
#endif
  try {
    cache(device).release(p);
  } catch (...) {}
}

// core reaches the CUDA backend through these (core/device_backend.h). The CUDA library is linked whole
// (CMakeLists.txt), so this initialiser runs in every program that links it.
namespace {
[[maybe_unused]] const bool g_installed = set_device_backend({&device_count, &device_malloc, &device_free});
}  // namespace

MemoryStats memory_stats(int device) {
  check_device(device, "memory_stats");
  BlockCacheStats s = cache(device).stats();
  MemoryStats m;
  m.in_use = s.in_use, m.peak = s.peak, m.cached = s.cached, m.driver_mallocs = s.driver_mallocs;
  return m;
}

void reset_peak_memory(int device) {
  check_device(device, "reset_peak_memory");
  cache(device).reset_peak();
}

void empty_cache(int device) {
  check_device(device, "empty_cache");
  cache(device).empty();
}

}  // namespace mg::cuda
