// `mambagrad bench scan|matmul|conv|train|generate [options]`: the benchmarks in bench/ (docs/perf.md).
//   scan [--reps R] [--ref-steps N] [--quick] [--device cpu|cuda[:N]]
//   matmul [--reps R] [--quick] [--peer] [--precision P]
//   conv [--reps R] [--quick]
//   train [--preset P ...] [--batch B] [--seq L] [--steps N] [--data FILE] [--peer] [--detect-anomaly]
//   generate [--preset P ...] [--batch B] [--prompt-bytes N] [--tokens T] [--peer] [--background-load]
#include "apps/commands.h"
#include "apps/option_checks.h"
#include "introspect/anomaly.h"
#include "bench/bench.h"
#include "core/error.h"

#include <algorithm>
#include <cstdio>

namespace mg::app {

namespace {
constexpr int64_t kMaxCount = 1000000;  // repetitions and steps: a bound that an int holds

struct BenchOpts {
  std::string what;
  bench::ScanBenchOptions scan;
  std::vector<std::string> presets;  // train
  int64_t batch = 16, seq = 256;
  int steps = 5, warmup = 2;
  bool peer = false;
  std::string profile;          // train: the op profiler's Chrome trace of the timed steps
  bool detect_anomaly = false;  // train: the steps under anomaly mode (its overhead)
  std::string data;
  std::string precision = "fp32";  // train
  std::string device = "cpu";      // scan and train (one --device option for every benchmark that takes one)
  bench::GenerateBenchOptions gen;
};

// The options of scan, matmul and conv.
void add_kernel_bench_options(CLI::App* cmd, BenchOpts& o) {
  add_checked(cmd, "--reps", o.scan.reps, "timed repetitions (scan: median reported; matmul: best reported)",
              int_range(1, kMaxCount));
  add_checked(cmd, "--ref-steps", o.scan.ref_steps,
              "scan: time the reference on at most this many steps and scale to l (0: min(l, 256))", at_least(0));
  cmd->add_flag("--quick", o.scan.quick, "small shapes only (a smoke test)");
}

// The options of train and generate; returns --batch, whose default differs between them.
CLI::Option* add_model_bench_options(CLI::App* cmd, BenchOpts& o) {
  cmd->add_option("--preset", o.presets, "train, generate: presets to run (default: small base; generate: small)");
  auto* batch = add_checked(cmd, "--batch", o.batch,
                            "train: batch size; generate: sequences decoded together "
                            "(default 1)",
                            at_least(1));
  add_checked(cmd, "--prompt-bytes", o.gen.prompt_bytes, "generate: prompt length (prefill)", at_least(1));
  add_checked(cmd, "--tokens", o.gen.tokens, "generate: decoded tokens per sequence", at_least(1));
  cmd->add_flag("--background-load", o.gen.background_load,
                "generate: a busy thread on CPU 0 during the measurements (a shared machine)");
  add_checked(cmd, "--seq", o.seq, "train: sequence length", at_least(1));
  add_checked(cmd, "--steps", o.steps, "train: timed steps", int_range(1, kMaxCount));
  add_checked(cmd, "--warmup", o.warmup, "train: untimed steps first", int_range(0, kMaxCount));
  cmd->add_flag("--detect-anomaly", o.detect_anomaly,
                "train: time the steps under anomaly mode (train --detect-anomaly), to measure its overhead");
  add_checked(
      cmd, "--precision", o.precision,
      "train: fp32, bf16 (mixed precision, as train --precision; the peer under torch.autocast) or both "
      "(each preset in fp32 then bf16, with the ratio); matmul times float32 and every bf16 way whatever it says",
      CLI::IsMember({"fp32", "bf16", "both"}));
  cmd->add_option("--profile", o.profile,
                  "train: profile the timed steps of one preset: write a Chrome trace to this file and print a table "
                  "per op")
      ->check(non_empty("a file for the trace"));
  cmd->add_option("--data", o.data, "train: sample batches from this byte file's train split (default: random bytes)")
      ->check(non_empty("a byte file"));
  cmd->add_flag("--peer", o.peer,
                "train, generate, matmul: also run the PyTorch peer, bench/torch_peer.py, and print the "
                "ratios (matmul: torch.mm in float32 and bfloat16 on the same shapes)");
  return batch;
}

// What `bench <what>` runs.
Run bench_run(const std::shared_ptr<BenchOpts>& o, CLI::Option* batch) {
  if (o->what == "generate")
    return [o, batch] {
      o->gen.batch = batch->count() ? o->batch : 1;
      o->gen.peer = o->peer;
      o->gen.device = o->device;
      int rc = 0;
      for (const std::string& p : o->presets.empty() ? std::vector<std::string>{"small"} : o->presets) {
        o->gen.preset = p;
        rc = std::max(rc, bench::run_generate_bench(o->gen));
      }
      return rc;
    };
  if (o->what == "train")
    return [o] {
      AnomalyMode anomaly(o->detect_anomaly);
      if (o->detect_anomaly) std::printf("anomaly mode on: every op output and gradient checked for NaN/inf\n");
      return bench::run_train_bench(o->presets, o->batch, o->seq, o->steps, o->warmup, o->peer, o->data, o->device,
                                    o->precision, o->profile);
    };
  if (o->what == "conv")
    return [o] {
      MG_CHECK(o->device == "cpu", "[bench conv] measures the CPU kernels; --device {} is not supported", o->device);
      return bench::run_conv_bench(o->scan.reps, o->scan.quick);
    };
  if (o->what == "matmul")
    return [o] {
      MG_CHECK(o->device == "cpu",
               "[bench matmul] measures the CPU gemm against OpenBLAS; --device {} is not "
               "supported (cuBLAS is timed inside `bench train --device cuda`)",
               o->device);
      return bench::run_matmul_bench(o->scan.reps, o->scan.quick, o->peer);
    };
  if (o->device != "cpu")
    return [o] {
      o->scan.device = o->device;
      return bench::run_scan_bench_cuda(o->scan);
    };
  return [o] { return bench::run_scan_bench(o->scan); };
}

// The benchmarks each option applies to; given to another, it is an error (it would be ignored).
void check_options_apply(CLI::App* cmd, const std::string& what) {
  struct Applies {
    const char* option;
    std::vector<std::string> to;
  };
  const Applies table[] = {
      {"--reps", {"scan", "matmul", "conv"}},
      {"--ref-steps", {"scan"}},
      {"--quick", {"scan", "matmul", "conv"}},
      {"--preset", {"train", "generate"}},
      {"--batch", {"train", "generate"}},
      {"--prompt-bytes", {"generate"}},
      {"--tokens", {"generate"}},
      {"--background-load", {"generate"}},
      {"--seq", {"train"}},
      {"--steps", {"train"}},
      {"--warmup", {"train"}},
      {"--detect-anomaly", {"train"}},
      {"--precision", {"train", "matmul"}},
      {"--profile", {"train"}},
      {"--data", {"train"}},
      {"--peer", {"train", "generate", "matmul"}},
      {"--device", {"scan", "train", "generate", "conv", "matmul"}},
  };
  for (const Applies& a : table) {
    if (cmd->get_option(a.option)->count() == 0 || std::find(a.to.begin(), a.to.end(), what) != a.to.end()) continue;
    std::string list;
    for (size_t i = 0; i < a.to.size(); ++i) list += (i ? i + 1 == a.to.size() ? " and " : ", " : "") + a.to[i];
    MG_CHECK(false, "[bench {}] {} is an option of bench {}, not of bench {}", what, a.option, list, what);
  }
}

}  // namespace

void add_bench_command(CLI::App& app, Run& run) {
  auto o = std::make_shared<BenchOpts>();
  auto* cmd = app.add_subcommand("bench", "benchmarks that print figures (see docs/perf.md)");
  cmd->add_option("what", o->what,
                  "which benchmark: scan (fused selective_scan vs its composed reference), matmul (our CPU gemm vs "
                  "OpenBLAS on the training shapes), conv (causal_conv1d against its memory floor), train (full "
                  "training steps: tokens/s and peak memory), generate (prefill "
                  "and decode tokens/s against the machine's floors)")
      ->required()
      ->check(CLI::IsMember({"scan", "matmul", "conv", "train", "generate"}));
  add_kernel_bench_options(cmd, *o);
  CLI::Option* batch = add_model_bench_options(cmd, *o);
  cmd->add_option("--device", o->device,
                  "scan, train, generate: cpu, cuda or cuda:N (scan on cuda: the fused scan against the GPU's copy "
                  "bandwidth); conv, matmul: cpu only")
      ->capture_default_str();
  cmd->callback([o, &run, batch, cmd] {
    check_options_apply(cmd, o->what);  // before anything runs (main reports the error)
#if MG_CUDA_EMULATED
    if (o->device != "cpu")
      std::fprintf(stderr,
                   "note: this build runs CUDA on the CPU emulator (-DMG_CUDA=EMULATE): its timings say "
                   "nothing about a GPU\n");
#endif
    run = bench_run(o, batch);
  });
}

}  // namespace mg::app
