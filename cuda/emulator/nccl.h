// The CUDA emulator's stand-in for <nccl.h> (a build with -DMG_CUDA=EMULATE and MPI): the calls that
// cuda/nccl.cu makes, implemented in cuda/emulator/nccl.cpp, so that the NCCL path of the gradient
// reducer (train/distributed.cpp) runs without a GPU.
//
// What it is: a communicator of one rank copies (an all-reduce of one rank is the identity); a
// communicator of N ranks is MPI_COMM_WORLD (ranks started by mpirun, MPI initialised by train/), and an
// all-reduce is a blocking MPI_Allreduce on the buffers, which are host memory under the emulator. Like
// the rest of the emulator it runs each call when it is queued, so the stream ordering is trivially
// kept. The id is checked: ncclCommInitRank of N > 1 ranks fails unless every rank passed the same id,
// so a missing or wrong broadcast of the id is an error, as with NCCL. What it is not: NCCL's
// algorithms or their floating-point order (MPI's is used), or a test of overlap.
#pragma once
#include <cstddef>

#include "cuda_runtime.h"

#define NCCL_UNIQUE_ID_BYTES 128
struct ncclUniqueId {
  char internal[NCCL_UNIQUE_ID_BYTES];
};

enum ncclResult_t {
  ncclSuccess = 0,
  ncclUnhandledCudaError = 1,
  ncclSystemError = 2,
  ncclInternalError = 3,
  ncclInvalidArgument = 4,
  ncclInvalidUsage = 5,
  ncclRemoteError = 6,
  ncclInProgress = 7,
};
// nccl.h's values; the emulator reduces float32 sums only (others are ncclInvalidArgument).
enum ncclDataType_t { ncclInt8 = 0, ncclInt32 = 2, ncclInt64 = 4, ncclFloat16 = 6, ncclFloat32 = 7, ncclFloat64 = 8 };
enum ncclRedOp_t { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3, ncclAvg = 4 };

struct ncclComm;
using ncclComm_t = ncclComm*;

ncclResult_t ncclGetUniqueId(ncclUniqueId* id);
ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank);
ncclResult_t ncclCommDestroy(ncclComm_t comm);
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* async_error);
ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream);
const char* ncclGetErrorString(ncclResult_t result);
