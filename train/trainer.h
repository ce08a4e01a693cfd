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
#include "train/checkpoint.h"
#include "train/generate.h"
#include "train/options.h"

namespace mg {

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
//
// Started by mpirun as one of N processes (train/distributed.h), the run is data parallel: opts.batch is
// the global batch (it must be divisible by N), every rank draws the same windows and trains on its
// batch / N rows, the gradients are summed over the ranks during backward (then clipped, and every rank
// takes the same AdamW step), and validation and test are split over the ranks. Rank 0 alone prints and
// writes the folder; a stop signal is agreed between the ranks after each step and after each round of
// evaluation batches. --carry-state is refused.
TrainResult train(TrainOptions opts, bool resume);

// require_device(device, op), the one check that a device is usable, is in core/device.h.

// Loss over the split's windows in order, on the model's device (batches are copied there; each
// batch's loss is read back to the host). Under an InterruptGuard a Ctrl-C stops it between batches
// with mg::Interrupted (train/interrupt.h).
EvalResult evaluate(const MambaLM& model, const class ByteDataset& data, int64_t batch, int64_t seq, int64_t max_bytes);

// Loss over the split (or its first max_bytes) read as `batch` contiguous streams with the state
// carried from window to window (ByteDataset::stream_window): every byte but the split's first is
// predicted exactly once, each with all of its stream's bytes before it as context (the first target
// of each stream from a zero state). The number to compare with published enwik8 results of
// recurrent models and Transformer-XL; evaluate()'s windows give each byte at most seq bytes of context.
EvalResult evaluate_stream(const MambaLM& model, const class ByteDataset& data, int64_t batch, int64_t seq,
                           int64_t max_bytes);

}  // namespace mg
