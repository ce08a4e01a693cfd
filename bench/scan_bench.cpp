// `mambagrad bench scan`: the fused selective_scan against selective_scan_reference in the same run.
//
// Times are medians over --reps runs after one warm-up for the fused op, and over min(--reps, 3)
// runs for the reference (it is slow). The reference may be timed on fewer steps (--ref-steps) and scaled
// linearly to l: its backward grows faster than linearly in l (each step's narrow() gradient is a
// full-size tensor), so the scaled figure understates its time and the ratio is conservative.
// "Bytes moved" counts each tensor the op must read or write once: forward = inputs + y;
// forward+backward = that + inputs + dy + gradients. The same count is used for both, so GB/s is a
// throughput, not a measured memory bandwidth. Memory is measured with the CPU storage counters
// (core/storage.h): every tensor, including the fused backward's partials, and nothing else. The floor
// lines give the fused op's process CPU time beside its wall time (bench/timing.h: with 1 thread, its own
// cost on a shared machine).
#include <algorithm>
#include <chrono>
#include "core/format.h"
#include <vector>

#include "autograd/grad_mode.h"
#include "bench/bench.h"
#include "bench/timing.h"
#include "bench/scan_inputs.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/storage.h"
#include "ops/cpu/selective_scan.h"
#include "ops/ops.h"

