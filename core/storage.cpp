#include "core/storage.h"

#include <atomic>
#include <cstdlib>
#include <new>

#include "core/cpu_allocator.h"
#include "core/error.h"
#include "cuda/runtime.h"

namespace mg {

namespace {
std::atomic<size_t> g_cpu_live{0}, g_cpu_peak{0};
void count_alloc(size_t n) {
  size_t live = g_cpu_live.fetch_add(n, std::memory_order_relaxed) + n;
  size_t peak = g_cpu_peak.load(std::memory_order_relaxed);
  while (live > peak && !g_cpu_peak.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {
  }
}
}  // namespace

size_t cpu_bytes_in_use() { return g_cpu_live.load(std::memory_order_relaxed); }
size_t cpu_peak_bytes() { return g_cpu_peak.load(std::memory_order_relaxed); }
void reset_cpu_peak_bytes() { g_cpu_peak.store(g_cpu_live.load(std::memory_order_relaxed), std::memory_order_relaxed); }

Storage::Storage(size_t nbytes, Device device, const char* op) : nbytes_(nbytes), device_(device) {
  if (device.is_cuda()) {
    data_ = cuda::device_malloc(nbytes, device.index, op);
    return;
  }
  data_ = cpu_alloc(nbytes, op);  // 64-byte aligned, cached, huge pages when large (core/cpu_allocator.h)
  count_alloc(nbytes_);
}

Storage::~Storage() {
  if (device_.is_cuda())
    cuda::device_free(data_, device_.index);
  else {
    cpu_free(data_, nbytes_);
    g_cpu_live.fetch_sub(nbytes_, std::memory_order_relaxed);
  }
}

}  // namespace mg
