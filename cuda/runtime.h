// The host-side face of the CUDA backend. In a build without CUDA every function here throws
// "[op] this build has no CUDA support" (cuda/no_cuda.cpp); with CUDA they are in cuda/runtime.cu.
#pragma once
#include <cstddef>

namespace mg::cuda {

bool built_with_cuda();
int device_count();  // 0 without CUDA or without a device
void* device_malloc(size_t nbytes, int device, const char* op);
void device_free(void* p, int device) noexcept;
void copy_host_to_device(void* dst, const void* src, size_t nbytes, int device, const char* op);
void copy_device_to_host(void* dst, const void* src, size_t nbytes, int device, const char* op);
void copy_device_to_device(void* dst, const void* src, size_t nbytes, int device, const char* op);
void synchronize(int device);  // waits for all work queued on the device's stream; throws on a device fault
// Throws "[op] ... not implemented on cuda" until the kernel exists, or "no CUDA support".
[[noreturn]] void unsupported(const char* op);

}  // namespace mg::cuda
