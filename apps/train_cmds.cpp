// `mambagrad train`, `eval` and `generate`: thin wrappers over train/trainer.h. Each takes
// `--device cpu|cuda|cuda:N`, checked before any work (apps/device_option.h).
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <tuple>
#include <utility>

#include "apps/commands.h"
#include "apps/device_option.h"
#include "apps/option_checks.h"
#include "core/memory_limit.h"
#include "core/regular_file.h"
#include "data/bytes.h"
#include "data/dataset.h"
#include "train/interrupt.h"
#include "train/run_data.h"
#include "train/run_folder.h"
#include "train/trainer.h"

namespace mg::app {

namespace fs = std::filesystem;

// The folder a new run goes to when --out is not given: runs/<preset>, or the first of runs/<preset>-2,
// -3 ... that holds no run, so that two runs without --out never meet.
std::string default_run_folder(const std::string& preset, bool overwrite) {
  const std::string base = "runs/" + preset;
  if (overwrite) return base;
  for (int i = 1;; ++i) {
    std::string dir = i == 1 ? base : mg::format("{}-{}", base, i);
    const RunFolderContents c = inspect_run_folder(dir);
    if (!c.is_file && !c.is_checkpoint && !c.holds_run() && c.other_files.empty()) return dir;
  }
}

namespace {

// What `train` takes besides TrainOptions' own fields: the model's sizes (applied over the preset) and
// the options that are not kept as typed.
struct TrainOverrides {
  int64_t d_model = 0, n_layer = 0, d_state = 0, d_conv = 0, expand = 0, dt_rank = 0;
  std::string resume, device = "cpu", precision = "fp32";
  bool quiet = false, overwrite = false;
};

void add_model_options(CLI::App* cmd, TrainOptions& o, TrainOverrides& ov) {
  cmd->add_option("--preset", o.preset, "tiny, small or base")
      ->capture_default_str()
      ->check(CLI::IsMember(MambaConfig::preset_names()));
  cmd->add_option("--d-model", ov.d_model, "override the preset's d_model")->check(at_least(1));
  cmd->add_option("--n-layer", ov.n_layer, "override the number of layers")->check(at_least(1));
  cmd->add_option("--d-state", ov.d_state, "override the SSM state size")->check(at_least(1));
  cmd->add_option("--d-conv", ov.d_conv, "override the conv width")->check(at_least(1));
  cmd->add_option("--expand", ov.expand, "override d_inner / d_model")->check(at_least(1));
  cmd->add_option("--dt-rank", ov.dt_rank, "override dt_rank (0: ceil(d_model / 16))")->check(at_least(0));
}

void add_schedule_options(CLI::App* cmd, TrainOptions& o, TrainOverrides& ov) {
  add_checked(cmd, "--steps", o.steps, "optimizer steps", at_least(1));
  add_checked(cmd, "--batch", o.batch, "sequences per step", at_least(1));
  add_checked(cmd, "--seq", o.seq, "bytes per sequence", at_least(1));
  add_checked(cmd, "--lr", o.lr, "peak learning rate", real([](double v) { return v > 0; }, "a positive number"));
  add_checked(cmd, "--warmup", o.warmup, "linear warm-up steps (-1: min(100, steps / 10))",
              integer<int64_t>([](int64_t v) { return v >= -1; }, "-1 (auto) or a non-negative integer"));
  add_checked(cmd, "--weight-decay", o.weight_decay, "AdamW weight decay on matrices",
              real([](double v) { return v >= 0; }, "a non-negative number"));
  add_checked(cmd, "--clip", o.clip, "global gradient-norm clip",
              real([](double v) { return v > 0; }, "a positive number (the largest gradient norm allowed)"));
  add_checked(cmd, "--eval-every", o.eval_every, "validation and checkpoint every K steps (0: only at the end)",
              at_least(0));
  add_checked(cmd, "--eval-bytes", o.eval_bytes, "validation bytes per evaluation (-1: all)",
              minus_one_or_positive("the whole split"));
  add_checked(cmd, "--test-bytes", o.test_bytes, "test bytes at the end (-1: all)",
              minus_one_or_positive("the whole split"));
  add_checked(cmd, "--seed", o.seed, "seed of the initialisation and the batches", unsigned_integer());
  cmd->add_flag("--carry-state", o.carry_state,
                "read the train split as --batch contiguous streams, each window starting from the previous one's "
                "final state (detached); validation and test then read streams too (eval --stream)");
  add_checked(cmd, "--precision", ov.precision,
              "fp32, or bf16: mixed precision (matmul inputs rounded to bfloat16, float32 sums; parameters, "
              "gradients, optimizer state and checkpoints stay float32; may change on resume)",
              CLI::IsMember({"fp32", "bf16"}));
}

void add_run_options(CLI::App* cmd, TrainOptions& o, TrainOverrides& ov) {
  cmd->add_option("--resume", ov.resume, "continue the run in this folder");
  cmd->add_option("--stop-at", o.stop_at, "save and stop after this step (continue later with --resume)")
      ->check(at_least(1));
  cmd->add_flag("--quiet", ov.quiet, "no progress output");
  cmd->add_flag("--detect-anomaly", o.detect_anomaly,
                "check every op output and gradient for NaN/inf and stop at the first, naming the op and its module "
                "(slower; may change on resume)");
  cmd->add_option("--profile", o.profile,
                  "profile steps (every op's forward and backward: time, thread, shapes, bytes): write a Chrome trace "
                  "to this file (open it in ui.perfetto.dev) and print a table per op")
      ->check(non_empty("a file for the trace"));
  add_checked(cmd, "--profile-steps", o.profile_steps,
              "steps to profile with --profile (the first step is skipped as a warm-up when there are enough)",
              at_least(1));
  cmd->add_flag("--memory-report", o.memory_report,
                "print the live tensor memory at the peak of one step (the second, or the first of a 1-step run): "
                "parameters, gradients, optimizer state, activations saved for backward, by op");
  add_device_option(cmd, ov.device, "train on this device (a run may resume on another)");
}

// The options of the run in --resume, with everything typed applied; train() refuses the options a run
// cannot change, naming them.
TrainOptions resumed_options(const TrainOptions& o, const TrainOverrides& ov, const CLI::App* cmd) {
  auto given = [&](const char* flag) { return cmd->count(flag) > 0; };
  MG_CHECK(!ov.resume.empty(), "[train] --resume is empty: name the run folder to continue");
  MG_CHECK(!ov.overwrite,
           "[train] --resume and --overwrite exclude each other: --resume continues the run in {}, --overwrite "
           "would replace it",
           ov.resume);
  MG_CHECK(!given("--out") || fs::weakly_canonical(o.out) == fs::weakly_canonical(ov.resume),
           "[train] --out {} and --resume {} name different folders: a resumed run continues in its own folder", o.out,
           ov.resume);
  TrainOptions opts = load_run_options(ov.resume);
  opts.out = ov.resume;
  if (given("--preset")) opts.preset = o.preset, opts.config = MambaConfig::preset(o.preset);
  if (given("--data")) opts.data = o.data;
  using Int = int64_t TrainOptions::*;
  for (const auto& [flag, field] : {std::pair<const char*, Int>{"--steps", &TrainOptions::steps},
                                    {"--batch", &TrainOptions::batch},
                                    {"--seq", &TrainOptions::seq},
                                    {"--warmup", &TrainOptions::warmup},
                                    {"--eval-every", &TrainOptions::eval_every},
                                    {"--eval-bytes", &TrainOptions::eval_bytes},
                                    {"--test-bytes", &TrainOptions::test_bytes}})
    if (given(flag)) opts.*field = o.*field;
  using Real = double TrainOptions::*;
  for (const auto& [flag, field] : {std::pair<const char*, Real>{"--lr", &TrainOptions::lr},
                                    {"--weight-decay", &TrainOptions::weight_decay},
                                    {"--clip", &TrainOptions::clip}})
    if (given(flag)) opts.*field = o.*field;
  if (given("--seed")) opts.seed = o.seed;
  if (given("--carry-state")) opts.carry_state = o.carry_state;
  if (given("--precision")) opts.precision = *parse_precision(ov.precision);
  return opts;
}

TrainOptions new_run_options(const TrainOptions& o, const TrainOverrides& ov, const CLI::App* cmd) {
  TrainOptions opts = o;
  MG_CHECK(!opts.data.empty(),
           "[train] --data is required: a byte file such as enwik8.zip (download it with: curl -LO "
           "http://mattmahoney.net/dc/enwik8.zip)");
  opts.config = MambaConfig::preset(opts.preset);
  opts.precision = *parse_precision(ov.precision);
  if (cmd->count("--out") == 0) opts.out = default_run_folder(opts.preset, ov.overwrite);
  return opts;
}

// The options train() runs with: the run's (resumed) or the typed ones (new), then the model's sizes and
// the options that apply to this process only.
TrainOptions train_options(const TrainOptions& o, const TrainOverrides& ov, const CLI::App* cmd, bool resume) {
  auto given = [&](const char* flag) { return cmd->count(flag) > 0; };
  TrainOptions opts = resume ? resumed_options(o, ov, cmd) : new_run_options(o, ov, cmd);
  using Size = int64_t TrainOverrides::*;
  using ConfigSize = int64_t MambaConfig::*;
  for (const auto& [flag, from, to] :
       {std::tuple<const char*, Size, ConfigSize>{"--d-model", &TrainOverrides::d_model, &MambaConfig::d_model},
        {"--n-layer", &TrainOverrides::n_layer, &MambaConfig::n_layer},
        {"--d-state", &TrainOverrides::d_state, &MambaConfig::d_state},
        {"--d-conv", &TrainOverrides::d_conv, &MambaConfig::d_conv},
        {"--expand", &TrainOverrides::expand, &MambaConfig::expand},
        {"--dt-rank", &TrainOverrides::dt_rank, &MambaConfig::dt_rank}})
    if (given(flag)) opts.config.*to = ov.*from;
  opts.progress = !ov.quiet;
  opts.stop_at = o.stop_at;
  opts.detect_anomaly = o.detect_anomaly;
  opts.profile = o.profile;
  opts.profile_steps = o.profile_steps;
  opts.memory_report = o.memory_report;
  MG_CHECK(given("--profile") || !given("--profile-steps"),
           "[train] --profile-steps needs --profile FILE.json (the trace it writes)");
  opts.overwrite = ov.overwrite;
  return opts;
}

}  // namespace

void add_train_command(CLI::App& app, Run& run) {
  auto o = std::make_shared<TrainOptions>();
  auto ov = std::make_shared<TrainOverrides>();
  auto* cmd = app.add_subcommand("train", "train a Mamba LM on enwik8 or any byte file");
  cmd->add_option("--data", o->data, "enwik8.zip, a .gz file or any byte file")->check(non_empty("a byte file"));
  cmd->add_option("--out", o->out,
                  "run folder (checkpoints, metrics.jsonl, curves.svg); default runs/<preset>, or runs/<preset>-2, "
                  "-3 ... when that holds a run");
  cmd->add_flag("--overwrite", ov->overwrite, "replace the run already in --out (its own files only)");
  add_model_options(cmd, *o, *ov);
  add_schedule_options(cmd, *o, *ov);
  add_run_options(cmd, *o, *ov);
  cmd->callback([o, ov, cmd, &run] {
    run = [o, ov, cmd] {
      const Device device = resolve_device(ov->device, "train");
      const bool resume = cmd->count("--resume") > 0;
      TrainOptions opts = train_options(*o, *ov, cmd, resume);
      opts.device = device;
      const TrainResult r = train(opts, resume);
      return r.signal ? interrupted_exit_status(r.signal) : 0;
    };
  });
}

void add_eval_command(CLI::App& app, Run& run) {
  struct Opts {
    std::string run_dir, split = "test", data, device = "cpu";
    int64_t bytes = -1, batch = 16, seq = 0;
    bool stream = false, windows = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("eval", "loss, bits per character and perplexity of a trained run");
  cmd->add_option("--run", o->run_dir, "run folder")->required();
  cmd->add_option("--split", o->split, "train, validation or test")->capture_default_str();
  cmd->add_option("--data", o->data, "byte file (default: the one the run trained on)")
      ->check(non_empty("a byte file"));
  cmd->add_option("--bytes", o->bytes, "evaluate only the first N bytes of the split (-1: all)")
      ->capture_default_str()
      ->check(minus_one_or_positive("the whole split"));
  cmd->add_option("--batch", o->batch, "sequences per batch")->capture_default_str()->check(at_least(1));
  cmd->add_option("--seq", o->seq, "bytes per window (default: the run's, else 256)")->check(at_least(1));
  auto* stream = cmd->add_flag("--stream", o->stream,
                               "--batch contiguous streams with the state carried across windows: every byte "
                               "predicted once with all the bytes before it in its stream (the default for runs "
                               "trained with --carry-state)");
  cmd->add_flag("--windows", o->windows,
                "independent windows of --seq bytes from a zero state (the default for other runs)")
      ->excludes(stream);
  add_device_option(cmd, o->device, "evaluate on this device");
  cmd->callback([o, &run] {
    run = [o] {
      MG_CHECK(o->split == "train" || o->split == "validation" || o->split == "test",
               "[eval] unknown split '{}' (valid: train, validation, test)", o->split);
      const Device device = resolve_device(o->device, "eval");
      // A folder made by other tools (model.safetensors and config.json only) records no options: then
      // --data names the file, and the window is --seq or 256.
      const std::optional<TrainOptions> recorded = find_run_options(o->run_dir);  // its checkpoint read once
      MG_CHECK(recorded || !o->data.empty(),
               "[eval] {} records no training run (no run.json and no checkpoint), so its data is unknown: pass "
               "--data FILE",
               o->run_dir);
      const TrainOptions opts = recorded.value_or(TrainOptions{});
      const int64_t seq = o->seq > 0 ? o->seq : opts.seq;
      const std::string path = o->data.empty() ? opts.data : o->data;
      // A split shorter than one window: no --bytes helps, only a smaller --seq. Checked from the size the
      // run records before the file is read, and again on the bytes read.
      const auto check_split = [&](uint64_t n) {
        MG_CHECK(n > (uint64_t)seq,
                 "[eval] the {} split of {} has {} bytes, shorter than one window of --seq {} + 1 bytes{}: {}",
                 o->split, path, n, seq, o->seq > 0 ? "" : " (the run's)",
                 n >= 2 ? mg::format("pass --seq at most {}", n - 1) : std::string("evaluate another split"));
      };
      if (o->data.empty() && opts.data_bytes > 0) check_split(split_size(opts.data_bytes, o->split));
      MG_CHECK(
          o->bytes == -1 || o->bytes > seq,
          "[eval] --bytes {} is shorter than one window of --seq {} + 1 bytes{}: use at least {}, or -1 (the whole "
          "split){}",
          o->bytes, seq, o->seq > 0 ? "" : " (the run's)", (uint64_t)seq + 1, o->seq > 0 ? ", or a smaller --seq" : "");
      auto model = load_model(o->run_dir, device);
      check_fits_in_memory(model->config().forward_bytes((double)o->batch * (double)seq), "eval",
                           mg::format("a batch of --batch {} x --seq {} tokens", o->batch, seq),
                           "; use a smaller --batch or --seq");
      std::vector<uint8_t> bytes = read_run_data(opts, o->data, "eval");
      if (o->data.empty()) check_run_data(opts, bytes, "eval");
      ByteSplits s = split_bytes(std::move(bytes));
      ByteDataset set(o->split == "train"        ? std::move(s.train)
                      : o->split == "validation" ? std::move(s.val)
                                                 : std::move(s.test),
                      o->split);
      check_split((uint64_t)set.size());
      InterruptGuard interrupt;  // Ctrl-C stops between batches: mg::Interrupted, exit status 130
      const bool streams = o->stream || (!o->windows && opts.carry_state);
      EvalResult r = streams ? evaluate_stream(*model, set, o->batch, seq, o->bytes)
                             : evaluate(*model, set, o->batch, seq, o->bytes);
      mg::print("{} split of {}: {} bytes predicted ({})\nloss {:.4f} nats | bpc {:.4f} | perplexity {:.4f}\n",
                o->split, path, r.targets,
                streams ? mg::format("{} streams, state carried across windows of {}", o->batch, seq)
                        : mg::format("windows of {} bytes, each from a zero state", seq),
                r.loss, r.bpc(), r.perplexity());
      return 0;
    };
  });
}

void add_generate_command(CLI::App& app, Run& run) {
  struct Opts {
    std::string run_dir, prompt, prompt_file, device = "cpu";
    SampleOptions s;
    bool jsonl = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("generate",
                                 "sample bytes from a trained run (the prompt through the parallel "
                                 "forward, then the recurrent step)");
  cmd->add_option("--run", o->run_dir, "run folder")->required();
  auto* prompt = cmd->add_option("--prompt", o->prompt, "text to start from");
  cmd->add_option("--prompt-file", o->prompt_file,
                  "start from the bytes of this file (any bytes, and longer than a command line holds)")
      ->check(non_empty("a file"))
      ->excludes(prompt);
  cmd->add_option("--bytes", o->s.bytes, "bytes to sample")->capture_default_str()->check(at_least(0));
  cmd->add_option("--temperature", o->s.temperature, "0 means greedy")
      ->capture_default_str()
      ->check(real([](double v) { return v >= 0; }, "a non-negative number (0: greedy)"));
  cmd->add_option("--top-k", o->s.top_k, "sample among the k likeliest bytes (0: all)")
      ->capture_default_str()
      ->check(at_least(0));
  cmd->add_option("--top-p", o->s.top_p,
                  "nucleus sampling: among those, the fewest likeliest bytes holding this much of the probability "
                  "(1: all)")
      ->capture_default_str()
      ->check(real([](double v) { return v > 0 && v <= 1; }, "a number in (0, 1] (1: no cut)"));
  cmd->add_option("--seed", o->s.seed, "sampling seed (continuation i uses seed + i)")
      ->capture_default_str()
      ->check(unsigned_integer());
  cmd->add_option("--num-samples", o->s.num_samples,
                  "continuations of the prompt, sampled as one batch and printed one after the other")
      ->capture_default_str()
      ->check(at_least(1));
  cmd->add_flag("--jsonl", o->jsonl,
                "print one JSON object per continuation: {\"sample\", \"seed\", \"prompt\", \"text\"} (bytes that are "
                "not UTF-8 become U+FFFD)");
  add_device_option(cmd, o->device, "run the model on this device");
  cmd->callback([o, &run] {
    run = [o] {
      o->s.validate();  // before anything is printed
      if (!o->prompt_file.empty()) {
        const RegularFile file(o->prompt_file, "[generate] --prompt-file");
        check_fits_in_memory((double)file.size(), "generate",
                             mg::format("--prompt-file {} ({} bytes)", o->prompt_file, file.size()),
                             "; use a shorter prompt");
        o->prompt = file.read_all();
      }
      const Device device = resolve_device(o->device, "generate");
      auto model = load_model(o->run_dir, device);
      const bool stream = o->s.num_samples == 1 && !o->jsonl;
      o->s.keep = !stream;  // a stream is printed as it is made, in memory that does not grow with --bytes
      if (stream) std::fwrite(o->prompt.data(), 1, o->prompt.size(), stdout);
      auto texts = generate_samples(*model, o->prompt, o->s, [stream](int64_t, char c) {
        if (!stream) return;
        std::fputc(c, stdout);
        flush_stdout("generate");  // a full disk stops the sampling at once
      });
      for (size_t i = 0; i < texts.size() && !stream; ++i) {
        const uint64_t seed = o->s.seed + i;
        if (o->jsonl) {
          nlohmann::ordered_json j;
          j["sample"] = i, j["seed"] = seed, j["prompt"] = o->prompt, j["text"] = texts[i];
          mg::print("{}\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
        } else {
          mg::print("== sample {} of {} (seed {}) ==\n{}{}\n", i + 1, texts.size(), seed, o->prompt, texts[i]);
        }
      }
      if (stream) std::fputc('\n', stdout);
      return 0;
    };
  });
}

}  // namespace mg::app
