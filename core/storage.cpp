#include "core/storage.h"

#include <atomic>
#include <cstdlib>
#include <new>

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
  // 64-byte alignment for vector loads; aligned_alloc needs a multiple of the alignment.
  size_t rounded = ((nbytes + 63) / 64) * 64;
  data_ = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  MG_CHECK(data_ != nullptr, "[{}] out of memory allocating {} bytes on the cpu", op, nbytes);
  count_alloc(nbytes_);
}

Storage::~Storage() {
  if (device_.is_cuda())
    cuda::device_free(data_, device_.index);
  else {
    std::free(data_);
    g_cpu_live.fetch_sub(nbytes_, std::memory_order_relaxed);
  }
}

}  // namespace mg
