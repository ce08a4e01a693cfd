#include "train/distributed.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "autograd/grad_hook.h"
#include "core/error.h"
#include "cuda/nccl.h"
#include "ops/ops.h"

#if MG_HAVE_MPI
#include <mpi.h>
#endif

namespace mg {

namespace {

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  return end && *end == 0 && x >= 0 && x < (1L << 30) ? (int)x : fallback;
}

#if MG_HAVE_MPI
void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  MG_THROW("[distributed] {} failed: {}", what, std::string(msg, (size_t)len));
}

// MPI counts are int: large buffers go in pieces (a `base` model's bucket is far below, but a
// caller's buffer need not be).
constexpr int64_t kMaxCount = 1 << 30;
#endif

}  // namespace

LaunchInfo launch_from_environment() {
  LaunchInfo l;
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE"}) {
    const int n = env_int(var, 0);
    if (n >= 1) {
      l.size = n, l.source = var;
      break;
    }
  }
  l.rank = env_int("OMPI_COMM_WORLD_RANK", env_int("PMI_RANK", env_int("PMIX_RANK", 0)));
  l.local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", env_int("MPI_LOCALRANKID", 0));
  return l;
}

bool mpi_built() {
#if MG_HAVE_MPI
  return true;
#else
  return false;
#endif
}

World* World::instance_ = nullptr;

World& World::get() {
  static World* world = [] {
    const LaunchInfo l = launch_from_environment();
    auto* w = new World();  // never destroyed: finalize() ends MPI, and the world stays readable after
    if (l.size <= 1) return w;
#if MG_HAVE_MPI
    int provided = 0;
    // Only the main thread calls MPI (the OpenMP workers never do).
    check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    MPI_Comm_size(MPI_COMM_WORLD, &w->size_);
    MPI_Comm_rank(MPI_COMM_WORLD, &w->rank_);
    w->mpi_ = true;
    instance_ = w;
    return w;
#else
    delete w;
    refuse_launch_without_mpi(l);
#endif
  }();
  return *world;
}

void refuse_launch_without_mpi(const LaunchInfo& l) {
  MG_THROW(
      "[distributed] this process is rank {} of {} ({} is set: started by mpirun or another MPI launcher), but "
      "this mambagrad was built without MPI, so the {} processes would each train the whole run alone. Install "
      "Open MPI (Debian: apt-get install libopenmpi-dev openmpi-bin) and rebuild with -DMG_MPI=ON, or start one "
      "process",
      l.rank, l.size, l.source, l.size);
}

void World::finalize() {
#if MG_HAVE_MPI
  int init = 0, done = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&done);
  if (init && !done) MPI_Finalize();
#endif
}

void World::end_after_error(int status) {
#if MG_HAVE_MPI
  const World* w = instance_;
  if (!w || !w->mpi_) return;
  int done = 0;
  MPI_Finalized(&done);
  if (done) return;
  if (w->failure_agreed_) {
    MPI_Finalize();
    return;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, status);
#else
  (void)status;
#endif
}

void World::agree(std::exception_ptr err, const char* op) const {
  double failed = err ? 1 : 0;
  sum(&failed, 1);
  if (failed > 0) failure_agreed_ = true;
  if (err) std::rethrow_exception(err);
  if (failed > 0)
    MG_THROW("[{}] another process of this run stopped with an error (printed above); rank {} stops too", op, rank_);
}

void World::check_same_as_root(const Fields& mine, const char* op) const {
  if (!mpi_) return;
  // Rank 0's fields as one text, "name\0value\0..." (no option name or value holds a NUL).
  std::string text;
  if (root())
    for (const auto& [name, value] : mine) text += name + '\0' + value + '\0';
  int64_t n = (int64_t)text.size();
  broadcast(&n, sizeof n);
  text.resize((size_t)n);
  broadcast(text.data(), n);
  if (root()) return;
  Fields theirs;
  for (size_t p = 0; p < text.size();) {
    const size_t a = text.find('\0', p), b = text.find('\0', a + 1);
    theirs.emplace_back(text.substr(p, a - p), text.substr(a + 1, b - a - 1));
    p = b + 1;
  }
  for (size_t i = 0; i < mine.size() || i < theirs.size(); ++i) {
    const std::string name = i < mine.size() ? mine[i].first : theirs[i].first;
    const std::string a = i < mine.size() ? mine[i].second : "(none)";
    const std::string b = i < theirs.size() && theirs[i].first == name ? theirs[i].second : "(none)";
    MG_CHECK(a == b,
             "[{}] the processes of this run disagree: rank {} has {} {}, rank 0 has {} {}. Every rank must be started "
             "with the same options and data (one command line for all of them)",
             op, rank_, name, a, name, b);
  }
}

