// The host-side face of NCCL for data-parallel training (train/distributed.cpp): a communicator over
// the ranks, one GPU each, and a float32 sum queued on its own stream. Defined in cuda/nccl.cu (real
// NCCL in a build with -DMG_NCCL found, the emulated one of cuda/emulator/nccl.h under
// -DMG_CUDA=EMULATE with MPI); in a CUDA build without NCCL every function but built_with_nccl throws,
// and in a build without CUDA cuda/no_cuda.cpp does. No CUDA or NCCL type appears here, so that train/
// includes it without the toolkit. C++17 (the .cu files include it).
#pragma once
#include <cstdint>
#include <memory>

namespace mg::cuda {

bool built_with_nccl();

// An ncclUniqueId: made by rank 0 and sent to every other rank (train/ does it over MPI) before each
// makes its communicator from it.
struct NcclId {
  static constexpr int kBytes = 128;  // NCCL_UNIQUE_ID_BYTES
  char bytes[kBytes] = {};
};
NcclId nccl_unique_id();

// One rank's member of a communicator of `size` ranks on `device` (cuda:device), with its own
// communication stream. The collectives are queued, not waited for: the host goes on at once.
//
// Ordering with the device's compute stream (cuda/check.cuh's stream(device), where every op runs):
// all_reduce_sum starts on the communication stream only after the work queued on the compute stream
// so far (an event), so the buffer holds the values written by the ops queued before the call; and
// join() makes the compute stream wait for every collective queued so far (an event the other way), so
// the ops queued after join() see the sums. Neither blocks the host.
class Communicator {
 public:
  // Collective: every rank of the communicator calls it with the same id and size and its own rank.
  // Throws mg::Error naming NCCL's error.
  Communicator(const NcclId& id, int size, int rank, int device);
  ~Communicator();  // waits for the collectives in flight, then destroys the communicator and the stream
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  // The sum over the ranks of `n` float32 at `data` (device memory of this rank's device), in place.
  // Every rank must queue the same collectives in the same order.
  void all_reduce_sum(float* data, int64_t n);
  void join();         // the compute stream waits for the collectives queued so far
  void synchronize();  // the host waits for them; throws if NCCL reported an asynchronous error

  int size() const { return size_; }
  int rank() const { return rank_; }
  int device() const { return device_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int size_, rank_, device_;
};

}  // namespace mg::cuda
