// `mambagrad bench train [--preset P ...] [--batch B] [--seq L] [--steps N] [--warmup W] [--data FILE] [--peer]
//                       [--device cpu|cuda]`:
// full training steps of MambaLM, timed, with the memory they need; optionally beside a PyTorch peer.
//
// One step is the trainer's own: sample a batch (ByteDataset::sample), then train_step
// (train/train_step.h: model.loss, zero_grad, backward, clip_grad_norm(groups, 1.0), the loss read,
// AdamW step), with the parameter groups of make_param_groups. The learning
// rate is held at 1e-3 (no schedule: it does not change the cost). Batches are random windows of
// random bytes, or of the train split of --data (an enwik8 zip, gzip or raw file). The first
// --warmup steps are run untimed; the rest are timed one by one with a steady clock and
// tokens/s = batch * seq * steps / (sum of step times).
//
// Memory: "peak RSS" is getrusage's ru_maxrss. Several presets run in one process, so before each
// one the kernel's high-water mark is reset to the current RSS (writing "5" to
// /proc/self/clear_refs); when that is not allowed the figure is the peak since the process began
// and says so. "baseline RSS" is the RSS just before the model is built (program, libraries, data).
// "tensor peak" is the CPU storage counters' high-water mark (core/storage.h), reset before the
// model is built: parameters, gradients, AdamW state, activations and temporaries, nothing else.
//
// --peer runs bench/torch_peer.py (the same model, init, batch and optimizer in PyTorch, on the
// CPU in float32, with as many threads) for each preset in a child process, and prints the ratios. The
// peer runs its two selective scans (--scan precomputed: exp(dt A) and dt B u for all steps first, then a
// loop over unbind views; --scan loop: each step's factors computed in the loop) and the ratio is against
// the faster: the best a careful PyTorch user writes. The peer warms up at least kPeerWarmup steps: its
// second step allocates most of its memory (the AdamW state and the scan's saved tensors, gigabytes) and
// takes two to three times a later step's time, so one warm-up step would count it.
//
// --precision fp32|bf16|both: bf16 runs the steps under an AutocastGuard (ops/autocast.h, mixed
// precision) and the peer under torch.autocast(device, torch.bfloat16); both runs each preset in fp32
// then in bf16 and prints the bf16 / fp32 ratio of the same run.
//
// --device cuda: the model, gradients, AdamW state and batches live on the GPU (batches are sampled on
// the host and copied, as the trainer does). Device work is asynchronous, so the clock is read only
// after the device is idle: a cuda::synchronize ends each phase (forward, backward, update), two more
// waits per step than the trainer has, a few microseconds each. Memory: "device peak" is the caching allocator's
// high-water mark (cuda::memory_stats), reset before the model is built, minus the bytes in use then: parameters,
// gradients, AdamW state, activations and temporaries. The peer runs with --device cuda (PyTorch on
// the same GPU, timed between torch.cuda.synchronize() calls, torch.cuda.max_memory_allocated).
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include "core/format.h"
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "introspect/profiler.h"
#include "bench/bench.h"
#include "bench/timing.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/storage.h"
#include "cuda/runtime.h"
#include "data/bytes.h"
#include "data/dataset.h"
#include "io/atomic_file.h"
#include "io/output_file.h"
#include "models/mamba.h"
#include "ops/autocast.h"
#include "ops/cpu/gemm.h"
#include "train/distributed.h"
#include "train/options.h"
#include "train/train_step.h"

namespace mg::bench {

namespace {

double max_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_maxrss / 1024.0;  // Linux: kilobytes
}

// VmRSS from /proc/self/status, in MB (0 when unreadable).
double current_rss_mb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  if (!f) return false;
  f << "5";
  f.flush();
  return f.good();
}

struct Result {
  std::string preset;
  int64_t params = 0;
  double tokens_per_s = 0, ms_per_step = 0, fwd_ms = 0, bwd_ms = 0, opt_ms = 0;
  double cpu_ms_per_step = 0;  // process CPU time (all threads) per timed step
  double peak_rss_mb = 0, base_rss_mb = 0, tensor_peak_mb = 0, device_peak_mb = 0;
  bool rss_reset = false;
  double loss_first = 0, loss_last = 0;
  int64_t allreduce_bytes = 0;  // per step and rank (data parallel)
  int buckets = 0;
  double wait_ms = 0;  // per step: waiting for the all-reduce after backward
};

