#include "train/checkpoint.h"

#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/regular_file.h"
#include "data/bytes.h"
#include "io/atomic_file.h"
#include "core/device.h"

namespace mg {

namespace fs = std::filesystem;

namespace {

// A metadata field of a checkpoint file as an unsigned integer no larger than `max`, or an error naming it.
uint64_t meta_uint(const SafetensorsFile& f, const std::string& key, const std::string& path, uint64_t max) {
  auto it = f.metadata.find(key);
  MG_CHECK(it != f.metadata.end(), "[resume] {} has no '{}' in its metadata (the checkpoint is damaged)", path, key);
  const std::string& s = it->second;
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  MG_CHECK(!s.empty() && ec == std::errc() && end == s.data() + s.size() && v <= max,
           "[resume] the metadata field '{}' of {} is '{}', not an integer in [0, {}] (the checkpoint is damaged)", key,
           path, s, max);
  return v;
}

// The step in the metadata of a root model.safetensors (its header only), or nullopt when the file or the
// field cannot be read.
std::optional<int64_t> root_step(const std::string& model) {
  try {
    const RegularFile in(model, "[run]");
    uint64_t n = 0;
    if (!in.read_at(0, &n, 8) || n > 100'000'000) return std::nullopt;
    std::string header(n, '\0');
    if (!in.read_at(8, header.data(), n)) return std::nullopt;
    const auto j = nlohmann::json::parse(header);
    return std::stoll(j.at("__metadata__").at("step").get<std::string>());
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::string require_folder(const std::string& dir) {
  std::error_code ec;
  MG_CHECK(!fs::exists(dir, ec) || fs::is_directory(dir, ec), "[run] {} is a file, not a run folder", dir);
  MG_CHECK(fs::is_directory(dir), "[run] {} is not a run folder (train one with: mambagrad train --out {})", dir,
           shell_word(dir));
  return dir;
}

// The options stored with a checkpoint (its trainer_state's metadata).
TrainOptions checkpoint_options(const CheckpointRef& ckpt) {
  const std::string path = ckpt.dir + "/" + kStateFile;
  const auto metadata = read_safetensors_metadata(path);  // not the optimizer's moments
  MG_CHECK(metadata.count("options"), "[resume] {} has no training options in its metadata", path);
  return TrainOptions::from_json(metadata.at("options"), path);
}

// The names in a run folder that change when a trainer saves a checkpoint and removes the older one.
std::vector<std::string> checkpoint_names(const std::string& run_dir) {
  std::vector<std::string> names;
  for (auto& n : inspect_run_folder(run_dir).run_files)
    if (checkpoint_step(n) >= 0) names.push_back(n);
  return names;
}

// Runs `read` (which reads the newest checkpoint of `run_dir`) again when it fails because a trainer
// rotated the checkpoints meanwhile (saved a newer one and removed the one being read): at most 5 tries.
template <class T, class F>
T reread_if_rotated(const std::string& run_dir, F&& read) {
  for (int attempt = 1;; ++attempt) {
    const std::vector<std::string> before = checkpoint_names(run_dir);
    try {
      return read();
    } catch (const Error&) {
      if (attempt >= 5 || checkpoint_names(run_dir) == before) throw;
    }
  }
}

// True when both files parse as JSON to the same value (false when either does not parse).
bool same_json(const std::string& a, const std::string& b) {
  try {
    return nlohmann::json::parse(read_text_file(a)) == nlohmann::json::parse(read_text_file(b));
  } catch (const std::exception&) {
    return false;
  }
}

// A root file (`path`, the run's `name`) that does not match its checkpoint's copy: the error, with how to
// restore it.
[[noreturn]] void changed_since_checkpoint(const std::string& why, const CheckpointRef& ckpt, const char* name,
                                           const std::string& path) {
  MG_THROW("[run] {}: the file was changed or damaged after its checkpoint was written. Restore it with: cp {} {}", why,
           shell_word(ckpt.dir + "/" + name), shell_word(path));
}

// Where the model of a run folder is read from: the root model.safetensors and config.json, both checked
// against the newest checkpoint's manifest (size and CRC-32) when there is one. A root file older than
// that checkpoint (a trainer is between its commit and the switch of the root files, or crashed there) is
// passed over for the checkpoint's own copy, with a note on stderr; a root file of the same step that does
// not match was changed or damaged afterwards, and one of a newer step cannot be verified: both are refused.
std::string model_folder(const std::string& run_dir) {
  const std::string model = run_dir + "/" + kModelFile;
  const bool root = fs::exists(model) && fs::exists(run_dir + "/" + kConfigFile);
  const auto ckpt = find_checkpoint(run_dir);
  if (!ckpt || ckpt->legacy) {
    if (root) return run_dir;
    MG_CHECK(!fs::exists(run_dir + "/" + kRunFile),
             "[run] the run in {} has not saved its first checkpoint yet (it saves one at every --eval-every steps and "
             "at the end); wait for it, or continue a stopped run with: mambagrad train --resume {}",
             run_dir, shell_word(run_dir));
    const bool has_model = fs::exists(model), has_config = fs::exists(run_dir + "/" + kConfigFile);
    MG_THROW("[run] {} has {} (is it a run folder written by mambagrad train?)", run_dir,
             has_model    ? mg::format("a {} but no {}", kModelFile, kConfigFile)
             : has_config ? mg::format("a {} but no {}", kConfigFile, kModelFile)
                          : mg::format("no {} and no {}", kModelFile, kConfigFile));
  }
  if (!root) return ckpt->dir;
  // The step first: a trainer replaces the root file (by a rename) only with a newer one, so a root of the
  // checkpoint's step read here is the file compared below, unless a newer checkpoint comes meanwhile
  // (then load_model reads again).
  const std::optional<int64_t> step = root_step(model);
  if (step && *step < ckpt->step) {  // said, so that a root file put there to be read is not passed over silently
    std::fputs(mg::format("note: {} is from step {}, older than the newest checkpoint ({}, step {}): that "
                          "checkpoint's model is read instead (a trainer that stopped before updating the root "
                          "copy leaves it so, and its next --resume updates it; to read that file itself, pass a "
                          "folder holding it and its config.json as --run)\n",
                          model, *step, ckpt->dir, ckpt->step)
                   .c_str(),
               stderr);
    return ckpt->dir;
  }
  const std::string why = compare_with_checkpoint(*ckpt, kModelFile, model);
  if (why.empty()) {  // the config too: the same in every checkpoint of a run, so no step to compare
    const std::string config = run_dir + "/" + kConfigFile;
    const std::string config_why = compare_with_checkpoint(*ckpt, kConfigFile, config);
    // Other bytes of the same JSON: written by a build whose serialisation differed.
    if (!config_why.empty() && !same_json(config, ckpt->dir + "/" + kConfigFile))
      changed_since_checkpoint(config_why, *ckpt, kConfigFile, config);
    return run_dir;
  }
  MG_CHECK(!step || *step == ckpt->step,
           "[run] {} is from step {}, newer than the newest usable checkpoint ({}, step {}), so it cannot be verified: "
           "the checkpoint of step {} is missing or damaged. Resume the run (which sets a damaged checkpoint aside), "
           "or use the older one with: cp {} {}",
           model, *step, ckpt->dir, ckpt->step, *step, shell_word(ckpt->dir + "/" + kModelFile), shell_word(model));
  changed_since_checkpoint(why, *ckpt, kModelFile, model);
}

}  // namespace

std::string read_text_file(const std::string& path) { return RegularFile(path, "[load]").read_all(); }

// A checkpoint is one folder made atomically (train/run_folder.h); the step is also stored in both
// safetensors files, and every metadata field is checked when it is read back.
void save_checkpoint(const std::string& dir, const MambaLM& model, const AdamW& opt, const TrainOptions& opts,
                     int64_t step, const Generator& data_gen, const std::vector<LayerState>& carry) {
  NamedTensors state = opt.state_tensors();
  for (size_t i = 0; i < carry.size(); ++i) {
    state.emplace_back(mg::format("carry.layers.{}.conv", i), carry[i].conv.detach());
    state.emplace_back(mg::format("carry.layers.{}.ssm", i), carry[i].ssm.detach());
  }
  write_checkpoint(dir, step, [&](const std::string& tmp) {
    write_file_atomic(tmp + "/" + kConfigFile, model.config().to_json());
    save_safetensors(tmp + "/" + kModelFile, model.state_dict(), {{"format", "pt"}, {"step", std::to_string(step)}});
    crash_point("checkpoint-model");
    save_safetensors(tmp + "/" + kStateFile, state,
                     {{"format", "mambagrad-trainer"},
                      {"step", std::to_string(step)},
                      {"adamw_steps", std::to_string(opt.step_count())},
                      {"data_seed", std::to_string(data_gen.seed())},
                      {"data_offset", std::to_string(data_gen.offset())},
                      {"options", opts.to_json()}});
    crash_point("checkpoint-state");
  });
}

LoadedCheckpoint read_checkpoint(const CheckpointRef& ckpt) {
  const std::string state_path = ckpt.dir + "/" + kStateFile, model_path = ckpt.dir + "/" + kModelFile;
  SafetensorsFile state = read_safetensors(state_path), model = read_safetensors(model_path);
  MG_CHECK(state.metadata.count("format") && state.metadata.at("format") == "mambagrad-trainer",
           "[resume] {} is not a mambagrad trainer state (its metadata has no format 'mambagrad-trainer')", state_path);
  const uint64_t kMaxI = (uint64_t)std::numeric_limits<int64_t>::max(), kMaxU = std::numeric_limits<uint64_t>::max();
  LoadedCheckpoint c;
  c.step = (int64_t)meta_uint(state, "step", state_path, kMaxI);
  MG_CHECK((int64_t)meta_uint(model, "step", model_path, kMaxI) == c.step,
           "[resume] {} and {} in {} are from different steps; the checkpoint is inconsistent", kModelFile, kStateFile,
           ckpt.dir);
  c.adamw_steps = (int64_t)meta_uint(state, "adamw_steps", state_path, kMaxI);
  c.data_seed = meta_uint(state, "data_seed", state_path, kMaxU);
  c.data_offset = meta_uint(state, "data_offset", state_path, kMaxU);
  MG_CHECK(state.metadata.count("options"), "[resume] {} has no training options in its metadata", state_path);
  c.options = TrainOptions::from_json(state.metadata.at("options"), state_path);
  c.model = std::move(model.tensors);
  // The carried state's tensors (carry.layers.<i>.conv / .ssm), then the AdamW moments.
  std::map<std::string, Tensor> carry;
  for (auto& [name, t] : state.tensors) {
    if (name.rfind("carry.", 0) == 0)
      carry[name] = t;
    else
      c.state.emplace_back(name, t);
  }
  const int64_t layers = c.options.config.n_layer;
  if (!carry.empty()) {
    for (int64_t i = 0; i < layers; ++i) {
      LayerState s;
      for (auto [part, dst] : {std::pair{"conv", &s.conv}, std::pair{"ssm", &s.ssm}}) {
        auto it = carry.find(mg::format("carry.layers.{}.{}", i, part));
        MG_CHECK(it != carry.end(),
                 "[resume] {} holds a carried state without carry.layers.{}.{} (the checkpoint is "
                 "damaged)",
                 state_path, i, part);
        *dst = it->second;
        carry.erase(it);
      }
      c.carry.push_back(s);
    }
    MG_CHECK(carry.empty(), "[resume] {} holds an unexpected tensor {} (the model has {} layers)", state_path,
             carry.begin()->first, layers);
  }
  return c;
}

std::optional<TrainOptions> find_run_options(const std::string& run_dir) {
  require_folder(run_dir);
  return reread_if_rotated<std::optional<TrainOptions>>(run_dir, [&]() -> std::optional<TrainOptions> {
    if (auto ckpt = find_checkpoint(run_dir)) return checkpoint_options(*ckpt);
    const std::string run_file = run_dir + "/" + kRunFile;
    if (fs::exists(run_file)) return TrainOptions::from_json(read_text_file(run_file), run_file);
    return std::nullopt;
  });
}

TrainOptions load_run_options(const std::string& run_dir) {
  require_folder(run_dir);
  return reread_if_rotated<TrainOptions>(run_dir, [&] {
    std::vector<std::string> skipped;
    if (auto ckpt = find_checkpoint(run_dir, &skipped)) return checkpoint_options(*ckpt);
    const std::string run_file = run_dir + "/" + kRunFile;
    if (fs::exists(run_file)) return TrainOptions::from_json(read_text_file(run_file), run_file);
    // A trainer stopped as it started leaves only its lock (and perhaps a temporary run.json), which
    // inspect_run_folder passes over.
    const RunFolderContents contents = inspect_run_folder(run_dir);
    const bool only_lock = skipped.empty() && fs::exists(run_dir + "/" + kLockFile) && contents.run_files.empty() &&
                           contents.other_files.empty();
    MG_THROW("[run] {} holds no training run: it has no {} and no checkpoint{}{}{}", run_dir, kRunFile,
             skipped.empty() ? "" : "; ", join_names(skipped, skipped.size()),
             only_lock ? mg::format(" (a trainer stopped as it started leaves only its lock: start the run again "
                                    "with mambagrad train --out {} and its options)",
                                    shell_word(run_dir))
                       : std::string());
  });
}

std::unique_ptr<MambaLM> load_model(const std::string& run_dir, Device device) {
  require_device(device, "load_model");
  require_folder(run_dir);
  auto model = reread_if_rotated<std::unique_ptr<MambaLM>>(run_dir, [&] {
    const std::string dir = model_folder(run_dir);
    MambaConfig cfg = MambaConfig::from_json(read_text_file(dir + "/" + kConfigFile), dir + "/" + kConfigFile);
    auto m = std::make_unique<MambaLM>(cfg);
    m->load_state_dict(load_safetensors(dir + "/" + kModelFile), dir + "/" + kModelFile);
    return m;
  });
  model->to(device);
  return model;
}

void check_run_data(const TrainOptions& opts, const std::vector<uint8_t>& bytes, const char* what) {
  if (opts.data_bytes == 0) return;  // a run from an older build recorded no identity
  const uint32_t crc = crc32_bytes(bytes.data(), bytes.size());
  MG_CHECK(bytes.size() == opts.data_bytes && crc == opts.data_crc32,
           "[{}] {} is not the data this run was trained on: it holds {} bytes with CRC-32 {:08x}, the run's data held "
           "{} bytes with CRC-32 {:08x}. Pass --data with the run's file",
           what, opts.data, bytes.size(), crc, opts.data_bytes, opts.data_crc32);
}

}  // namespace mg
