// A training checkpoint's files and the run's record: writing one (through the atomic checkpoint
// folder of train/run_folder.h), reading one back with every field checked, and loading a run's
// options and model for eval, generate and resume.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/rng.h"
#include "io/safetensors.h"
#include "models/mamba.h"
#include "train/optim.h"
#include "train/options.h"
#include "train/run_folder.h"

namespace mg {

// Writes checkpoint `step` of the run in `dir`: config.json, model.safetensors (Hugging Face names, the
// step in its metadata) and trainer_state.safetensors (the AdamW moments; the step, AdamW's step count,
// the data generator's state and the run's options in its metadata), from host copies.
// With carried state (train --carry-state), `carry` (one LayerState per layer; empty after a stream
// wrapped) goes into trainer_state.safetensors too, as carry.layers.<i>.conv and carry.layers.<i>.ssm.
void save_checkpoint(const std::string& dir, const MambaLM& model, const AdamW& opt, const TrainOptions& opts,
                     int64_t step, const Generator& data_gen, const std::vector<LayerState>& carry = {});

// A checkpoint read back: every metadata field checked (present, an integer in range, the same step
// in both files), errors naming the file and the field.
struct LoadedCheckpoint {
  int64_t step = 0;
  int64_t adamw_steps = 0;
  uint64_t data_seed = 0, data_offset = 0;
  TrainOptions options;
  NamedTensors model, state;      // state: the AdamW moments
  std::vector<LayerState> carry;  // the carried state (on the CPU), empty when none was saved
};
LoadedCheckpoint read_checkpoint(const CheckpointRef& ckpt);

// Reads a run folder's options (those of its newest checkpoint, else run.json) and model (the root
// model.safetensors and config.json, which is all a folder made by other tools needs). Checkpoints
// hold host copies, so a run trained on any device loads on any other: the model is read on the CPU,
// then moved to `device`. find_run_options() is load_run_options() for a folder that may record no
// options at all (one made by other tools): nullopt then.
TrainOptions load_run_options(const std::string& run_dir);
std::optional<TrainOptions> find_run_options(const std::string& run_dir);
std::unique_ptr<MambaLM> load_model(const std::string& run_dir, Device device = kCPU);

// Throws unless `bytes` (a file's decoded content) are the data `opts` was trained on (when the run
// recorded its data's size and CRC-32), naming both and the way out (`what` names the command).
void check_run_data(const TrainOptions& opts, const std::vector<uint8_t>& bytes, const char* what);

// The text of a small file (config.json, run.json), or an error naming it.
std::string read_text_file(const std::string& path);

}  // namespace mg