Result bench_preset(const std::string& preset, const ByteDataset& data, int64_t batch, int64_t seq, int steps,
                    int warmup, Device device, Precision precision, Profiler* profiler) {
  AutocastGuard autocast(precision);
  Result r;
  r.preset = preset;
  const MambaConfig cfg = MambaConfig::preset(preset);
  const bool gpu = device.is_cuda();
  // Waits for the device, so that a host clock read after it covers the work queued before.
  auto sync = [&] {
    if (gpu) cuda::synchronize(device.index);
  };
  r.rss_reset = reset_peak_rss();
  r.base_rss_mb = current_rss_mb();
  reset_cpu_peak_bytes();
  const size_t bytes_before = cpu_bytes_in_use();
  size_t device_before = 0;
  if (gpu) {
    sync();
    cuda::reset_peak_memory(device.index);
    device_before = cuda::memory_stats(device.index).in_use;
  }
  {
    MambaLM model(cfg, /*seed=*/0);
    model.to(device);
    r.params = model.num_parameters();
    AdamW opt(make_param_groups(model, 0.1), 1e-3);  // decay on matrices only (docs/design.md#training-defaults)
    // Under mpirun: `batch` is the global batch, each rank steps on its rows, gradients all-reduced (as train).
    const World& world = World::get();
    std::unique_ptr<GradientReducer> reducer;
    if (world.distributed()) {
      std::vector<Tensor> params;
      for (auto& p : model.named_parameters()) params.push_back(p.tensor);
      reducer = std::make_unique<GradientReducer>(world, std::move(params), 1.0 / world.size());
      r.allreduce_bytes = reducer->bytes_per_step(), r.buckets = reducer->num_buckets();
    }
    const int64_t local_batch = batch / world.size();
    Generator gen(1);
    double total = 0, fwd = 0, bwd = 0, upd = 0, wait0 = 0, cpu_total = 0;
    for (int s = 0; s < warmup + steps; ++s) {
      std::optional<Profiler::StepScope> profiled;
      if (profiler && s >= warmup) profiler->resume(), profiled.emplace(*profiler, s - warmup + 1);
      const auto t0 = Clock::now();
      const double c0 = process_cpu_seconds();
      Batch b = data.sample(batch, seq, gen, device);
      if (reducer) {
        b.inputs = b.inputs.narrow(0, world.rank() * local_batch, local_batch).contiguous();
        b.targets = b.targets.narrow(0, world.rank() * local_batch, local_batch).contiguous();
      }
      if (s == warmup && reducer) wait0 = reducer->wait_seconds();
      Clock::time_point t1, t2, t3;
      // The trainer's own step; each phase is timed once the device has finished it.
      const StepResult sr = train_step(
          model, opt, b, 1.0,
          [&](StepPhase phase) {
            sync();
            (phase == StepPhase::forward ? t1 : phase == StepPhase::backward ? t2 : t3) = Clock::now();
          },
          reducer.get());
      if (s == 0) r.loss_first = sr.loss;
      r.loss_last = sr.loss;
      if (s >= warmup) {
        fwd += std::chrono::duration<double>(t1 - t0).count();
        bwd += std::chrono::duration<double>(t2 - t1).count();
        upd += std::chrono::duration<double>(t3 - t2).count();
        total += seconds_since(t0);
        cpu_total += process_cpu_seconds() - c0;
      }
      if (profiled) profiled.reset(), profiler->pause();
    }
    r.tokens_per_s = (double)(batch * seq) * steps / total;
    r.ms_per_step = 1e3 * total / steps;
    r.cpu_ms_per_step = 1e3 * cpu_total / steps;
    r.fwd_ms = 1e3 * fwd / steps, r.bwd_ms = 1e3 * bwd / steps, r.opt_ms = 1e3 * upd / steps;
    if (reducer) r.wait_ms = 1e3 * (reducer->wait_seconds() - wait0) / steps;
  }
  r.peak_rss_mb = max_rss_mb();
  r.tensor_peak_mb = (double)(cpu_peak_bytes() - bytes_before) / (1024.0 * 1024.0);
  if (gpu) r.device_peak_mb = (double)(cuda::memory_stats(device.index).peak - device_before) / (1024.0 * 1024.0);
  return r;
}

constexpr int kPeerWarmup = 2;
// The warm-up steps the peer runs for a --warmup of `warmup`.
int peer_warmup(int warmup) { return std::max(warmup, kPeerWarmup); }

// Runs the PyTorch peer for one preset; echoes its output indented. Returns its key=value figures
// (empty when it was skipped or failed; `status` says which).
std::map<std::string, std::string> run_peer(const std::string& preset, int64_t batch, int64_t seq, int steps,
                                            int warmup, const std::string& data, Device device, Precision precision,
                                            const char* scan, std::string& status) {
  return run_torch_peer(
      mg::format("--preset {} --batch {} --seq {} --steps {} --warmup {} --threads {} --scan {}{}{}{}", preset, batch,
                 seq, steps, peer_warmup(warmup), num_threads(), scan,
                 precision == Precision::bf16 ? " --autocast" : "", data.empty() ? "" : " --data " + shell_quote(data),
                 device.is_cuda() ? " --device " + device.str() : ""),
      "tokens_per_s", status);
}

