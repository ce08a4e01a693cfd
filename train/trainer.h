// Training, evaluation and generation for the Mamba LM on a byte file (enwik8 or any other).
// A run folder holds: model.safetensors + config.json (loadable by transformers), trainer_state.
// safetensors (AdamW moments, step, data generator, the run's options), metrics.jsonl, curves.svg.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "models/mamba.h"

namespace mg {

struct TrainOptions {
  std::string data;            // enwik8.zip, a .gz, or any byte file
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

  std::string to_json() const;
  static TrainOptions from_json(const std::string& text, const std::string& source);
};

struct EvalResult {
  double loss = 0;  // mean cross-entropy, nats per byte
  int64_t targets = 0;
  double bpc() const;
  double perplexity() const;
};

// Trains from scratch, or continues the run in opts.out when `resume` (then the options stored in
// the run are used, except steps and eval_every/progress which the caller may have changed), on
// opts.device. The model is initialised (or loaded) on the CPU and moved to the device; the
// checkpoints are written from host copies. On CUDA each step reads one number back to the host
// before the update (the gradient norm, which decides the clipping and catches a non-finite step) and
// the loss with it; the progress lines show the device allocator's bytes in use and peak.
// Returns the final test result. Ctrl-C saves a checkpoint and returns early; a non-finite loss
// throws mg::Error naming the step, keeping the last good checkpoint.
EvalResult train(TrainOptions opts, bool resume);

// Throws unless `device` can be used now, naming `op`: "[op] this build has no CUDA support ..." in a
// build without CUDA, or that the machine has no such CUDA device. Commands call it before any work.
void require_device(Device device, const char* op);

// Reads a run folder's options (trainer_state.safetensors) and model. Checkpoints hold host copies,
// so a run trained on any device loads on any other: the model is read on the CPU, then moved to
// `device`.
TrainOptions load_run_options(const std::string& run_dir);
std::unique_ptr<MambaLM> load_model(const std::string& run_dir, Device device = kCPU);

// Loss over the split's windows in order, on the model's device (batches are copied there; each
// batch's loss is read back to the host).
EvalResult evaluate(const MambaLM& model, const class ByteDataset& data, int64_t batch, int64_t seq,
                    int64_t max_bytes);

struct SampleOptions {
  int64_t bytes = 500;
  double temperature = 0.8;  // 0: greedy
  int64_t top_k = 40;        // 0: no cut
  uint64_t seed = 0;
};
// Feeds `prompt` through the recurrent step, then samples; each byte goes to `emit` as it is made.
// Runs on the model's device; each step's logits are read back to the host to sample.
std::string generate(const MambaLM& model, const std::string& prompt, const SampleOptions& opts,
                     const std::function<void(char)>& emit = nullptr);

}  // namespace mg
