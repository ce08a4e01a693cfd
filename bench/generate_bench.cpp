// `mambagrad bench generate [--preset small|base] [--batch B] [--prompt-bytes P] [--tokens T] [--peer]
//                          [--background-load] [--device cpu|cuda]`:
// what `mambagrad generate` does, timed. Prefill: the prompt (B rows of P random bytes) through
// MambaLM::prefill (the parallel forward). Decode: T tokens per row, each one MambaLM::step +
// sample_tokens (greedy) + the picks copied to the host, as train/generate.cpp does; tokens/s counts
// every row. Both at 1 thread and at --threads (when more), so that "2 threads are never slower than
// 1" shows in one run.
//
// Floors, per decode step, on this machine, measured in the same run (bench/machine.cpp): the weight
// bytes (every parameter is read once per step, whatever the batch) at the memory bandwidth, and the
// step's multiply-adds (the five matmuls, the conv, about 3 per state element of the scan step; x B
// rows) at the FMA peak of the thread count. The larger is the floor; ratio = step time / floor. A
// model whose weights stay in the last-level cache can run under the memory floor.
//
// The training forward (batch 16 x 256, recording the graph) is timed beside, for "prefill is at least
// as fast per token as the training forward". --background-load runs a busy thread pinned to CPU 0
// during every measurement, the peer's included. --peer runs bench/torch_peer.py --generate: the same
// model's recurrent step in PyTorch, eager, with cached conv and SSM states, under inference_mode.
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include "core/format.h"
#include <map>
#include <thread>
#include <vector>

#include "autograd/grad_mode.h"
#include "bench/bench.h"
#include "bench/timing.h"
#include "core/error.h"
#include "core/parallel.h"
#include "cuda/runtime.h"
#include "models/mamba.h"