// Both of the peer's scans; returns the faster one's figures (status: the first failure or skip, else ok).
std::map<std::string, std::string> run_best_peer(const std::string& preset, int64_t batch, int64_t seq, int steps,
                                                 int warmup, const std::string& data, Device device,
                                                 Precision precision, std::string& status) {
  std::map<std::string, std::string> best;
  status = "ok";
  for (const char* scan : {"precomputed", "loop"}) {
    std::string st;
    auto kv = run_peer(preset, batch, seq, steps, warmup, data, device, precision, scan, st);
    if (st != "ok") {
      if (status == "ok") status = st;
      continue;
    }
    if (best.empty() || std::stod(kv.at("tokens_per_s")) > std::stod(best.at("tokens_per_s"))) best = kv;
  }
  if (!best.empty()) status = "ok";
  return best;
}

// --precision: fp32, bf16 or both (fp32 then bf16).
std::vector<Precision> bench_precisions(const std::string& precision_arg) {
  if (precision_arg == "both") return {Precision::f32, Precision::bf16};
  const auto p = parse_precision(precision_arg);
  MG_CHECK(p.has_value(), "[bench train] --precision {} is not one of fp32, bf16, both", precision_arg);
  return {*p};
}

// Every option, checked before any work.
void check_train_bench_options(const std::vector<std::string>& presets_in, int64_t batch, int64_t seq, int steps,
                               int warmup, bool peer, const std::string& profile, const std::string& data,
                               size_t num_precisions) {
  MG_CHECK(profile.empty() || num_precisions == 1,
           "[bench train] --profile profiles one run: give --precision fp32 or bf16, not both");
  MG_CHECK(batch >= 1 && seq >= 1 && steps >= 1 && warmup >= 0,
           "[bench train] batch, seq and steps must be positive and warmup not negative (got {}, {}, {}, {})", batch,
           seq, steps, warmup);
  if (!profile.empty()) {
    check_output_path(profile, {"bench train", "--profile", {data}, "", "", OutputKind::Trace});
    MG_CHECK(
        presets_in.size() == 1 && !peer,
        "[bench train] --profile profiles the timed steps of one preset without the peer: give one --preset "
        "(got {}) and no --peer",
        presets_in.empty() ? std::string("none: the default is small and base") : mg::format("{}", presets_in.size()));
  }
}

// Under mpirun: the global batch split evenly, and no peer.
void check_bench_ranks(const World& world, int64_t batch, bool peer) {
  if (!world.distributed()) return;
  MG_CHECK(batch % world.size() == 0,
           "[bench train] --batch {} is the global batch, split over the {} processes: use a multiple of {}", batch,
           world.size(), world.size());
  MG_CHECK(!peer, "[bench train] --peer runs one PyTorch process; start the benchmark as one process for it");
}

// The batches' source: 1 MiB of random bytes, or the train split of --data; `source` says which.
ByteDataset bench_data(const std::string& data_path, std::string& source) {
  if (data_path.empty()) {
    std::vector<uint8_t> bytes(size_t(1) << 20);
    std::mt19937_64 rng(1234);
    for (auto& b : bytes) b = (uint8_t)(rng() >> 56);
    source = "random bytes";
    return ByteDataset(std::move(bytes), "random");
  }
  ByteDataset data(split_bytes(read_byte_file(data_path, "--data")).train, "train");
  source = mg::format("the train split of {} ({} bytes)", data_path, data.size());
  return data;
}

void print_bench_header(const World& world, Device device, int64_t batch, int64_t seq, int steps, int warmup,
                        const std::string& source) {
  const bool gpu = device.is_cuda();
  mg::print(
      "mambagrad bench train on {}: batch {} x seq {} ({} tokens/step), {} warm-up + {} timed steps, {} threads, "
      "batches from {}{}\n",
      device.str(), batch, seq, batch * seq, warmup, steps, num_threads(), source,
      gpu ? mg::format(", TF32 {}", cuda::allow_tf32() ? "on" : "off") : "");
  if (world.distributed())
    mg::print(
        "{} processes (MPI), each {} rows of the batch and {} threads; gradients all-reduced in buckets during "
        "backward\n",
        world.size(), batch / world.size(), num_threads());
  mg::print(
      "step = sample + forward + loss.item() | zero_grad + backward{} | clip_grad_norm(1.0) + AdamW (lr 1e-3){}\n",
      gpu ? " + synchronize" : "", gpu ? " + synchronize" : "");
}

