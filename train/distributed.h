// Data-parallel training across processes: the MPI world (Open MPI from the distribution, found at
// build time with -DMG_MPI=AUTO|ON|OFF) and the gradient all-reduce, bucketed and overlapped with
// backward. docs/distributed.md describes the scheme and what was measured.
//
// A process learns that it is one of N from the launcher's environment (mpirun sets
// OMPI_COMM_WORLD_SIZE, PMI-based launchers PMI_SIZE). Started alone it is a world of one and MPI is
// never initialised, so single-process programs and tests do not depend on an MPI runtime. A build
// without MPI that was started as one of N > 1 processes refuses (World::get throws) instead of
// training N copies of the same run.
#pragma once
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace mg {

namespace cuda {
class Communicator;  // cuda/nccl.h
}

// What the launcher's environment says about this process (size 1, rank 0 when it says nothing).
struct LaunchInfo {
  int size = 1, rank = 0, local_rank = 0;
  std::string source;  // the variable that gave the size ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE"), or empty
};
LaunchInfo launch_from_environment();

// True when this build has MPI (-DMG_MPI found Open MPI).
bool mpi_built();

// What a build without MPI does when a launcher started it as one of several processes: throws the error
// that says so (each process would train the whole run alone).
[[noreturn]] void refuse_launch_without_mpi(const LaunchInfo& launch);

class World {
 public:
  // The process's world, made on first use: MPI is initialised then when the launcher said N > 1.
  // Throws mg::Error when it did and this build has no MPI, naming the variable and how to rebuild.
  static World& get();

  int size() const { return size_; }
  int rank() const { return rank_; }
  bool root() const { return rank_ == 0; }
  bool distributed() const { return size_ > 1; }

  // Blocking sums over the ranks, in place (no-ops in a world of one).
  void sum(double* v, int64_t n) const;
  void sum(float* v, int64_t n) const;
  // Rank 0's `bytes` bytes at `v` to every rank (a no-op in a world of one).
  void broadcast(void* v, int64_t bytes) const;

  // A non-blocking float sum in place; wait() before reading `v`, test() lets MPI progress it.
  struct Request {
    void* handle = nullptr;  // an MPI_Request, owned
    bool active = false;
  };
  Request start_sum(float* v, int64_t n) const;
  bool test(Request& r) const;  // true when done
  void wait(Request& r) const;

  // An agreement round, before going on from a phase that may fail on one rank alone: every rank
  // passes the error it caught (or none), and all learn whether any rank failed (a sum of one flag).
  // A rank that failed rethrows its own error, the others throw one saying that another rank stopped
  // (`op` names the command). In a world of one it rethrows `err`, if any.
  void agree(std::exception_ptr err, const char* op) const;

  // The run's identity, checked before training: each entry is (option, value), such as
  // ("--steps", "20"). Rank 0's list is broadcast, and every other rank throws at the first entry whose
  // value differs from rank 0's, naming the option, both values and its rank. Call it on every rank, in
  // agreement (then agree() on the outcome).
  using Fields = std::vector<std::pair<std::string, std::string>>;
  void check_same_as_root(const Fields& mine, const char* op) const;

  // Ends MPI after a successful run (programs call it before returning 0).
  static void finalize();
  // Ends MPI after an error, so that no rank waits forever in a collective for one that stopped: when
  // the ranks agreed on the failure (agree()), MPI is finalized and each exits with its status; when
  // this rank failed alone, MPI_Abort ends every rank of the job. Call it after printing the error.
  static void end_after_error(int status);

 private:
  World() = default;
  int size_ = 1, rank_ = 0;
  bool mpi_ = false;
  mutable bool failure_agreed_ = false;  // an agree() round found a failure: every rank knows
  static World* instance_;               // the world made by get(), if any
};

// How a GradientReducer moves the gradients.
enum class GradientTransport {
  automatic,  // nccl for parameters on one CUDA device in a build with NCCL (cuda::built_with_nccl()), else host
  host,       // host buffers summed by MPI_Iallreduce (device gradients copied to the host and back)
  nccl,       // device buffers summed by ncclAllReduce on a stream of its own (cuda/nccl.h)
};

// Sums the gradients of `params` over the ranks during backward, so that after finish() every rank
// holds scale * (the sum of all ranks' gradients), bit-identical on every rank.
//
// The parameters (float32, in the order the forward uses them) are grouped into buckets of about
// bucket_bytes, from the last used to the first (the order in which backward produces their gradients).
// A hook on each parameter's AccumulateGrad (autograd/node.h) counts the bucket's ready gradients;
// once all are, they are copied into the bucket's flat buffer and its non-blocking all-reduce starts
// while backward goes on. Buckets start in their fixed order on every rank (a bucket ready early waits
// for the ones before it), since MPI requires the same order of collectives everywhere. finish() starts
// any bucket not started (a parameter that received no gradient contributes zeros), waits for all and
// copies the sums back, scaled. The hooks are removed when the reducer is destroyed.
//
// With NCCL (GradientTransport::nccl, one GPU per rank) the same buckets are flat device buffers: rank 0
// makes the communicator's id and broadcasts it over MPI (so a world of one needs no MPI), a ready
// bucket's gradients are copied into its buffer on the compute stream and its ncclAllReduce queued on
// the communicator's stream after them; finish() makes the compute stream wait for the all-reduces and
// queues the scaling and the copies back on it. The host never waits for the sums (wait_seconds() stays
// 0): the ops after finish() are ordered after them on the device. NCCL's all-reduce leaves the same
// sums on every rank.
class GradientReducer {
 public:
  GradientReducer(const World& world, std::vector<Tensor> params, double scale, int64_t bucket_bytes = 4 << 20,
                  GradientTransport transport = GradientTransport::automatic);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  void begin();   // before backward
  void finish();  // after backward, before clipping

  // The mean of `local` over the ranks (a blocking sum of one double).
  double mean_over_ranks(double local) const;

  int started() const { return (int)next_; }  // buckets whose all-reduce has started this step
  int num_buckets() const { return (int)buckets_.size(); }
  int64_t bytes_per_step() const;  // the float32 bytes each rank all-reduces per step
  GradientTransport transport() const { return nccl_ ? GradientTransport::nccl : GradientTransport::host; }
  double wait_seconds() const { return wait_s_; }  // time finish() spent waiting, summed over steps

 private:
  struct Bucket {
    std::vector<size_t> params;  // indices into params_
    std::vector<int64_t> offsets;
    int64_t numel = 0;
    std::vector<float> flat;  // host transport
    Tensor device_flat;       // nccl transport: on the parameters' device
    int ready = 0;
    World::Request req;
    bool started = false;
  };
  void on_ready(size_t bucket);
  void launch(Bucket& b);

  const World& world_;
  std::vector<Tensor> params_;
  std::vector<size_t> bucket_of_;
  std::vector<Bucket> buckets_;
  std::unique_ptr<cuda::Communicator> nccl_;  // with the nccl transport
  size_t next_ = 0;                           // the next bucket to start, in order
  double scale_;
  double wait_s_ = 0;
};

}  // namespace mg
