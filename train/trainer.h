// Training, evaluation and generation for the Mamba LM on a byte file (enwik8 or any other).
// A run folder holds model.safetensors + config.json (loadable by transformers), run.json (the run's
// options and data identity), the newest complete checkpoint-<step>/ (with the AdamW state), metrics.jsonl
// and curves.svg; train/run_folder.h describes the layout and why a crash never leaves it unresumable.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/mamba.h"

namespace mg {

struct TrainOptions {
  std::string data;            // enwik8.zip, a .gz, or any byte file (stored as an absolute path)
  uint64_t data_bytes = 0;     // the data's identity (decoded size and CRC-32), filled in by train() and
  uint32_t data_crc32 = 0;     // checked on resume and by eval; 0 bytes: unknown (a run from an older build)
  std::string out = "runs/small";
  std::string preset = "small";
  MambaConfig config;          // the preset with command-line overrides applied
  int64_t steps = 2000;
  int64_t batch = 16;
  int64_t seq = 256;
  double lr = 1e-3;
  double min_lr_ratio = 0.1;   // cosine decays to this fraction of lr
  int64_t warmup = -1;         // linear warm-up steps (-1: min(100, steps / 10))
  double weight_decay = 0.1;
  double clip = 1.0;
  int64_t eval_every = 200;    // validation bpc and a checkpoint every this many steps (0: only at the end)
  int64_t eval_bytes = 131072; // validation bytes per evaluation (-1: the whole split)
  int64_t test_bytes = -1;     // test bytes at the end (-1: the whole split)
  uint64_t seed = 0;
  bool progress = true;        // print progress (an in-place line on a terminal, plain lines otherwise)
  int64_t stop_at = -1;        // save and stop after this step, as Ctrl-C does (-1: run to `steps`)
  Device device = kCPU;        // where the model, its gradients, the AdamW state and the batches live.
                               // Not part of the run's stored options: a run may resume on another device.
  bool overwrite = false;      // a new run may replace the run already in `out` (never stored)

  // Throws mg::Error naming the command-line option (--clip, --warmup ...) and its valid range for
  // any value out of range. train() calls it before reading or writing anything.
  void validate() const;
  std::string to_json() const;
  // Every field is checked (type and range); errors name `source` and the field.
  static TrainOptions from_json(const std::string& text, const std::string& source);
};

struct EvalResult {
  double loss = 0;  // mean cross-entropy, nats per byte
  int64_t targets = 0;
  double bpc() const;
  double perplexity() const;
};

struct TrainResult {
  EvalResult test;        // the test split's result (targets == 0 when the run stopped before it)
  int64_t step = 0;       // the last step done (a checkpoint of it is saved)
  bool finished = false;  // reached opts.steps and evaluated the test split
  int signal = 0;         // SIGINT or SIGTERM when a signal stopped the run, else 0
};

// Trains from scratch in opts.out, or continues the run there when `resume`, on opts.device.
//
// Before anything is written: every option is validated, the data is read (and, on resume, checked to
// be the run's data by size and CRC-32), and a new run refuses a folder that already holds a run unless
// opts.overwrite (which then removes only the run's own files). While training, the folder is locked
// (a second trainer is refused). On resume, opts are the run's stored options (load_run_options) with the
// caller's changes: steps, eval_every, eval_bytes, test_bytes and the data path may change (the changes
// are recorded in metrics.jsonl and run.json); a change to anything else (architecture, batch, seq, lr,
// schedule, clip, weight decay, seed) is refused naming the options. The newest complete checkpoint
// is loaded (a folder killed before its first checkpoint starts again from step 0).
//
// The model is initialised (or loaded) on the CPU and moved to the device; the checkpoints are written
// from host copies. On CUDA each step reads one number back to the host before the update (the gradient
// norm, which decides the clipping and catches a non-finite step) and the loss with it; the progress
// lines show the device allocator's bytes in use and peak.
// SIGINT (Ctrl-C) or SIGTERM in any phase (training, validation, the final test) saves a checkpoint of
// the last finished step and returns with `signal` set; a second one ends the process at once. A
// non-finite loss throws mg::Error naming the step and the last good checkpoint, if any.
TrainResult train(TrainOptions opts, bool resume);

// require_device(device, op), the one check that a device is usable, is in core/device.h.

// Reads a run folder's options (those of its newest checkpoint, else run.json) and model (the root
// model.safetensors and config.json, which is all a folder made by other tools needs). Checkpoints
// hold host copies, so a run trained on any device loads on any other: the model is read on the CPU,
// then moved to `device`. has_run_options() says whether the folder records its options at all.
TrainOptions load_run_options(const std::string& run_dir);
bool has_run_options(const std::string& run_dir);
std::unique_ptr<MambaLM> load_model(const std::string& run_dir, Device device = kCPU);

// Throws unless `bytes` (a file's decoded content) are the data `opts` was trained on (when the run
// recorded its data's size and CRC-32), naming both and the way out (`what` names the command).
void check_run_data(const TrainOptions& opts, const std::vector<uint8_t>& bytes, const char* what);

// Loss over the split's windows in order, on the model's device (batches are copied there; each
// batch's loss is read back to the host). Under an InterruptGuard a Ctrl-C stops it between batches
// with mg::Interrupted (train/interrupt.h).
EvalResult evaluate(const MambaLM& model, const class ByteDataset& data, int64_t batch, int64_t seq,
                    int64_t max_bytes);

struct SampleOptions {
  int64_t bytes = 500;
  double temperature = 0.8;  // 0: greedy
  int64_t top_k = 40;        // 0: no cut
  uint64_t seed = 0;
  // Throws mg::Error naming the option (--bytes, --temperature, --top-k) and its valid range.
  void validate() const;
};
// Feeds `prompt` through the recurrent step, then samples; each byte goes to `emit` as it is made.
// Runs on the model's device; each step's logits are read back to the host to sample.
std::string generate(const MambaLM& model, const std::string& prompt, const SampleOptions& opts,
                     const std::function<void(char)>& emit = nullptr);

}  // namespace mg