// The figures of one preset in one precision, as key=value lines.
void print_result(const Result& r, const std::string& preset, Precision precision, Device device, const World& world) {
  if (world.distributed())
    mg::print(
        "mambagrad preset={} precision={} ranks={} tokens_per_s_total={:.1f} tokens_per_s_per_rank={:.1f} "
        "allreduce_mb_per_step={:.2f} buckets={} allreduce_wait_ms={:.1f}\n",
        preset, precision_name(precision), world.size(), r.tokens_per_s, r.tokens_per_s / world.size(),
        (double)r.allreduce_bytes / 1e6, r.buckets, r.wait_ms);
  mg::print(
      "mambagrad preset={} precision={} device={} params={} tokens_per_s={:.1f} ms_per_step={:.1f} "
      "cpu_ms_per_step={:.1f} fwd_ms={:.1f} "
      "bwd_ms={:.1f} opt_ms={:.1f} peak_rss_mb={:.1f}{} base_rss_mb={:.1f} tensor_peak_mb={:.1f}{} "
      "loss_first={:.4f} loss_last={:.4f}\n",
      preset, precision_name(precision), device.str(), r.params, r.tokens_per_s, r.ms_per_step, r.cpu_ms_per_step,
      r.fwd_ms, r.bwd_ms, r.opt_ms, r.peak_rss_mb, r.rss_reset ? "" : " (peak since start: could not reset)",
      r.base_rss_mb, r.tensor_peak_mb, device.is_cuda() ? mg::format(" device_peak_mb={:.1f}", r.device_peak_mb) : "",
      r.loss_first, r.loss_last);
}

// Writes the trace of the profiled steps and prints the table.
void finish_profile(Profiler& profiler, const std::string& profile) {
  profiler.stop();
  write_file_atomic(profile, profiler.chrome_trace());
  mg::print("profile of {} step{} (Chrome trace: {}; open it in ui.perfetto.dev):\n{}", profiler.steps().size(),
            profiler.steps().size() == 1 ? "" : "s", profile, profiler.table_text());
}

// A preset's result with the peer's figures (empty when it was skipped or failed: `peer_status` says why).
struct BenchRow {
  Result r;
  std::map<std::string, std::string> peer;
  std::string peer_status;
};

// The table against the peer on a GPU: tokens/s and peak device memory.
void print_peer_table_gpu(const std::vector<BenchRow>& rows, Device device) {
  mg::print(
      "\nmambagrad / PyTorch on {} (memory: peak device memory of tensors above what was in use before the "
      "model was built; PyTorch: torch.cuda.max_memory_allocated)\n",
      device.str());
  mg::print("{:<11} {:>12} {:>12} {:>8} | {:>10} {:>10} {:>7}\n", "preset", "mg tok/s", "torch tok/s", "ratio",
            "mg dev MB", "torch MB", "ratio");
  for (const auto& [r, kv, status] : rows) {
    if (kv.empty() || !kv.count("peak_dev_mb")) {
      mg::print("{:<11} torch peer {}\n", r.preset, kv.empty() ? status : "gave no device memory figure");
      continue;
    }
    const double tt = std::stod(kv.at("tokens_per_s")), tm = std::stod(kv.at("peak_dev_mb"));
    mg::print("{:<11} {:>12.1f} {:>12.1f} {:>7.2f}x | {:>10.1f} {:>10.1f} {:>6.3f}x\n", r.preset, r.tokens_per_s, tt,
              r.tokens_per_s / tt, r.device_peak_mb, tm, tm > 0 ? r.device_peak_mb / tm : NAN);
  }
  mg::print("target: mambagrad at least 10x the PyTorch peer's tokens/s\n");
}