#if MG_HAVE_MPI
namespace {
// MPI_Allreduce (a sum, in place) of `n` elements of `type`, in pieces that MPI's int counts hold.
template <class T>
void allreduce_sum(T* v, int64_t n, MPI_Datatype type) {
  for (int64_t i = 0; i < n; i += kMaxCount)
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, v + i, (int)std::min(kMaxCount, n - i), type, MPI_SUM, MPI_COMM_WORLD),
              "MPI_Allreduce");
}
}  // namespace
#endif

void World::sum(double* v, int64_t n) const {
#if MG_HAVE_MPI
  if (mpi_) allreduce_sum(v, n, MPI_DOUBLE);
#endif
}

void World::sum(float* v, int64_t n) const {
#if MG_HAVE_MPI
  if (mpi_) allreduce_sum(v, n, MPI_FLOAT);
#endif
}

void World::broadcast(void* v, int64_t bytes) const {
  if (!mpi_) return;
#if MG_HAVE_MPI
  for (int64_t i = 0; i < bytes; i += kMaxCount)
    check_mpi(MPI_Bcast(static_cast<char*>(v) + i, (int)std::min(kMaxCount, bytes - i), MPI_BYTE, 0, MPI_COMM_WORLD),
              "MPI_Bcast");
#endif
}

World::Request World::start_sum(float* v, int64_t n) const {
  Request r;
  if (!mpi_) return r;
#if MG_HAVE_MPI
  MG_CHECK(n <= kMaxCount, "[distributed] a bucket of {} floats is over MPI's count limit {}", n, kMaxCount);
  auto* req = new MPI_Request(MPI_REQUEST_NULL);
  const int rc = MPI_Iallreduce(MPI_IN_PLACE, v, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, req);
  if (rc != MPI_SUCCESS) delete req;
  check_mpi(rc, "MPI_Iallreduce");
  r.handle = req, r.active = true;
#endif
  return r;
}

bool World::test(Request& r) const {
  if (!r.active) return true;
#if MG_HAVE_MPI
  auto* req = static_cast<MPI_Request*>(r.handle);
  int flag = 0;
  check_mpi(MPI_Test(req, &flag, MPI_STATUS_IGNORE), "MPI_Test");
  if (!flag) return false;
  delete req;
  r.handle = nullptr, r.active = false;
#endif
  return true;
}

void World::wait(Request& r) const {
  if (!r.active) return;
#if MG_HAVE_MPI
  auto* req = static_cast<MPI_Request*>(r.handle);
  check_mpi(MPI_Wait(req, MPI_STATUS_IGNORE), "MPI_Wait");
  delete req;
  r.handle = nullptr, r.active = false;
#endif
}

// ---- GradientReducer ----

namespace {

// Parameter `p`'s place in a bucket's flat device buffer, which starts at `offset`: a view of p's shape.
Tensor slot_of(const Tensor& flat, int64_t offset, const Tensor& p) {
  return flat.narrow(0, offset, p.numel()).view(p.shape());
}

// The one CUDA device that all parameters are on, or kCPU when they are not all on one CUDA device.
Device common_cuda_device(const std::vector<Tensor>& params) {
  if (params.empty() || !params[0].device().is_cuda()) return kCPU;
  for (auto& p : params)
    if (p.device() != params[0].device()) return kCPU;
  return params[0].device();
}

}  // namespace

GradientReducer::GradientReducer(const World& world, std::vector<Tensor> params, double scale, int64_t bucket_bytes,
                                 GradientTransport transport)
    : world_(world), params_(std::move(params)), bucket_of_(params_.size()), scale_(scale) {
  MG_CHECK(bucket_bytes >= 4, "[distributed] bucket_bytes must be at least 4, got {}", bucket_bytes);
  const Device device = common_cuda_device(params_);
  if (transport == GradientTransport::automatic)
    transport = device.is_cuda() && cuda::built_with_nccl() ? GradientTransport::nccl : GradientTransport::host;
  if (transport == GradientTransport::nccl) {
    MG_CHECK(device.is_cuda(),
             "[distributed] the nccl gradient transport needs every parameter on one CUDA device (the first is on "
             "{}); use the host transport",
             params_.empty() ? std::string("no device") : params_[0].device().str());
    MG_CHECK(cuda::built_with_nccl(),
             "[distributed] the nccl gradient transport needs a build with NCCL (-DMG_NCCL=ON, with CUDA and MPI); "
             "use the host transport");
  }
  // From the last parameter the forward uses to the first: backward's order.
  for (size_t k = params_.size(); k-- > 0;) {
    const Tensor& p = params_[k];
    MG_CHECK(p.dtype() == DType::f32, "[distributed] parameter {} is {} {}: the gradient all-reduce takes float32", k,
             p.shape(), p.dtype());
    if (buckets_.empty() || buckets_.back().numel * 4 >= bucket_bytes) buckets_.emplace_back();
    Bucket& b = buckets_.back();
    b.params.push_back(k);
    b.offsets.push_back(b.numel);
    b.numel += p.numel();
    bucket_of_[k] = buckets_.size() - 1;
  }
  for (auto& b : buckets_) {
    if (transport == GradientTransport::nccl)
      b.device_flat = Tensor::empty(Shape{b.numel}, DType::f32, device, "distributed");
    else
      b.flat.resize((size_t)b.numel);
  }
  if (transport == GradientTransport::nccl) {
    // The communicator's id is made by rank 0 and sent to the others over MPI (NCCL's own bootstrap).
    cuda::NcclId id;
    if (world_.root()) id = cuda::nccl_unique_id();
    world_.broadcast(id.bytes, cuda::NcclId::kBytes);
    nccl_ = std::make_unique<cuda::Communicator>(id, world_.size(), world_.rank(), device.index);
  }
  for (size_t k = 0; k < params_.size(); ++k) {
    const size_t b = bucket_of_[k];
    set_grad_hook(params_[k], [this, b] { on_ready(b); });
  }
}