namespace mg::bench {

namespace {

// The first `steps` time steps, as contiguous leaves (requiring grad when `grad`).
ScanInputs first_steps(ScanInputs full, int64_t steps, bool grad) {
  ScanInputs x;
  auto v = full.all(), o = x.all();
  for (size_t i = 0; i < v.size(); ++i) {
    Tensor t = *v[i];
    if (t.dim() == 3) t = narrow(t, 1, 0, steps);
    t = t.contiguous().clone().detach();
    if (grad) t.requires_grad_();
    *o[i] = t;
  }
  return x;
}

ScanResult call(const ScanInputs& x, bool reference) {
  auto f = reference ? selective_scan_reference : selective_scan;
  return f(x.u, x.delta, x.A, x.B, x.C, x.D, x.z, x.bias, true, false,
           Tensor());  // no default arguments through a pointer
}

struct Measure {
  double fwd_ms = 0, fb_ms = 0;          // forward; forward + backward (wall)
  double fwd_cpu_ms = 0, fb_cpu_ms = 0;  // the same in process CPU time (all threads)
  size_t saved = 0;                      // bytes the forward keeps alive beyond its output
  size_t bwd_peak = 0;                   // peak bytes above the start of backward
};

Measure measure_scan(const ScanInputs& full, int64_t steps, bool reference, int reps) {
  Measure m;
  const int runs = reference ? std::min(reps, 3) : reps;  // the reference is slow: at most 3 runs, median
  Generator g(99);
  {
    ScanInputs x = first_steps(full, steps, false);
    NoGradGuard ng;
    if (!reference) call(x, false);  // warm-up
    std::vector<double> t, cpu;
    for (int r = 0; r < runs; ++r) {
      auto t0 = Clock::now();
      const double c0 = process_cpu_ms();
      ScanResult y = call(x, reference);
      t.push_back(ms_since(t0)), cpu.push_back(process_cpu_ms() - c0);
    }
    m.fwd_ms = median(t), m.fwd_cpu_ms = median(cpu);
  }
  ScanInputs x = first_steps(full, steps, true);
  Tensor dy = randn({full.u.size(0), steps, full.u.size(2)}, DType::f32, &g);
  std::vector<double> t, cpu;
  for (int r = 0; r < runs + (reference ? 0 : 1); ++r) {
    // Every run starts from leaves without .grad (as a training step after zero_grad), so each
    // backward's gradients become the leaves' .grad (without a copy: autograd/node.cpp) and its peak
    // is its vjp's gradients plus scratch. The fused op's first run is a warm-up.
    for (Tensor* p : x.all()) p->zero_grad();
    const size_t before = cpu_bytes_in_use();
    auto t0 = Clock::now();
    const double c0 = process_cpu_ms();
    ScanResult y = call(x, reference);
    const size_t after_fwd = cpu_bytes_in_use();
    reset_cpu_peak_bytes();
    y.y.backward(dy);
    const double ms = ms_since(t0), cpu_ms = process_cpu_ms() - c0;
    if (reference || r > 0) t.push_back(ms), cpu.push_back(cpu_ms);  // the fused op's first run is a warm-up
    m.saved = after_fwd - before - y.y.nbytes();
    m.bwd_peak = cpu_peak_bytes() - after_fwd;
  }
  m.fb_ms = median(t), m.fb_cpu_ms = median(cpu);
  return m;
}

std::string mib(double bytes) { return mg::format("{:.1f} MiB", bytes / (1024.0 * 1024.0)); }

}  // namespace

void ScanBenchOptions::validate(const char* command) const {
  MG_CHECK(reps >= 1, "[{}] --reps must be at least 1 (the median of that many timed repetitions is reported), got {}",
           command, reps);
  MG_CHECK(ref_steps >= 0, "[{}] --ref-steps must be 0 (min(l, 256)) or positive, got {}", command, ref_steps);
}

int run_scan_bench(const ScanBenchOptions& o) {
  o.validate("bench scan");
  struct Cfg {
    int64_t b, l, d, n;
  };
  std::vector<Cfg> cfgs =
      o.quick ? std::vector<Cfg>{{2, 256, 128, 16}} : std::vector<Cfg>{{8, 1024, 1024, 16}, {16, 256, 512, 16}};
  mg::print("selective_scan on the CPU, float32, delta_softplus with D, z and delta_bias; {} threads; chunk {} steps\n",
            num_threads(), cpu::kScanChunk);
  const double peak_madds = measure_peak_gflops(num_threads()) / 2 * 1e9;      // multiply-adds per second
  const double bandwidth = measure_memory_bandwidth_gbs(num_threads()) * 1e9;  // bytes per second
  mg::print("machine, measured now: {:.1f} G fp32 multiply-adds/s, memory bandwidth {:.1f} GB/s (parallel copy)\n",
            peak_madds / 1e9, bandwidth / 1e9);
  for (const Cfg& c : cfgs) {
    Generator g(1);
    ScanInputs full = make_scan_inputs(c.b, c.l, c.d, c.n, g);
    const int64_t ref_steps = std::min(c.l, o.ref_steps > 0 ? o.ref_steps : int64_t(256));
    const double scale = (double)c.l / (double)ref_steps;
    Measure f = measure_scan(full, c.l, false, o.reps);
    Measure r = measure_scan(full, ref_steps, true, o.reps);
    r.fwd_ms *= scale, r.fb_ms *= scale, r.saved = (size_t)(r.saved * scale), r.bwd_peak = (size_t)(r.bwd_peak * scale);

    const double bld = (double)(c.b * c.l * c.d) * 4, bln = (double)(c.b * c.l * c.n) * 4,
                 small = (double)(c.d * c.n + 2 * c.d) * 4;
    const double inputs = 3 * bld + 2 * bln + small;
    const double fwd_bytes = inputs + bld, fb_bytes = fwd_bytes + inputs + bld + inputs;
    const double all_states = (double)(c.b * c.l * c.d * c.n) * 4;
    const double grads = inputs;

    mg::print("\n(b, l, d, n) = ({}, {}, {}, {})   reference measured on {} steps{}\n", c.b, c.l, c.d, c.n, ref_steps,
              scale != 1 ? mg::format(", times and memory scaled x{:g} (a lower bound)", scale) : std::string());
    mg::print("  {:<22} {:>12} {:>14} {:>9} {:>12} {:>12}\n", "", "fused ms", "reference ms", "ratio", "fused GB/s",
              "ref GB/s");
    auto row = [&](const char* what, double fm, double rm, double bytes) {
      mg::print("  {:<22} {:>12.1f} {:>14.1f} {:>8.1f}x {:>12.2f} {:>12.3f}\n", what, fm, rm, rm / fm, bytes / fm / 1e6,
                bytes / rm / 1e6);
    };
    row("forward", f.fwd_ms, r.fwd_ms, fwd_bytes);
    row("forward+backward", f.fb_ms, r.fb_ms, fb_bytes);
    // Floors: the bytes above at the measured bandwidth, and the arithmetic at the measured
    // peak with an exponential counted as 10 operations. Per state update (b l d n of them):
    // forward dA = exp(dt A): 1 multiply + 1 exp, h = dA h + (dt u) B: 2, y += C h: 1 -> 4 + 1 exp;
    // backward, which must recompute the states (the memory rule allows 1/8 of them to be kept):
    // the same 4 + 1 exp, then the reverse step: dh + dy C, (dh dt u) for dB, (dh B) for du,
    // dh dA h (2), dt.. for dA, A.. for ddelta, dh dA for the next dh, dy h for dC -> 9.
    const double updates = (double)c.b * c.l * c.d * c.n;
    const double fwd_ops = updates * (4 + 10), fb_ops = updates * (4 + 10 + 4 + 10 + 9);
    auto floors = [&](const char* what, double measured_ms, double cpu_ms, double bytes, double ops) {
      const double mem_ms = bytes / bandwidth * 1e3, ops_ms = ops / peak_madds * 1e3, hi = std::max(mem_ms, ops_ms);
      mg::print(
          "  {:<22} floors: bytes {:.1f} ms, operations {:.1f} ms; fused {:.1f} ms = {:.2f}x the larger{} (CPU time "
          "{:.1f} ms)\n",
          what, mem_ms, ops_ms, measured_ms, measured_ms / hi, measured_ms / hi <= 3 ? "" : "  (target: within 3x)",
          cpu_ms);
    };
    floors("forward", f.fwd_ms, f.fwd_cpu_ms, fwd_bytes, fwd_ops);
    floors("forward+backward", f.fb_ms, f.fb_cpu_ms, fb_bytes, fb_ops);
    // The fused backward's extra memory: the chunk states the forward saved plus what the backward
    // holds at its peak beyond the gradients it returns.
    const double f_extra = (double)f.saved + std::max(0.0, (double)f.bwd_peak - grads);
    mg::print("  memory: all states (b, l, d, n) would take {}\n", mib(all_states));
    mg::print(
        "    fused:     saved for backward {} (chunk-end states), backward peak {} above its start;\n"
        "               extra = saved + (peak - gradients {}) = {} = 1/{:.0f} of all states\n",
        mib(f.saved), mib(f.bwd_peak), mib(grads), mib(f_extra), all_states / std::max(f_extra, 1.0));
    mg::print("    reference: saved for backward {} (the graph), backward peak {} above its start\n", mib(r.saved),
              mib(r.bwd_peak));
  }
  return 0;
}

}  // namespace mg::bench