// The table against the peer on the CPU: tokens/s, peak RSS and peak RSS above the baseline.
void print_peer_table_cpu(const std::vector<BenchRow>& rows) {
  mg::print(
      "\nmambagrad / PyTorch ({} threads each; memory: peak RSS, and peak RSS above the baseline before the "
      "model was built)\n",
      num_threads());
  mg::print("{:<11} {:>12} {:>12} {:>7} | {:>9} {:>9} {:>7} | {:>10} {:>10} {:>7}\n", "preset", "mg tok/s",
            "torch tok/s", "ratio", "mg MB", "torch MB", "ratio", "mg +MB", "torch +MB", "ratio");
  for (const auto& [r, kv, status] : rows) {
    if (kv.empty()) {
      mg::print("{:<11} torch peer {}\n", r.preset, status);
      continue;
    }
    const double tt = std::stod(kv.at("tokens_per_s")), tm = std::stod(kv.at("peak_rss_mb"));
    const double tb = kv.count("base_rss_mb") ? std::stod(kv.at("base_rss_mb")) : 0.0;
    const double mg_extra = r.peak_rss_mb - r.base_rss_mb, t_extra = tm - tb;
    mg::print("{:<11} {:>12.1f} {:>12.1f} {:>6.2f}x | {:>9.1f} {:>9.1f} {:>6.3f}x | {:>10.1f} {:>10.1f} {:>6.3f}x\n",
              r.preset, r.tokens_per_s, tt, r.tokens_per_s / tt, r.peak_rss_mb, tm, r.peak_rss_mb / tm, mg_extra,
              t_extra, t_extra > 0 ? mg_extra / t_extra : NAN);
  }
}

}  // namespace

int run_train_bench(const std::vector<std::string>& presets_in, int64_t batch, int64_t seq, int steps, int warmup,
                    bool peer, const std::string& data_path, const std::string& device_name,
                    const std::string& precision_arg, const std::string& profile) {
  const std::vector<Precision> precisions = bench_precisions(precision_arg);
  check_train_bench_options(presets_in, batch, seq, steps, warmup, peer, profile, data_path, precisions.size());
  const Device device = Device::parse(device_name);
  require_device(device, "bench train");  // before any work, as the other commands
  const bool gpu = device.is_cuda();
  const std::vector<std::string> presets = presets_in.empty() ? std::vector<std::string>{"small", "base"} : presets_in;
  for (auto& p : presets) MambaConfig::preset(p);  // unknown names fail before any work
  const World& world = World::get();
  check_bench_ranks(world, batch, peer);
  const bool root = world.root();  // rank 0 alone prints

  std::string source;
  const ByteDataset data = bench_data(data_path, source);
  if (root) print_bench_header(world, device, batch, seq, steps, warmup, source);
  std::fflush(stdout);

  std::vector<BenchRow> rows;
  bool peer_failed = false;
  std::optional<Profiler> profiler;
  if (!profile.empty()) {
    profiler.emplace();
    profiler->pause();
    mg::print("profiling the timed steps (the figures below include the profiler's cost)\n");
  }
  for (auto& preset : presets) {
    double fp32_tokens_per_s = 0, fp32_cpu_ms = 0;
    for (Precision precision : precisions) {
      Result r =
          bench_preset(preset, data, batch, seq, steps, warmup, device, precision, profiler ? &*profiler : nullptr);
      if (!root) continue;
      if (profiler) finish_profile(*profiler, profile);
      r.preset = mg::format("{} {}", preset, precision_name(precision));
      print_result(r, preset, precision, device, world);
      const char* bf16_path = gpu ? "cuBLAS bf16" : cpu::bf16_gemm_name(cpu::Bf16Gemm::automatic);
      if (precision == Precision::f32)
        fp32_tokens_per_s = r.tokens_per_s, fp32_cpu_ms = r.cpu_ms_per_step;
      else if (fp32_tokens_per_s > 0)
        mg::print("mambagrad {}: bf16 / fp32 step {:.2f}x, by CPU time {:.2f}x (the bf16 gemm ran the {} path)\n",
                  preset, r.tokens_per_s / fp32_tokens_per_s, fp32_cpu_ms / r.cpu_ms_per_step, bf16_path);
      else
        mg::print("mambagrad {}: the bf16 gemm ran the {} path\n", preset, bf16_path);
      std::fflush(stdout);
      BenchRow row{r, {}, ""};
      if (peer) {
        row.peer = run_best_peer(preset, batch, seq, steps, warmup, data_path, device, precision, row.peer_status);
        if (row.peer_status != "ok") mg::print("torch peer for {}: {}\n", preset, row.peer_status);
        peer_failed |= row.peer_status.rfind("failed", 0) == 0;
      }
      rows.push_back(std::move(row));
    }
  }
  if (peer && gpu) print_peer_table_gpu(rows, device);
  if (peer && !gpu) print_peer_table_cpu(rows);
  if (peer)
    mg::print("torch: the faster of the peer's two scans (precomputed, loop), {} timed steps after {} warm-up{}\n",
              steps, peer_warmup(warmup),
              precisions.back() == Precision::bf16 ? "; bf16 rows: PyTorch under torch.autocast(bfloat16)" : "");
  return peer_failed ? 1 : 0;  // a skipped peer (no python3 or torch) is not a failure
}

}  // namespace mg::bench