namespace mg::bench {

namespace {

// A thread that spins on CPU 0 until destroyed: another program keeping one core busy.
class BackgroundLoad {
 public:
  explicit BackgroundLoad(bool on) {
    if (!on) return;
    thread_ = std::thread([this] {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(0, &set);
      pthread_setaffinity_np(pthread_self(), sizeof set, &set);
      volatile uint64_t x = 0;
      while (!stop_.load(std::memory_order_relaxed)) x = x + 1;
    });
  }
  ~BackgroundLoad() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

struct Figures {
  int threads = 1;
  double prefill_tok_s = 0, gen_tok_s = 0, ms_per_step = 0;
  double split_share = 0;  // the share of timed decode steps that MambaLM::step split across threads
};

void sync(Device d) {
  if (d.is_cuda()) cuda::synchronize(d.index);
}

Figures measure_generation(const MambaLM& model, const Tensor& prompt, int64_t tokens, Device device) {
  NoGradGuard ng;
  Figures f;
  f.threads = num_threads();
  const int64_t b = prompt.size(0), l = prompt.size(1);
  std::vector<LayerState> state;
  model.prefill(prompt, state);  // warm-up: caches, allocator, first-touch
  std::vector<double> times;
  for (int rep = 0; rep < 3; ++rep) {
    sync(device);
    auto t0 = Clock::now();
    Tensor logits = model.prefill(prompt, state);
    sync(device);
    times.push_back(seconds_since(t0));
  }
  std::sort(times.begin(), times.end());
  f.prefill_tok_s = (double)(b * l) / times[1];

  Tensor logits = model.prefill(prompt, state);
  auto one = [&] {
    Tensor picks = sample_tokens(logits, model.config().vocab_size, 0.0, 0);
    Tensor host = device.is_cpu() ? picks : to_device(picks, kCPU);  // generate() prints each byte
    (void)host.data<int64_t>()[0];
    logits = model.step(picks, state);
  };
  for (int i = 0; i < 10; ++i) one();
  times.clear();
  const int64_t splits0 = model.step_threads().split_runs();
  for (int rep = 0; rep < 3; ++rep) {
    auto t0 = Clock::now();
    for (int64_t i = 0; i < tokens; ++i) one();
    sync(device);
    times.push_back(seconds_since(t0));
  }
  std::sort(times.begin(), times.end());
  f.ms_per_step = 1e3 * times[1] / tokens;
  f.split_share = (double)(model.step_threads().split_runs() - splits0) / (3.0 * (double)tokens);
  f.gen_tok_s = (double)(b * tokens) / times[1];
  return f;
}

double training_forward_tok_s(const MambaLM& model, Device device) {
  Generator g(5);
  Tensor tokens = randint(0, 256, {16, 256}, &g).to(device);
  std::vector<double> times;
  for (int rep = 0; rep < 4; ++rep) {
    sync(device);
    auto t0 = Clock::now();
    Tensor logits = model.forward(tokens);  // records the graph, as in training
    sync(device);
    if (rep > 0) times.push_back(seconds_since(t0));
  }
  std::sort(times.begin(), times.end());
  return 16.0 * 256 / times[1];
}

}  // namespace

int run_generate_bench(const GenerateBenchOptions& o) {
  MG_CHECK(o.batch >= 1 && o.prompt_bytes >= 1 && o.tokens >= 1,
           "[bench generate] --batch, --prompt-bytes and --tokens must be positive (got {}, {}, {})", o.batch,
           o.prompt_bytes, o.tokens);
  const Device device = Device::parse(o.device);
  require_device(device, "bench generate");
  const MambaConfig cfg = MambaConfig::preset(o.preset);
  MambaLM model(cfg, 0);
  model.to(device);
  Generator g(1);
  Tensor prompt = randint(0, 256, {o.batch, o.prompt_bytes}, &g).to(device);
  const int64_t di = cfg.d_inner(), d = cfg.d_model, n = cfg.d_state, R = cfg.rank();
  const double macs_per_row =
      (double)cfg.n_layer * (d * 2 * di + di * cfg.d_conv + di * (R + 2 * n) + R * di + 3.0 * di * n + di * d) +
      (double)d * cfg.padded_vocab();
  const double weight_bytes = 4.0 * (double)model.num_parameters();

  const int n_threads = num_threads();
  mg::print(
      "mambagrad bench generate: preset {} ({} parameters, {:.1f} MB of weights) on {}, batch {}, prompt {} "
      "bytes, {} decoded tokens per row{}\n",
      o.preset, model.num_parameters(), weight_bytes / 1e6, device.str(), o.batch, o.prompt_bytes, o.tokens,
      o.background_load ? ", a busy thread on CPU 0 throughout" : "");
  std::fflush(stdout);
  BackgroundLoad load(o.background_load);

  std::vector<int> thread_counts = {n_threads};
  if (device.is_cpu() && n_threads > 1) thread_counts = {1, n_threads};
  std::vector<Figures> figs;
  for (int t : thread_counts) {
    set_num_threads(t);
    Figures f = measure_generation(model, prompt, o.tokens, device);
    const double peak = device.is_cpu() ? measure_peak_gflops(t) : 0;
    const double bw = device.is_cpu() ? measure_memory_bandwidth_gbs(t) : 0;
    const double floor_mem_ms = bw > 0 ? 1e3 * weight_bytes / (bw * 1e9) : 0;
    const double floor_flop_ms = peak > 0 ? 1e3 * 2 * macs_per_row * o.batch / (peak * 1e9) : 0;
    const double floor_ms = std::max(floor_mem_ms, floor_flop_ms);
    mg::print(
        "mambagrad preset={} device={} batch={} threads={} prefill_tokens_per_s={:.0f} gen_tokens_per_s={:.0f} "
        "ms_per_step={:.4f} split_steps={:.2f}",
        o.preset, device.str(), o.batch, t, f.prefill_tok_s, f.gen_tok_s, f.ms_per_step, f.split_share);
    if (device.is_cpu())
      mg::print(" peak_gflops={:.0f} bandwidth_gbs={:.1f} floor_mem_ms={:.4f} floor_flop_ms={:.4f} floor_ratio={:.2f}",
                peak, bw, floor_mem_ms, floor_flop_ms, f.ms_per_step / floor_ms);
    mg::print("\n");
    std::fflush(stdout);
    figs.push_back(f);
  }
  set_num_threads(n_threads);
  const double fwd = training_forward_tok_s(model, device);
  mg::print(
      "mambagrad training forward (batch 16 x 256, graph recorded) at {} threads: {:.0f} tokens/s; prefill / "
      "training forward = {:.2f}x\n",
      n_threads, fwd, figs.back().prefill_tok_s / fwd);
  if (figs.size() == 2)
    mg::print("decode at {} threads / at 1 thread = {:.2f}x (target: at least 1)\n", n_threads,
              figs[1].gen_tok_s / figs[0].gen_tok_s);

  bool peer_failed = false;
  if (o.peer) {
    for (const Figures& f : figs) {
      std::string status;
      auto kv = run_torch_peer(mg::format("--generate --preset {} --batch {} --prompt-bytes {} --tokens {} "
                                          "--threads {}{}",
                                          o.preset, o.batch, o.prompt_bytes, std::min<int64_t>(o.tokens, 300),
                                          f.threads, device.is_cuda() ? " --device " + device.str() : ""),
                               "gen_tokens_per_s", status);
      if (status != "ok") {
        mg::print("torch peer at {} threads: {}\n", f.threads, status);
        peer_failed |= status.rfind("failed", 0) == 0;
        continue;
      }
      const double tg = std::stod(kv.at("gen_tokens_per_s")), tp = std::stod(kv.at("prefill_tokens_per_s"));
      mg::print(
          "mambagrad / PyTorch at {} threads: decode {:.0f} / {:.0f} tokens/s = {:.2f}x, prefill {:.0f} / "
          "{:.0f} tokens/s = {:.2f}x\n",
          f.threads, f.gen_tok_s, tg, f.gen_tok_s / tg, f.prefill_tok_s, tp, f.prefill_tok_s / tp);
    }
  }
  std::fflush(stdout);
  return peer_failed ? 1 : 0;
}

}  // namespace mg::bench
