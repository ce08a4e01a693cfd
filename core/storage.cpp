#include "core/storage.h"

#include <cstdlib>
#include <new>

#include "core/error.h"
#include "cuda/runtime.h"

namespace mg {

Storage::Storage(size_t nbytes, Device device, const char* op) : nbytes_(nbytes), device_(device) {
  if (device.is_cuda()) {
    data_ = cuda::device_malloc(nbytes, device.index, op);
    return;
  }
  // 64-byte alignment for vector loads; aligned_alloc needs a multiple of the alignment.
  size_t rounded = ((nbytes + 63) / 64) * 64;
  data_ = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  MG_CHECK(data_ != nullptr, "[{}] out of memory allocating {} bytes on the cpu", op, nbytes);
}

Storage::~Storage() {
  if (device_.is_cuda())
    cuda::device_free(data_, device_.index);
  else
    std::free(data_);
}

}  // namespace mg
