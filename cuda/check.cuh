// CUDA-only helpers shared by every .cu file: checked API calls, checked launches, the stream.
// Errors throw mg::Error naming the op, the call, the file and the line (never exit()).
#pragma once
#include <cuda_runtime.h>

#include "core/error.h"

#define MG_CUDA_CHECK(call, op)                                                                                \
  do {                                                                                                         \
    cudaError_t err_ = (call);                                                                                 \
    if (err_ != cudaSuccess)                                                                                   \
      MG_THROW("[{}] CUDA error in {} at {}:{}: {}", op, #call, __FILE__, __LINE__, cudaGetErrorString(err_)); \
  } while (0)

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

}  // namespace mg::cuda
