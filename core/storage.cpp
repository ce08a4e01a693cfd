#include "core/storage.h"

#include <atomic>
#include <cstdlib>
#include <new>

#include "core/cpu_allocator.h"
#include "core/device_backend.h"
#include "core/error.h"

namespace mg {

namespace {
const DeviceBackend* g_device_backend = nullptr;  // constant-initialised: a backend may install itself at any time
DeviceBackend g_installed_backend;

std::atomic<size_t> g_cpu_live{0}, g_cpu_peak{0};
thread_local uint64_t t_allocated = 0;
std::atomic<StorageObserver*> g_observer{nullptr};
void count_alloc(size_t n) {
  size_t live = g_cpu_live.fetch_add(n, std::memory_order_relaxed) + n;
  size_t peak = g_cpu_peak.load(std::memory_order_relaxed);
  while (live > peak && !g_cpu_peak.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {}
}
}  // namespace

bool set_device_backend(DeviceBackend b) {
  g_installed_backend = b;
  g_device_backend = &g_installed_backend;
  return true;
}
const DeviceBackend* device_backend() { return g_device_backend; }

void throw_no_cuda(const char* op) {
  MG_THROW("[{}] this build has no CUDA support (configure with -DMG_CUDA=ON on a machine with the CUDA toolkit)", op);
}

size_t cpu_bytes_in_use() { return g_cpu_live.load(std::memory_order_relaxed); }
size_t cpu_peak_bytes() { return g_cpu_peak.load(std::memory_order_relaxed); }
void reset_cpu_peak_bytes() { g_cpu_peak.store(g_cpu_live.load(std::memory_order_relaxed), std::memory_order_relaxed); }

uint64_t storage_bytes_allocated_by_this_thread() { return t_allocated; }

StorageObserver* set_storage_observer(StorageObserver* o) { return g_observer.exchange(o); }

Storage::Storage(size_t nbytes, Device device, const char* op) : nbytes_(nbytes), device_(device) {
  if (device.is_cuda()) {
    if (!g_device_backend) throw_no_cuda(op);
    data_ = g_device_backend->allocate(nbytes, device.index, op);
  } else {
    data_ = cpu_alloc(nbytes, op);  // 64-byte aligned, cached, huge pages when large (core/cpu_allocator.h)
    count_alloc(nbytes_);
  }
  t_allocated += nbytes;
  if (StorageObserver* o = g_observer.load(std::memory_order_relaxed)) [[unlikely]]
    o->allocated(this);
}

Storage::~Storage() {
  if (StorageObserver* o = g_observer.load(std::memory_order_relaxed)) [[unlikely]]
    o->released(this);
  if (device_.is_cuda())
    g_device_backend->release(data_, device_.index);  // set, or this storage would not exist
  else {
    cpu_free(data_, nbytes_);
    g_cpu_live.fetch_sub(nbytes_, std::memory_order_relaxed);
  }
}

}  // namespace mg
