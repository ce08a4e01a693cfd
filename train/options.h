// The options of a training run: what `mambagrad train` takes, what run.json and every checkpoint
// record, and which of them a resumed run may change.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "core/device.h"
#include "models/mamba.h"
#include "ops/autocast.h"

namespace mg {

struct TrainOptions {
  std::string data;         // enwik8.zip, a .gz, or any byte file (stored as an absolute path)
  uint64_t data_bytes = 0;  // the data's identity (decoded size and CRC-32), filled in by train() and
  uint32_t data_crc32 = 0;  // checked on resume and by eval; 0 bytes: unknown (a run from an older build)
  std::string out = "runs/small";
  std::string preset = "small";
  MambaConfig config;  // the preset with command-line overrides applied
  int64_t steps = 2000;
  int64_t batch = 16;
  int64_t seq = 256;
  double lr = 1e-3;
  double min_lr_ratio = 0.1;  // cosine decays to this fraction of lr
  int64_t warmup = -1;        // linear warm-up steps (-1: min(100, steps / 10))
  double weight_decay = 0.1;
  double clip = 1.0;
  int64_t eval_every = 200;     // validation bpc and a checkpoint every this many steps (0: only at the end)
  int64_t eval_bytes = 131072;  // validation bytes per evaluation (-1: the whole split)
  int64_t test_bytes = -1;      // test bytes at the end (-1: the whole split)
  uint64_t seed = 0;
  bool carry_state = false;              // rows read contiguous streams, each window starting from the previous one's
                                         // final state (detached); validation and test then evaluate streams too
  Precision precision = Precision::f32;  // the matmuls' precision (ops/autocast.h): fp32, or bf16 mixed
                                         // precision (parameters, gradients, AdamW state, checkpoints stay float32).
                                         // Stored; may change on resume.
  bool progress = true;                  // print progress (an in-place line on a terminal, plain lines otherwise)
  int64_t stop_at = -1;                  // save and stop after this step, as Ctrl-C does (-1: run to `steps`)
  Device device = kCPU;                  // where the model, its gradients, the AdamW state and the batches live.
                                         // Not part of the run's stored options: a run may resume on another device.
  bool detect_anomaly = false;  // anomaly mode for the whole run (introspect/anomaly.h): slower, throws at the first
                                // NaN/inf op output or gradient naming the op and module. Not stored; may change
                                // on resume.
  bool overwrite = false;       // a new run may replace the run already in `out` (never stored)
  // Introspection (docs/introspection.md), none of it stored: the op profiler's Chrome trace goes to
  // `profile` (empty: off) for `profile_steps` steps, the first step this process takes skipped as a
  // warm-up when there are enough steps; `memory_report` prints live tensor memory at the peak of the
  // first such step, by category and op.
  std::string profile;
  int64_t profile_steps = 1;
  bool memory_report = false;

  // Throws mg::Error naming the command-line option (--clip, --warmup ...) and its valid range for
  // any value out of range. train() calls it before reading or writing anything.
  void validate() const;
  std::string to_json() const;
  // Every field is checked (type and range); errors name `source` and the field.
  static TrainOptions from_json(const std::string& text, const std::string& source);
};

// On resume: throws mg::Error naming every option that defines the run (the model, batch, seq, lr and
// its schedule, clip, weight decay, seed) whose value in `now` differs from the run's `stored` one, with
// both values; returns the options that may change and did ({"steps": [old, new], ...}) for the record.
// Checks that `path` (given as `option`) can be written as a file: not empty, not a folder, and its
// folder exists. Throws mg::Error naming the option otherwise. Touches nothing.
void check_output_file_option(const std::string& path, const char* option);

// What must be the same on every rank of a data-parallel run, as (option, value) pairs in the order of
// the command line: whether it resumes, the folder, the model, every option of the schedule and the
// evaluation, --stop-at, the kind of device, and the data by its decoded size and CRC-32 (filled in
// once the data is read). train() compares them with rank 0's (World::check_same_as_root).
std::vector<std::pair<std::string, std::string>> rank_identity(const TrainOptions& opts, bool resume);

nlohmann::ordered_json resume_changes(const TrainOptions& stored, const TrainOptions& now, const std::string& dir);

}  // namespace mg
