// `mambagrad bench scan --device cuda`: the fused selective_scan on the GPU, forward and
// forward+backward, against the device-to-device copy bandwidth measured in the same run.
//
// Times are medians over --reps runs (at least 3) after one warm-up, measured with CUDA events on the
// one stream around the op's calls (host-side allocation and launch overhead included). The backward
// is the op's vjp called through the output's grad_fn with a given dy (no gradient accumulation).
// "Bytes moved" counts each input read once and each output written once:
//   forward:          u, delta, z, B, C, A, D, delta_bias read; y written;
//   forward+backward: the same inputs and dy read; y, du, ddelta, dz, dA, dB, dC, dD, ddelta_bias written
// (so the backward's second read of the inputs and the chunk states are not counted). The copy's
// bandwidth counts its read and its write: 2 * bytes / time of one cudaMemcpyAsync of 512 MiB.
// Peak memory is the caching allocator's high-water mark (cuda::memory_stats) during each measurement,
// above what was live before it.
#include <algorithm>
#include "core/format.h"
#include <string>
#include <tuple>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "bench/bench.h"
#include "core/error.h"
#include "core/device.h"
#include "cuda/runtime.h"
#include "bench/scan_inputs.h"
#include "cuda/scan_kernels.h"
#include "ops/ops.h"

namespace mg::bench {

namespace {

// The inputs of bench/scan_inputs.h, on `dev`.
ScanInputs make_cuda_inputs(int64_t b, int64_t l, int64_t d, int64_t n, Generator& g, Device dev, bool grad) {
  ScanInputs x = make_scan_inputs(b, l, d, n, g);
  for (Tensor* t : x.all()) {
    *t = t->to(dev).detach();
    if (grad) t->requires_grad_();
  }
  return x;
}

ScanResult call(const ScanInputs& x) {
  return selective_scan(x.u, x.delta, x.A, x.B, x.C, x.D, x.z, x.bias, true, false);
}

struct Timing {
  double seconds = 0;
  size_t peak = 0;  // bytes above what was live before
};

// Median seconds of `fn` over reps runs after a warm-up, and the peak device memory of the runs.
template <class F>
Timing time_runs(int dev, int reps, F&& fn) {
  cuda::time_on_stream(dev, fn);  // warm-up (fills the allocator's cache)
  cuda::synchronize(dev);
  const size_t before = cuda::memory_stats(dev).in_use;
  cuda::reset_peak_memory(dev);
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) t.push_back(cuda::time_on_stream(dev, fn));
  const size_t peak = cuda::memory_stats(dev).peak;
  return {median(t), peak > before ? peak - before : 0};
}

std::string whole_mib(double bytes) { return mg::format("{:.0f} MiB", bytes / (1024.0 * 1024.0)); }

}  // namespace

int run_scan_bench_cuda(const ScanBenchOptions& o) {
  o.validate("bench scan");
  if (!cuda::built_with_cuda() || cuda::device_count() == 0) {
    mg::print(stderr,
              "error: `bench scan --device {}` needs a CUDA build (configure with -DMG_CUDA=ON) and a GPU; {}\n",
              o.device, cuda::built_with_cuda() ? "this machine has no CUDA device" : "this build has no CUDA support");
    return 2;
  }
  const Device device = Device::parse(o.device);
  MG_CHECK(device.is_cuda(), "[bench] scan --device {}: expected cuda or cuda:N", o.device);
  const int dev = device.index;
  const int reps = std::max(3, o.reps);

  // The reference bandwidth: one large device-to-device copy.
  const int64_t copy_elems = o.quick ? (int64_t(32) << 20) : (int64_t(128) << 20);  // float32: 128 or 512 MiB
  double copy_gbs = 0;
  {
    Tensor src = Tensor::empty({copy_elems}, DType::f32, device), dst = Tensor::empty({copy_elems}, DType::f32, device);
    const size_t nbytes = src.nbytes();
    const double s = cuda::time_device_copy(dst.raw_data(), src.raw_data(), nbytes, std::max(5, reps), dev);
    copy_gbs = 2.0 * (double)nbytes / s / 1e9;
  }

  struct Cfg {
    int64_t b, l, d, n;
  };
  const std::vector<Cfg> cfgs =
      o.quick ? std::vector<Cfg>{{2, 512, 256, 16}} : std::vector<Cfg>{{8, 2048, 1536, 16}, {64, 256, 1024, 16}};
  mg::print("selective_scan on {}, float32, delta_softplus with D, z and delta_bias; chunk {} steps; median of {}\n",
            device.str(), cuda::kScanChunkCuda, reps);
  mg::print("device-to-device copy: {:.0f} GB/s (read + write of {})\n\n", copy_gbs, whole_mib((double)copy_elems * 4));

  struct Row {
    std::string shape, pass;
    double ms, gbs, ratio;
    size_t peak;
  };
  std::vector<Row> rows;
  for (const Cfg& c : cfgs) {
    Generator g(1);
    const double bld = (double)(c.b * c.l * c.d) * 4, bln = (double)(c.b * c.l * c.n) * 4,
                 small = (double)(c.d * c.n + 2 * c.d) * 4;
    const double inputs = 3 * bld + 2 * bln + small;
    const double fwd_bytes = inputs + bld;
    const double fb_bytes = inputs + bld /* dy */ + bld /* y */ + 3 * bld + 2 * bln + small /* gradients */;
    const std::string shape = mg::format("({}, {}, {}, {})", c.b, c.l, c.d, c.n);

    Timing fwd;
    {
      ScanInputs x = make_cuda_inputs(c.b, c.l, c.d, c.n, g, device, false);
      NoGradGuard ng;
      fwd = time_runs(dev, reps, [&] { ScanResult r = call(x); });
    }
    Timing fb;
    {
      ScanInputs x = make_cuda_inputs(c.b, c.l, c.d, c.n, g, device, true);
      Tensor dy = randn({c.b, c.l, c.d}, DType::f32, &g).to(device);
      fb = time_runs(dev, reps, [&] {
        ScanResult r = call(x);
        std::vector<Tensor> grads = r.y.grad_fn()->apply({dy});
      });
    }
    for (auto [pass, t, bytes] :
         {std::tuple{"forward", fwd, fwd_bytes}, std::tuple{"forward+backward", fb, fb_bytes}}) {
      const double gbs = bytes / t.seconds / 1e9;
      rows.push_back({shape, pass, t.seconds * 1e3, gbs, gbs / copy_gbs, t.peak});
    }
  }

  mg::print("  {:<22} {:<18} {:>9} {:>9} {:>10} {:>11}\n", "(b, l, d, n)", "pass", "ms", "GB/s", "of copy", "peak mem");
  for (const Row& r : rows)
    mg::print("  {:<22} {:<18} {:>9.3f} {:>9.0f} {:>9.0f}% {:>11}\n", r.shape, r.pass, r.ms, r.gbs, 100 * r.ratio,
              whole_mib((double)r.peak));
  double worst = 1e9;
  for (const Row& r : rows)
    if (r.pass == std::string("forward+backward")) worst = std::min(worst, r.ratio);
  mg::print("\ntarget: forward+backward at >= 50% of the copy bandwidth: {} (lowest {:.0f}%)\n",
            worst >= 0.5 ? "met" : "NOT met", 100 * worst);
  return 0;
}

}  // namespace mg::bench
