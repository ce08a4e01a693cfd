// CUDA-only helpers shared by every .cu file: checked API calls, checked launches, the stream.
// Errors throw mg::Error naming the op, the call, the file and the line (never exit()).
#pragma once
#include <cuda_runtime.h>

#include <mutex>
#include <vector>

#include "core/error.h"

// Runs a library call and throws "[op] <lib> error in <call> at <file>:<line>: <message>" unless its status is
// `ok` (the message an expression of the status st_). The checks of CUDA, cuBLAS (cuda/blas.cu) and NCCL
// (cuda/nccl.cu) are this one.
#define MG_CHECK_STATUS(call, op, ok, lib, message)                                                             \
  do {                                                                                                          \
    const auto st_ = (call);                                                                                    \
    if (st_ != (ok)) MG_THROW("[{}] {} error in {} at {}:{}: {}", op, lib, #call, __FILE__, __LINE__, message); \
  } while (0)

#define MG_CUDA_CHECK(call, op) MG_CHECK_STATUS(call, op, cudaSuccess, "CUDA", cudaGetErrorString(st_))

// After every kernel launch: catches bad launch configurations at once (asynchronous faults surface
// at the next synchronising call, which is checked too).
#define MG_CUDA_LAUNCH_CHECK(op)                                                                                 \
  do {                                                                                                           \
    cudaError_t err_ = cudaGetLastError();                                                                       \
    if (err_ != cudaSuccess)                                                                                     \
      MG_THROW("[{}] CUDA kernel launch failed at {}:{}: {}", op, __FILE__, __LINE__, cudaGetErrorString(err_)); \
  } while (0)

namespace mg::cuda {

// The device guard: makes `device` current for the calls and launches that follow (every launcher and
// every runtime call that names a device starts with it). Throws naming `op` on failure.
inline void set_device(int device, const char* op) { MG_CUDA_CHECK(cudaSetDevice(device), op); }

// The one stream of `device` on which every kernel, copy and cuBLAS call runs (created on first use).
// Work on it is ordered, so a freed block can be handed to the next allocation without a sync.
cudaStream_t stream(int device);

// One object per device, made on first use (a stream, a cuBLAS handle): get() runs `make()` once per
// device, with the device current and under the table's lock, and keeps what it returns for the life of
// the process (never destroyed: the driver may be gone at static destruction).
template <class H>
class PerDevice {
 public:
  template <class Make>
  H get(int device, const char* op, Make make) {
    std::lock_guard<std::mutex> lock(mu_);
    if (device >= (int)items_.size()) items_.resize(device + 1, H{});
    if (!items_[device]) {
      set_device(device, op);
      items_[device] = make();
    }
    return items_[device];
  }

 private:
  std::mutex mu_;
  std::vector<H> items_;
};

}  // namespace mg::cuda
