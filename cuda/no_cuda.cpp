// Stand-in for the CUDA backend in builds without CUDA: every request is a clear error.
#include "core/error.h"
#include "cuda/runtime.h"

namespace mg::cuda {

namespace {
[[noreturn]] void no_cuda(const char* op) {
  MG_THROW("[{}] this build has no CUDA support (configure with -DMG_CUDA=ON on a machine with the CUDA toolkit)", op);
}
}  // namespace

bool built_with_cuda() { return false; }
int device_count() { return 0; }
void* device_malloc(size_t, int, const char* op) { no_cuda(op); }
void device_free(void*, int) noexcept {}
void copy_host_to_device(void*, const void*, size_t, int, const char* op) { no_cuda(op); }
void copy_device_to_host(void*, const void*, size_t, int, const char* op) { no_cuda(op); }
void copy_device_to_device(void*, const void*, size_t, int, const char* op) { no_cuda(op); }
void synchronize(int) {}
void unsupported(const char* op) { no_cuda(op); }
MemoryStats memory_stats(int) { return {}; }
void reset_peak_memory(int) {}
void empty_cache(int) {}
void set_allow_tf32(bool) {}
bool allow_tf32() { return false; }

}  // namespace mg::cuda
