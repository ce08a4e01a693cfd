// Storage: a block of bytes on one device, shared by every view of it, with a version counter that
// in-place ops bump so autograd can tell when a saved tensor was changed before backward.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/device.h"

namespace mg {

class Storage {
 public:
  // Allocates nbytes (uninitialised) on `device`; `op` names the caller in error messages.
  Storage(size_t nbytes, Device device, const char* op = "alloc");
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  uint64_t version() const { return version_; }
  void bump_version() { ++version_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  uint64_t version_ = 0;
};

// Live bytes of CPU storages, and the high-water mark since the last reset (for memory benchmarks
// and tests: counts every Tensor allocation on the CPU, not other heap use).
size_t cpu_bytes_in_use();
size_t cpu_peak_bytes();
void reset_cpu_peak_bytes();  // sets the peak to the bytes in use now

// Bytes of storage (any device) this thread has allocated so far: the profiler's "bytes allocated by
// an op" is the difference across the op. One thread-local add per allocation.
uint64_t storage_bytes_allocated_by_this_thread();

// An observer of every storage's allocation and release (the memory report, introspect/memory_report.h).
// Null (the default) costs one relaxed atomic load per allocation and per release.
struct StorageObserver {
  virtual ~StorageObserver() = default;
  virtual void allocated(const Storage* s) = 0;
  virtual void released(const Storage* s) = 0;
};
// Installs `o` (null: none) and returns the previous observer. The caller keeps `o` alive while installed.
StorageObserver* set_storage_observer(StorageObserver* o);

}  // namespace mg
