// NCCL communicators for data-parallel training (cuda/nccl.h). With MG_HAVE_NCCL (CMake found NCCL beside
// the CUDA toolkit, or the emulator's stand-in under -DMG_CUDA=EMULATE with MPI) the real calls; without
// it each function but built_with_nccl throws, so that train/ asks built_with_nccl() first and keeps
// its host-staged MPI path.
#include <cuda_runtime.h>

#include <cstring>

#include "core/error.h"
#include "cuda/check.cuh"
#include "cuda/nccl.h"

#if MG_HAVE_NCCL
#include <nccl.h>

#define MG_NCCL_CHECK(call, op) MG_CHECK_STATUS(call, op, ncclSuccess, "NCCL", ncclGetErrorString(st_))
#endif

namespace mg::cuda {

#if MG_HAVE_NCCL

static_assert(sizeof(ncclUniqueId) == NcclId::kBytes, "cuda/nccl.h's NcclId must hold an ncclUniqueId");

bool built_with_nccl() { return true; }

NcclId nccl_unique_id() {
  ncclUniqueId id;
  MG_NCCL_CHECK(ncclGetUniqueId(&id), "nccl");
  NcclId out;
  std::memcpy(out.bytes, &id, sizeof(id));
  return out;
}

struct Communicator::Impl {
  ncclComm_t comm = nullptr;
  cudaStream_t comm_stream = nullptr;
  cudaEvent_t computed = nullptr;  // recorded on the compute stream, waited for by the communication stream
  cudaEvent_t reduced = nullptr;   // the other way
};

Communicator::Communicator(const NcclId& id, int size, int rank, int device)
    : impl_(std::make_unique<Impl>()), size_(size), rank_(rank), device_(device) {
  MG_CHECK(size >= 1 && rank >= 0 && rank < size, "[nccl] rank {} of {}: the rank must be in [0, size)", rank, size);
  set_device(device, "nccl");
  // A communication stream of its own, so that a bucket's all-reduce runs while backward's kernels go on
  // on the compute stream.
  MG_CUDA_CHECK(cudaStreamCreateWithFlags(&impl_->comm_stream, cudaStreamNonBlocking), "nccl");
  MG_CUDA_CHECK(cudaEventCreateWithFlags(&impl_->computed, cudaEventDisableTiming), "nccl");
  MG_CUDA_CHECK(cudaEventCreateWithFlags(&impl_->reduced, cudaEventDisableTiming), "nccl");
  ncclUniqueId nid;
  std::memcpy(&nid, id.bytes, sizeof(nid));
  // Blocks until every rank has called it with the same id.
  MG_NCCL_CHECK(ncclCommInitRank(&impl_->comm, size, nid, rank), "nccl");
}

Communicator::~Communicator() {
  if (!impl_) return;
  cudaSetDevice(device_);
  if (impl_->comm_stream) cudaStreamSynchronize(impl_->comm_stream);  // nothing may still read the buffers
  if (impl_->comm) ncclCommDestroy(impl_->comm);
  if (impl_->computed) cudaEventDestroy(impl_->computed);
  if (impl_->reduced) cudaEventDestroy(impl_->reduced);
  if (impl_->comm_stream) cudaStreamDestroy(impl_->comm_stream);
}

void Communicator::all_reduce_sum(float* data, int64_t n) {
  if (n <= 0) return;
  set_device(device_, "nccl");
  MG_CUDA_CHECK(cudaEventRecord(impl_->computed, stream(device_)), "nccl");
  MG_CUDA_CHECK(cudaStreamWaitEvent(impl_->comm_stream, impl_->computed, 0), "nccl");
  MG_NCCL_CHECK(ncclAllReduce(data, data, (size_t)n, ncclFloat32, ncclSum, impl_->comm, impl_->comm_stream), "nccl");
}

void Communicator::join() {
  set_device(device_, "nccl");
  MG_CUDA_CHECK(cudaEventRecord(impl_->reduced, impl_->comm_stream), "nccl");
  MG_CUDA_CHECK(cudaStreamWaitEvent(stream(device_), impl_->reduced, 0), "nccl");
}

void Communicator::synchronize() {
  set_device(device_, "nccl");
  MG_CUDA_CHECK(cudaStreamSynchronize(impl_->comm_stream), "nccl");
  ncclResult_t async = ncclSuccess;
  MG_NCCL_CHECK(ncclCommGetAsyncError(impl_->comm, &async), "nccl");
  MG_NCCL_CHECK(async, "nccl");
}

#else  // a CUDA build without NCCL

namespace {
[[noreturn]] void no_nccl() {
  MG_THROW(
      "[nccl] this build has no NCCL (-DMG_NCCL=OFF, or nccl.h and libnccl not found beside the CUDA toolkit, "
      "or no MPI): install NCCL and rebuild with -DMG_NCCL=ON, or leave the gradients to the host-staged MPI "
      "all-reduce");
}
}  // namespace

bool built_with_nccl() { return false; }
NcclId nccl_unique_id() { no_nccl(); }
struct Communicator::Impl {};
Communicator::Communicator(const NcclId&, int size, int rank, int device) : size_(size), rank_(rank), device_(device) {
  no_nccl();
}
Communicator::~Communicator() = default;
void Communicator::all_reduce_sum(float*, int64_t) { no_nccl(); }
void Communicator::join() { no_nccl(); }
void Communicator::synchronize() { no_nccl(); }

#endif

}  // namespace mg::cuda
