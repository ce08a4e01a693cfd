#include "train/distributed.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "autograd/grad_hook.h"
#include "core/error.h"
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
    return w;
#else
    delete w;
    MG_THROW("[distributed] this process is rank {} of {} ({} is set: started by mpirun or another MPI launcher), but "
             "this mambagrad was built without MPI, so the {} processes would each train the whole run alone. Install "
             "Open MPI (Debian: apt-get install libopenmpi-dev openmpi-bin) and rebuild with -DMG_MPI=ON, or start one "
             "process",
             l.rank, l.size, l.source, l.size);
#endif
  }();
  return *world;
}

void World::finalize() {
#if MG_HAVE_MPI
  int init = 0, done = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&done);
  if (init && !done) MPI_Finalize();
#endif
}

void World::sum(double* v, int64_t n) const {
  if (!mpi_) return;
#if MG_HAVE_MPI
  for (int64_t i = 0; i < n; i += kMaxCount)
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, v + i, (int)std::min(kMaxCount, n - i), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD),
              "MPI_Allreduce");
#endif
}

void World::sum(float* v, int64_t n) const {
  if (!mpi_) return;
#if MG_HAVE_MPI
  for (int64_t i = 0; i < n; i += kMaxCount)
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, v + i, (int)std::min(kMaxCount, n - i), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
              "MPI_Allreduce");
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

GradientReducer::GradientReducer(const World& world, std::vector<Tensor> params, double scale, int64_t bucket_bytes)
    : world_(world), params_(std::move(params)), bucket_of_(params_.size()), scale_(scale) {
  MG_CHECK(bucket_bytes >= 4, "[distributed] bucket_bytes must be at least 4, got {}", bucket_bytes);
  // From the last parameter the forward uses to the first: backward's order.
  for (size_t k = params_.size(); k-- > 0;) {
    const Tensor& p = params_[k];
    MG_CHECK(p.dtype() == DType::f32, "[distributed] parameter {} is {} {}: the gradient all-reduce takes float32",
             k, p.shape(), p.dtype());
    if (buckets_.empty() || (int64_t)buckets_.back().flat.size() * 4 >= bucket_bytes) buckets_.emplace_back();
    Bucket& b = buckets_.back();
    b.params.push_back(k);
    b.offsets.push_back((int64_t)b.flat.size());
    b.flat.resize(b.flat.size() + (size_t)p.numel());
    bucket_of_[k] = buckets_.size() - 1;
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
    } catch (...) {
    }
  }
}

int64_t GradientReducer::bytes_per_step() const {
  int64_t n = 0;
  for (auto& b : buckets_) n += (int64_t)b.flat.size() * 4;
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
  b.req = world_.start_sum(b.flat.data(), (int64_t)b.flat.size());
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
