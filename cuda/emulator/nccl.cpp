// The emulated NCCL of cuda/emulator/nccl.h: one rank copies, N ranks are MPI_COMM_WORLD and all-reduce
// with MPI_Allreduce on the (host) buffers. Built only under -DMG_CUDA=EMULATE with MPI.
#include "nccl.h"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>

#include <unistd.h>

struct ncclComm {
  int nranks = 1, rank = 0;
};

namespace {

thread_local std::string g_detail;  // why the last call failed, shown by ncclGetErrorString

ncclResult_t fail(ncclResult_t r, std::string why) {
  g_detail = std::move(why);
  return r;
}

constexpr uint64_t kMagic = 0x6d672d656d752d31ull;  // "mg-emu-1": an id that ncclGetUniqueId made

}  // namespace

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  if (!id) return fail(ncclInvalidArgument, "ncclGetUniqueId: null id");
  std::memset(id->internal, 0, sizeof(id->internal));
  // Unique per call as NCCL's is (its address and port): a random value, the time and the process.
  std::random_device rd;
  const uint64_t words[4] = {kMagic, ((uint64_t)rd() << 32) | rd(),
                             (uint64_t)std::chrono::steady_clock::now().time_since_epoch().count(), (uint64_t)getpid()};
  std::memcpy(id->internal, words, sizeof(words));
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
  if (!comm) return fail(ncclInvalidArgument, "ncclCommInitRank: null comm");
  *comm = nullptr;
  if (nranks < 1 || rank < 0 || rank >= nranks)
    return fail(ncclInvalidArgument,
                "ncclCommInitRank: rank " + std::to_string(rank) + " of " + std::to_string(nranks));
  uint64_t magic;
  std::memcpy(&magic, id.internal, sizeof(magic));
  if (magic != kMagic) return fail(ncclInvalidArgument, "ncclCommInitRank: the id was not made by ncclGetUniqueId");
  if (nranks > 1) {
    // N ranks are MPI_COMM_WORLD: MPI must be running with the same size and rank.
    int init = 0, size = 0, me = -1;
    MPI_Initialized(&init);
    if (!init) return fail(ncclInvalidUsage, "ncclCommInitRank: the emulator needs MPI initialised for N > 1 ranks");
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    if (size != nranks || me != rank)
      return fail(ncclInvalidUsage, "ncclCommInitRank: the emulator maps a communicator onto MPI_COMM_WORLD (rank " +
                                        std::to_string(me) + " of " + std::to_string(size) + "), not rank " +
                                        std::to_string(rank) + " of " + std::to_string(nranks));
    // Every rank must have been given the same id (NCCL would hang or fail otherwise): compare the
    // bytes' minimum and maximum over the ranks.
    unsigned char lo[NCCL_UNIQUE_ID_BYTES], hi[NCCL_UNIQUE_ID_BYTES];
    MPI_Allreduce(id.internal, lo, NCCL_UNIQUE_ID_BYTES, MPI_UNSIGNED_CHAR, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(id.internal, hi, NCCL_UNIQUE_ID_BYTES, MPI_UNSIGNED_CHAR, MPI_MAX, MPI_COMM_WORLD);
    if (std::memcmp(lo, hi, NCCL_UNIQUE_ID_BYTES) != 0)
      return fail(ncclInvalidUsage, "ncclCommInitRank: the ranks were given different ids");
  }
  *comm = new ncclComm{nranks, rank};
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  delete comm;
  return ncclSuccess;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* async_error) {
  if (!comm || !async_error) return fail(ncclInvalidArgument, "ncclCommGetAsyncError: null argument");
  *async_error = ncclSuccess;  // every call ran when it was made and reported its own error
  return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t) {
  if (!comm) return fail(ncclInvalidArgument, "ncclAllReduce: null comm");
  if (datatype != ncclFloat32 || op != ncclSum)
    return fail(ncclInvalidArgument, "ncclAllReduce: the emulator reduces float32 sums only");
  if (count == 0) return ncclSuccess;
  if (!mg_emu::is_device_pointer(sendbuff) || !mg_emu::is_device_pointer(recvbuff))
    return fail(ncclInvalidArgument, "ncclAllReduce: a buffer is not device memory");
  if (comm->nranks == 1) {
    if (sendbuff != recvbuff) std::memmove(recvbuff, sendbuff, count * sizeof(float));
    return ncclSuccess;
  }
  const float* src = static_cast<const float*>(sendbuff);
  float* dst = static_cast<float*>(recvbuff);
  constexpr size_t kMaxCount = size_t(1) << 30;  // MPI counts are int
  for (size_t i = 0; i < count; i += kMaxCount) {
    const int n = (int)std::min(kMaxCount, count - i);
    const int rc = src == dst ? MPI_Allreduce(MPI_IN_PLACE, dst + i, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD)
                              : MPI_Allreduce(src + i, dst + i, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return fail(ncclSystemError, "ncclAllReduce: MPI_Allreduce failed");
  }
  return ncclSuccess;
}

// NCCL's description of each result code, indexed by the code (ncclSuccess = 0 .. ncclInProgress = 7).
constexpr const char* kNcclResults[] = {
    "no error",                                            // ncclSuccess
    "unhandled cuda error",                                // ncclUnhandledCudaError
    "unhandled system error",                              // ncclSystemError
    "internal error",                                      // ncclInternalError
    "invalid argument",                                    // ncclInvalidArgument
    "invalid usage",                                       // ncclInvalidUsage
    "remote process exited or there was a network error",  // ncclRemoteError
    "NCCL operation in progress",                          // ncclInProgress
};
const char* ncclGetErrorString(ncclResult_t r) {
  const bool known = r >= 0 && r < (int)(sizeof kNcclResults / sizeof kNcclResults[0]);
  return mg_emu::error_text(known ? kNcclResults[r] : "unknown result code", g_detail);
}