GradientReducer::~GradientReducer() {
  for (auto& p : params_) set_grad_hook(p, nullptr);
  for (auto& b : buckets_) {
    try {
      world_.wait(b.req);  // a bucket in flight when an exception unwound the step
    } catch (...) {}
  }
  nccl_.reset();  // waits for its all-reduces before the buckets' device buffers go
}

int64_t GradientReducer::bytes_per_step() const {
  int64_t n = 0;
  for (auto& b : buckets_) n += b.numel * 4;
  return n;
}

double GradientReducer::mean_over_ranks(double local) const {
  world_.sum(&local, 1);
  return local / (double)world_.size();
}

void GradientReducer::begin() {
  for (auto& b : buckets_) {
    world_.wait(b.req);
    b.ready = 0, b.started = false;
  }
  next_ = 0;
}

void GradientReducer::launch(Bucket& b) {
  if (nccl_) {
    // Queued on the compute stream after the ops that made the gradients; the all-reduce after them.
    for (size_t i = 0; i < b.params.size(); ++i) {
      const Tensor& p = params_[b.params[i]];
      const Tensor dst = slot_of(b.device_flat, b.offsets[i], p), g = p.grad();
      if (g.defined())
        dst.copy_(g);
      else
        dst.zero_();
    }
    nccl_->all_reduce_sum(b.device_flat.data<float>(), b.numel);
    b.started = true;
    return;
  }
  for (size_t i = 0; i < b.params.size(); ++i) {
    const Tensor& p = params_[b.params[i]];
    float* dst = b.flat.data() + b.offsets[i];
    Tensor g = p.grad();
    if (!g.defined()) {
      std::memset(dst, 0, (size_t)p.numel() * 4);
      continue;
    }
    if (!g.device().is_cpu()) g = g.to(kCPU);
    g = g.contiguous();
    std::memcpy(dst, g.data<float>(), (size_t)p.numel() * 4);
  }
  b.req = world_.start_sum(b.flat.data(), b.numel);
  b.started = true;
}

void GradientReducer::on_ready(size_t bucket) {
  Bucket& b = buckets_[bucket];
  ++b.ready;
  while (next_ < buckets_.size() && buckets_[next_].ready == (int)buckets_[next_].params.size())
    launch(buckets_[next_++]);
  // Open MPI moves a non-blocking collective on only inside MPI calls: poke the ones in flight.
  for (size_t i = 0; i < next_; ++i) world_.test(buckets_[i].req);
}

void GradientReducer::finish() {
  while (next_ < buckets_.size()) launch(buckets_[next_++]);
  if (nccl_) {
    // The compute stream waits for the all-reduces; the scaling and the copies back are queued after.
    nccl_->join();
    for (auto& b : buckets_) {
      if (scale_ != 1.0) b.device_flat.mul_(scale_);
      for (size_t i = 0; i < b.params.size(); ++i) {
        const Tensor& p = params_[b.params[i]];
        const Tensor src = slot_of(b.device_flat, b.offsets[i], p), g = p.grad();
        if (g.defined())
          g.copy_(src);
        else
          p.autograd_meta().grad = src.clone().impl_ptr();
      }
    }
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  for (auto& b : buckets_) world_.wait(b.req);
  wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const float s = (float)scale_;
  for (auto& b : buckets_) {
    if (s != 1.0f)
      for (float& x : b.flat) x *= s;
    for (size_t i = 0; i < b.params.size(); ++i) {
      const Tensor& p = params_[b.params[i]];
      const float* src = b.flat.data() + b.offsets[i];
      Tensor g = p.grad();
      if (g.defined() && g.device().is_cpu() && g.is_contiguous()) {
        std::memcpy(g.data<float>(), src, (size_t)p.numel() * 4);
        continue;
      }
      Tensor host = Tensor::empty(p.shape(), DType::f32);
      std::memcpy(host.data<float>(), src, (size_t)p.numel() * 4);
      if (g.defined())
        g.copy_(host.to(p.device()));
      else
        p.autograd_meta().grad = host.to(p.device()).impl_ptr();
    }
  }
}

}  // namespace mg
