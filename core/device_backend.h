// The hook through which core reaches a device backend. core knows no backend: the CUDA one installs
// itself here when it is linked in (cuda/allocator.cu), and Storage allocates through it and
// require_device (core/device.h) counts devices through it. Without one, every device request is the
// error of throw_no_cuda(). C++17 and free of other headers, so that .cu files can include it.
#pragma once
#include <cstddef>

namespace mg {

struct DeviceBackend {
  int (*device_count)();                                         // devices present on this machine
  void* (*allocate)(size_t nbytes, int device, const char* op);  // throws mg::Error on failure
  void (*release)(void* p, int device) noexcept;
};

// Installs `b` (call it during static initialisation, before any device tensor exists). Returns true,
// so that a backend can write `const bool installed = set_device_backend(...)`.
bool set_device_backend(DeviceBackend b);
// The installed backend, or null in a build without one.
const DeviceBackend* device_backend();

// The one "no CUDA" error: "[op] this build has no CUDA support (configure with -DMG_CUDA=ON ...)".
[[noreturn]] void throw_no_cuda(const char* op);

}  // namespace mg
