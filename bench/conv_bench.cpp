// `mambagrad bench conv`: causal_conv1d (k = 4, bias, silu, as in every Mamba block) on the CPU at the
// training shapes of the `small` and `base` presets, (b, l, d) = (16, 256, d_inner), forward and
// forward+backward, against its memory floor.
//
// Floor: the bytes the op must move once, at the memory bandwidth measured now on this run's threads
// (bench/machine.cpp, as `bench scan`): forward reads x and writes y (2 b l d floats); the backward
// reads x and dy and writes dx (3 b l d; the weight, bias and their gradients are a few KiB). Times are
// medians of --reps runs after a warm-up; every forward+backward run starts from leaves without .grad.
// Beside the wall time, the process's CPU time per call (all threads): on a shared machine a descheduled
// thread adds wall time but no CPU time, so with 1 thread the CPU time is the kernel's own cost.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "autograd/grad_mode.h"
#include "bench/bench.h"
#include "bench/timing.h"
#include "core/format.h"
#include "core/parallel.h"
#include "ops/ops.h"

namespace mg::bench {

namespace {

struct ConvTimes {
  double fwd_ms = 0, fb_ms = 0, fwd_cpu_ms = 0, fb_cpu_ms = 0;
};

ConvTimes time_conv(int64_t b, int64_t l, int64_t d, int64_t k, int reps) {
  Generator g(5);
  Tensor x = randn({b, l, d}, DType::f32, &g), w = randn({d, k}, DType::f32, &g), bias = randn({d}, DType::f32, &g);
  Tensor dy = randn({b, l, d}, DType::f32, &g);
  ConvTimes t;
  std::vector<double> ms, cpu;
  {
    NoGradGuard ng;
    for (int r = 0; r <= reps; ++r) {  // run 0: warm-up
      const auto t0 = Clock::now();
      const double c0 = process_cpu_ms();
      Tensor y = causal_conv1d(x, w, bias, /*apply_silu=*/true);
      if (r > 0) ms.push_back(ms_since(t0)), cpu.push_back(process_cpu_ms() - c0);
    }
    t.fwd_ms = median(ms), t.fwd_cpu_ms = median(cpu);
  }
  x.requires_grad_(), w.requires_grad_(), bias.requires_grad_();
  ms.clear(), cpu.clear();
  for (int r = 0; r <= reps; ++r) {
    x.zero_grad(), w.zero_grad(), bias.zero_grad();
    const auto t0 = Clock::now();
    const double c0 = process_cpu_ms();
    Tensor y = causal_conv1d(x, w, bias, /*apply_silu=*/true);
    y.backward(dy);
    if (r > 0) ms.push_back(ms_since(t0)), cpu.push_back(process_cpu_ms() - c0);
  }
  t.fb_ms = median(ms), t.fb_cpu_ms = median(cpu);
  return t;
}

}  // namespace

int run_conv_bench(int reps, bool quick) {
  struct Shape {
    const char* preset;
    int64_t b, l, d, k;
  };
  std::vector<Shape> shapes = {{"small", 16, 256, 512, 4}, {"base", 16, 256, 1024, 4}};
  if (quick) shapes = {{"quick", 2, 128, 256, 4}};
  const double bandwidth = measure_memory_bandwidth_gbs(num_threads()) * 1e9;
  mg::print("causal_conv1d on the CPU, float32, k 4, bias, silu; {} threads; median of {} runs\n", num_threads(), reps);
  mg::print("memory bandwidth, measured now on {} threads: {:.1f} GB/s (parallel copy)\n", num_threads(),
            bandwidth / 1e9);
  mg::print("  {:<6} {:>18} {:<17} {:>9} {:>9} {:>9} {:>9} {:>9}\n", "preset", "(b, l, d)", "", "wall ms", "cpu ms",
            "floor ms", "wall/fl", "cpu/fl");
  for (const Shape& s : shapes) {
    const ConvTimes t = time_conv(s.b, s.l, s.d, s.k, reps);
    const double bld = double(s.b * s.l * s.d) * sizeof(float);
    const double fwd_floor = 2 * bld / bandwidth * 1e3, fb_floor = 5 * bld / bandwidth * 1e3;
    const std::string dims = mg::format("({}, {}, {})", s.b, s.l, s.d);
    auto row = [&](const char* what, double wall, double cpu_time, double floor) {
      mg::print("  {:<6} {:>18} {:<17} {:>9.2f} {:>9.2f} {:>9.2f} {:>8.2f}x {:>8.2f}x\n", s.preset, dims, what, wall,
                cpu_time, floor, wall / floor, cpu_time / floor);
    };
    row("forward", t.fwd_ms, t.fwd_cpu_ms, fwd_floor);
    row("forward+backward", t.fb_ms, t.fb_cpu_ms, fb_floor);
  }
  return 0;
}

}  // namespace mg::bench
