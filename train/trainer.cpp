#include "train/trainer.h"

#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <limits>
#include <optional>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "autograd/grad_mode.h"
#include "cuda/runtime.h"
#include "data/bytes.h"
#include "data/dataset.h"
#include "train/atomic_file.h"
#include "train/interrupt.h"
#include "train/metrics.h"
#include "train/optim.h"
#include "train/run_folder.h"
#include "train/safetensors.h"

namespace mg {

namespace fs = std::filesystem;

// ---- options ----

void TrainOptions::validate() const {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  MG_CHECK(!out.empty(), "[train] --out must name a folder");
  MG_CHECK(steps >= 1, "[train] --steps must be at least 1, got {}", steps);
  MG_CHECK(batch >= 1, "[train] --batch must be at least 1, got {}", batch);
  MG_CHECK(seq >= 1, "[train] --seq must be at least 1, got {}", seq);
  MG_CHECK(seq < kMax && batch <= kMax / (seq + 1),
           "[train] --batch {} windows of --seq {} + 1 bytes is more bytes than a 64-bit count holds", batch, seq);
  MG_CHECK(std::isfinite(lr) && lr > 0, "[train] --lr must be positive and finite, got {}", lr);
  MG_CHECK(min_lr_ratio >= 0 && min_lr_ratio <= 1, "[train] the final lr ratio must be in [0, 1], got {}",
           min_lr_ratio);
  MG_CHECK(warmup == -1 || (warmup >= 0 && warmup <= steps),
           "[train] --warmup must be -1 (auto: min(100, steps / 10)) or between 0 and --steps ({}), got {}", steps,
           warmup);
  MG_CHECK(std::isfinite(weight_decay) && weight_decay >= 0, "[train] --weight-decay must be >= 0 and finite, got {}",
           weight_decay);
  MG_CHECK(std::isfinite(clip) && clip > 0,
           "[train] --clip must be positive and finite (the largest global gradient norm allowed), got {}", clip);
  MG_CHECK(eval_every >= 0, "[train] --eval-every must be >= 0 (0: only at the end), got {}", eval_every);
  MG_CHECK(eval_bytes == -1 || eval_bytes >= 1, "[train] --eval-bytes must be -1 (the whole split) or positive, got {}",
           eval_bytes);
  MG_CHECK(test_bytes == -1 || test_bytes >= 1, "[train] --test-bytes must be -1 (the whole split) or positive, got {}",
           test_bytes);
  MG_CHECK(stop_at == -1 || (stop_at >= 1 && stop_at <= steps),
           "[train] --stop-at must be between 1 and --steps ({}), got {}", steps, stop_at);
  const auto names = MambaConfig::preset_names();
  MG_CHECK(std::find(names.begin(), names.end(), preset) != names.end(),
           "[train] unknown --preset '{}' (valid: tiny, small, base)", preset);
  config.validate();
}

std::string TrainOptions::to_json() const {
  nlohmann::ordered_json j;
  j["data"] = data, j["data_bytes"] = data_bytes, j["data_crc32"] = data_crc32;
  j["out"] = out, j["preset"] = preset;
  j["config"] = nlohmann::json::parse(config.to_json());
  j["steps"] = steps, j["batch"] = batch, j["seq"] = seq, j["lr"] = lr, j["min_lr_ratio"] = min_lr_ratio;
  j["warmup"] = warmup, j["weight_decay"] = weight_decay, j["clip"] = clip, j["eval_every"] = eval_every;
  j["eval_bytes"] = eval_bytes, j["test_bytes"] = test_bytes, j["seed"] = seed;
  return j.dump();
}

TrainOptions TrainOptions::from_json(const std::string& text, const std::string& source) {
  TrainOptions o;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    MG_THROW("[resume] the training options in {} are not valid JSON: {}", source, e.what());
  }
  MG_CHECK(j.is_object(), "[resume] the training options in {} are not a JSON object", source);
  auto field = [&](const char* key, auto& dst, bool optional = false) {
    using T = std::decay_t<decltype(dst)>;
    if (!j.contains(key)) {
      MG_CHECK(optional, "[resume] the training options in {} have no field '{}'", source, key);
      return;
    }
    const auto& v = j.at(key);
    bool ok;
    if constexpr (std::is_same_v<T, std::string>) ok = v.is_string();
    else if constexpr (std::is_floating_point_v<T>) ok = v.is_number();
    else if constexpr (std::is_unsigned_v<T>) ok = v.is_number_unsigned() && v.template get<uint64_t>() <= std::numeric_limits<T>::max();
    else ok = v.is_number_integer();
    MG_CHECK(ok, "[resume] the field '{}' of the training options in {} has the wrong type or range: {}", key, source,
             v.dump());
    dst = v.template get<T>();
  };
  field("data", o.data), field("data_bytes", o.data_bytes, true), field("data_crc32", o.data_crc32, true);
  field("out", o.out), field("preset", o.preset);
  MG_CHECK(j.contains("config") && j.at("config").is_object(),
           "[resume] the training options in {} have no model config", source);
  o.config = MambaConfig::from_json(j.at("config").dump(), source);
  field("steps", o.steps), field("batch", o.batch), field("seq", o.seq), field("lr", o.lr);
  field("min_lr_ratio", o.min_lr_ratio), field("warmup", o.warmup), field("weight_decay", o.weight_decay);
  field("clip", o.clip), field("eval_every", o.eval_every), field("eval_bytes", o.eval_bytes);
  field("test_bytes", o.test_bytes), field("seed", o.seed);
  try {
    o.validate();
  } catch (const Error& e) {
    MG_THROW("[resume] the training options in {} are out of range: {}", source, e.what());
  }
  return o;
}

double EvalResult::bpc() const { return loss / std::log(2.0); }
double EvalResult::perplexity() const { return std::exp(loss); }

void SampleOptions::validate() const {
  MG_CHECK(bytes >= 0, "[generate] --bytes must be >= 0, got {}", bytes);
  MG_CHECK(std::isfinite(temperature) && temperature >= 0,
           "[generate] --temperature must be >= 0 and finite (0: greedy), got {}", temperature);
  MG_CHECK(top_k >= 0, "[generate] --top-k must be >= 0 (0: no cut), got {}", top_k);
}

// ---- checkpoints ----

namespace {

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  MG_CHECK(f.good(), "[load] cannot open {}", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A checkpoint is one folder made atomically (train/run_folder.h); the step is also stored in both
// safetensors files, and every metadata field is checked when it is read back.
void save_checkpoint(const std::string& dir, const MambaLM& model, const AdamW& opt, const TrainOptions& opts,
                     int64_t step, const Generator& data_gen) {
  write_checkpoint(dir, step, [&](const std::string& tmp) {
    write_file_atomic(tmp + "/" + kConfigFile, model.config().to_json());
    save_safetensors(tmp + "/" + kModelFile, model.state_dict(), {{"format", "pt"}, {"step", std::to_string(step)}});
    crash_point("checkpoint-model");
    save_safetensors(tmp + "/" + kStateFile, opt.state_tensors(),
                     {{"format", "mambagrad-trainer"},
                      {"step", std::to_string(step)},
                      {"adamw_steps", std::to_string(opt.step_count())},
                      {"data_seed", std::to_string(data_gen.seed())},
                      {"data_offset", std::to_string(data_gen.offset())},
                      {"options", opts.to_json()}});
    crash_point("checkpoint-state");
  });
}

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

std::string require_folder(const std::string& dir) {
  MG_CHECK(fs::is_directory(dir), "[run] {} is not a run folder (train one with: mambagrad train --out {})", dir, dir);
  return dir;
}

// "| cuda mem 123.4 MB (peak 456.7 MB)": the caching allocator's counters (cuda/runtime.h).
std::string device_memory(Device d) {
  if (!d.is_cuda()) return "";
  const cuda::MemoryStats m = cuda::memory_stats(d.index);
  return fmt::format(" | {} mem {:.1f} MB (peak {:.1f} MB)", d.str(), (double)m.in_use / 1048576.0,
                     (double)m.peak / 1048576.0);
}

std::string fmt_duration(double s) {
  int64_t t = (int64_t)std::max(0.0, s);
  return t >= 3600 ? fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60) : fmt::format("{:02}:{:02}", t / 60, t % 60);
}

std::string list_names(const std::vector<std::string>& names, size_t max = 4) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < max; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > max) s += fmt::format(" and {} more", names.size() - max);
  return s;
}

// A new run may go into a folder that does not exist or is empty; one that holds a run only with
// --overwrite; one that holds other files is refused.
void check_new_run_folder(const std::string& dir, const RunFolderContents& c, bool overwrite) {
  MG_CHECK(!c.is_file, "[train] --out {} is a file, not a folder", dir);
  if (c.holds_run() && !overwrite)
    MG_THROW("[train] {} already holds a run ({}): continue it with --resume {}, replace it with --overwrite, or "
             "choose another --out",
             dir, list_names(c.run_files), dir);
  if (!c.holds_run() && !c.other_files.empty())
    MG_THROW("[train] {} is not empty and holds no run ({}); choose an empty or new folder for --out", dir,
             list_names(c.other_files));
}

// The options of a resumed run that may differ from the stored ones, and those that may not.
void compare_resumed_options(const TrainOptions& stored, const TrainOptions& now, const std::string& dir,
                             nlohmann::ordered_json& changed) {
  std::vector<std::string> fixed;
  auto check = [&](const char* flag, const auto& a, const auto& b) {
    if (a != b) fixed.push_back(fmt::format("{} {} (the run's: {})", flag, b, a));
  };
  check("--preset", stored.preset, now.preset);
  const MambaConfig &sc = stored.config, &nc = now.config;
  check("--d-model", sc.d_model, nc.d_model), check("--n-layer", sc.n_layer, nc.n_layer);
  check("--d-state", sc.d_state, nc.d_state), check("--d-conv", sc.d_conv, nc.d_conv);
  check("--expand", sc.expand, nc.expand), check("--dt-rank", sc.rank(), nc.rank());
  check("vocab_size", sc.vocab_size, nc.vocab_size), check("norm_eps", sc.norm_eps, nc.norm_eps);
  check("--batch", stored.batch, now.batch), check("--seq", stored.seq, now.seq), check("--lr", stored.lr, now.lr);
  check("--warmup", stored.warmup, now.warmup), check("--weight-decay", stored.weight_decay, now.weight_decay);
  check("--clip", stored.clip, now.clip), check("--seed", stored.seed, now.seed);
  check("min_lr_ratio", stored.min_lr_ratio, now.min_lr_ratio);
  MG_CHECK(fixed.empty(),
           "[resume] these options are fixed by the run in {} and cannot change when it resumes: {}. Drop them to "
           "continue the run, or start a new run (another --out, or --overwrite) to use them",
           dir, list_names(fixed, fixed.size()));
  auto note = [&](const char* key, const auto& a, const auto& b) {
    if (a != b) changed[key] = {a, b};
  };
  note("steps", stored.steps, now.steps), note("eval_every", stored.eval_every, now.eval_every);
  note("eval_bytes", stored.eval_bytes, now.eval_bytes), note("test_bytes", stored.test_bytes, now.test_bytes);
  note("data", stored.data, now.data);
}

// The options stored with a checkpoint (its trainer_state's metadata).
TrainOptions checkpoint_options(const CheckpointRef& ckpt) {
  const std::string path = ckpt.dir + "/" + kStateFile;
  auto f = read_safetensors(path);
  MG_CHECK(f.metadata.count("options"), "[resume] {} has no training options in its metadata", path);
  return TrainOptions::from_json(f.metadata.at("options"), path);
}

}  // namespace

bool has_run_options(const std::string& run_dir) {
  return fs::exists(run_dir + "/" + kRunFile) || find_checkpoint(run_dir).has_value();
}

TrainOptions load_run_options(const std::string& run_dir) {
  require_folder(run_dir);
  std::vector<std::string> skipped;
  if (auto ckpt = find_checkpoint(run_dir, &skipped)) return checkpoint_options(*ckpt);
  const std::string run_file = run_dir + "/" + kRunFile;
  if (fs::exists(run_file)) return TrainOptions::from_json(read_text(run_file), run_file);
  MG_THROW("[run] {} holds no training run: it has no {} and no checkpoint{}{}", run_dir, kRunFile,
           skipped.empty() ? "" : "; ", list_names(skipped, skipped.size()));
}

std::unique_ptr<MambaLM> load_model(const std::string& run_dir, Device device) {
  require_device(device, "load_model");
  require_folder(run_dir);
  std::string dir = run_dir;
  if (!fs::exists(run_dir + "/" + kModelFile) || !fs::exists(run_dir + "/" + kConfigFile)) {
    // A crash between the first checkpoint's commit and the switch of the root files leaves them only
    // in the checkpoint folder.
    auto ckpt = find_checkpoint(run_dir);
    if (ckpt && !ckpt->legacy) dir = ckpt->dir;
  }
  for (const char* f : {kModelFile, kConfigFile})
    MG_CHECK(fs::exists(dir + "/" + f), "[run] {} has no {} (is it a run folder written by mambagrad train?)", run_dir,
             f);
  MambaConfig cfg = MambaConfig::from_json(read_text(dir + "/" + kConfigFile), dir + "/" + kConfigFile);
  auto model = std::make_unique<MambaLM>(cfg);
  model->load_state_dict(load_safetensors(dir + "/" + kModelFile), dir + "/" + kModelFile);
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

EvalResult evaluate(const MambaLM& model, const ByteDataset& data, int64_t batch, int64_t seq, int64_t max_bytes) {
  NoGradGuard ng;
  EvalResult r;
  double total = 0;
  const int64_t n = data.num_eval_batches(batch, seq, max_bytes);
  const Device device = model.device();
  for (int64_t i = 0; i < n; ++i) {
    throw_if_interrupted("evaluate");
    Batch b = data.eval_batch(i, batch, seq, max_bytes, device);
    const int64_t count = b.targets.numel();
    total += model.loss(b.inputs, b.targets).item() * (double)count;
    r.targets += count;
  }
  r.loss = r.targets ? total / (double)r.targets : std::nan("");
  return r;
}

TrainResult train(TrainOptions opts, bool resume) {
  InterruptGuard interrupt;  // Ctrl-C from here on stops at the next safe point
  opts.validate();
  require_device(opts.device, "train");  // before reading data or writing anything
  if (opts.warmup < 0) opts.warmup = std::min<int64_t>(100, opts.steps / 10);
  const std::string dir = opts.out;

  // The folder, read only: a new run must not replace a run unless asked to.
  RunFolderContents contents = inspect_run_folder(dir);
  if (resume) {
    MG_CHECK(contents.exists, "[resume] {} is not a run folder (train one with: mambagrad train --out {})", dir, dir);
    MG_CHECK(!opts.overwrite, "[train] --overwrite and --resume exclude each other");
  } else {
    check_new_run_folder(dir, contents, opts.overwrite);
  }

  // The data: a bad file fails before anything is written; a resumed run must see its own data.
  std::vector<uint8_t> bytes = read_byte_file(opts.data);
  if (resume) check_run_data(opts, bytes, "resume");
  opts.data = fs::absolute(opts.data).lexically_normal().string();
  opts.data_bytes = bytes.size(), opts.data_crc32 = crc32_bytes(bytes.data(), bytes.size());
  ByteSplits splits = split_bytes(std::move(bytes));
  ByteDataset train_set(std::move(splits.train), "train"), val_set(std::move(splits.val), "validation"),
      test_set(std::move(splits.test), "test");
  {  // each split must hold one window: fail now, not after an hour of training
    Generator probe(0);
    train_set.sample(1, opts.seq, probe);
    val_set.num_eval_batches(opts.batch, opts.seq, opts.eval_bytes);
    test_set.num_eval_batches(opts.batch, opts.seq, opts.test_bytes);
  }
  throw_if_interrupted("train");

  // Take the folder: from here on this process is its only writer.
  fs::create_directories(dir);
  RunLock lock(dir);
  if (!resume) {
    check_new_run_folder(dir, inspect_run_folder(dir), opts.overwrite);  // again, now that it is ours
    if (opts.overwrite) remove_run_files(dir);
  }
  remove_temporaries(dir);

  // The model is initialised (and a checkpoint loaded) on the CPU, then moved; the optimizer is made
  // after the move so that its state lives on the device too.
  MambaLM model(opts.config, opts.seed);
  std::optional<CheckpointRef> ckpt;
  SafetensorsFile state_file;
  nlohmann::ordered_json changed = nlohmann::ordered_json::object();
  int64_t start = 0;
  if (resume) {
    std::vector<std::string> skipped;
    ckpt = find_checkpoint(dir, &skipped);
    // A complete checkpoint folder never fails to verify after a crash (its rename is the commit point);
    // one that does was damaged afterwards. An older good one is used (the newer is set aside, not
    // deleted); with none, resuming would silently start again, so it is an error.
    MG_CHECK(ckpt || skipped.empty(), "[resume] {} has no usable checkpoint: {}. Start the run again with --overwrite",
             dir, list_names(skipped, skipped.size()));
    for (const auto& s : skipped) fmt::print(stderr, "note: {}; it is set aside as <name>.damaged\n", s);
    set_aside_unusable_checkpoints(dir, ckpt && !ckpt->legacy ? ckpt->step : -1);
    if (ckpt) {
      const std::string state_path = ckpt->dir + "/" + kStateFile, model_path = ckpt->dir + "/" + kModelFile;
      state_file = read_safetensors(state_path);
      auto model_file = read_safetensors(model_path);
      MG_CHECK(state_file.metadata.count("format") && state_file.metadata.at("format") == "mambagrad-trainer",
               "[resume] {} is not a mambagrad trainer state (its metadata has no format 'mambagrad-trainer')",
               state_path);
      start = (int64_t)meta_uint(state_file, "step", state_path, (uint64_t)std::numeric_limits<int64_t>::max());
      MG_CHECK((int64_t)meta_uint(model_file, "step", model_path, (uint64_t)std::numeric_limits<int64_t>::max()) == start,
               "[resume] {} and {} in {} are from different steps; the checkpoint is inconsistent", kModelFile,
               kStateFile, ckpt->dir);
      compare_resumed_options(checkpoint_options(*ckpt), opts, dir, changed);
      model.load_state_dict(model_file.tensors, model_path);
    } else {
      const std::string run_file = dir + "/" + kRunFile;
      MG_CHECK(fs::exists(run_file), "[resume] {} holds no run to resume (no {} and no checkpoint)", dir, kRunFile);
      compare_resumed_options(TrainOptions::from_json(read_text(run_file), run_file), opts, dir, changed);
      if (opts.progress)
        fmt::print("note: {} has no checkpoint yet (the run stopped before its first); starting it from step 0\n", dir);
    }
    MG_CHECK(start <= opts.steps, "[resume] the run in {} already reached step {}, past --steps {}", dir, start,
             opts.steps);
  }
  model.to(opts.device);
  std::vector<ParamGroup> groups(2);
  groups[0].weight_decay = opts.weight_decay;
  for (auto& p : model.named_parameters()) groups[p.decay ? 0 : 1].params.push_back({p.name, p.tensor});
  AdamW opt(groups, opts.lr);
  Generator data_gen(opts.seed + 1);
  if (ckpt) {
    const std::string state_path = ckpt->dir + "/" + kStateFile;
    const uint64_t kMaxI = (uint64_t)std::numeric_limits<int64_t>::max(), kMaxU = std::numeric_limits<uint64_t>::max();
    const int64_t adamw_steps = (int64_t)meta_uint(state_file, "adamw_steps", state_path, kMaxI);
    const uint64_t data_seed = meta_uint(state_file, "data_seed", state_path, kMaxU);
    const uint64_t data_offset = meta_uint(state_file, "data_offset", state_path, kMaxU);
    opt.load_state(state_file.tensors, adamw_steps);
    data_gen.set_state(data_seed, data_offset);
    publish_checkpoint(dir, *ckpt);  // the root files may still be the previous checkpoint's after a crash
  }

  // The run's record: what it is, what it trains on, what it was asked. config.json at the root is what
  // from_pretrained(dir) reads (the checkpoints carry their own copy).
  write_file_atomic(dir + "/" + kRunFile, nlohmann::ordered_json::parse(opts.to_json()).dump(2) + "\n");
  write_file_atomic(dir + "/" + kConfigFile, model.config().to_json());
  crash_point("run-started");

  // Metrics: keep what the checkpoint had seen, drop lines of steps it had not reached (and a line that a
  // crash or a full disk cut short); the file is replaced atomically.
  const std::string metrics_path = dir + "/" + kMetricsFile;
  std::vector<nlohmann::json> history;
  if (resume) {
    int64_t dropped = 0;
    history = read_jsonl(metrics_path, &dropped);
    if (dropped && opts.progress)
      fmt::print("note: {} line{} of {} could not be read (cut short by a crash?) and {} dropped\n", dropped,
                 dropped == 1 ? "" : "s", metrics_path, dropped == 1 ? "is" : "are");
  }
  std::erase_if(history, [&](const nlohmann::json& j) { return !j.is_object() || j.value("step", int64_t(0)) > start; });
  if (resume && start == opts.steps) {  // training is done; only the final test evaluation may be missing
    const bool tested = std::any_of(history.begin(), history.end(), [&](const nlohmann::json& j) {
      return j.value("step", int64_t(-1)) == start && j.contains("test_loss");
    });
    MG_CHECK(!tested, "[resume] the run in {} already finished its {} steps (raise --steps to train further)", dir,
             start);
  }
  if (resume) {
    nlohmann::ordered_json rec;
    rec["step"] = start, rec["event"] = "resume", rec["changed"] = changed;
    history.push_back(nlohmann::json::parse(rec.dump()));
  }
  write_file_atomic(metrics_path, [&](std::ostream& out) {
    for (auto& j : history) out << j.dump() << '\n';
  });
  MetricsLog metrics(metrics_path, /*append=*/true);
  auto write_plot = [&] {
    CurveSeries tr{"train", {}, "#1f77b4", false}, va{"validation", {}, "#d62728", true};
    for (auto& j : history) {
      if (j.contains("train_bpc") && j["train_bpc"].is_number())
        tr.points.push_back({j["step"].get<double>(), j["train_bpc"].get<double>()});
      if (j.contains("val_bpc") && j["val_bpc"].is_number())
        va.points.push_back({j["step"].get<double>(), j["val_bpc"].get<double>()});
    }
    CurvesOptions co;
    co.title = fmt::format("mambagrad {} on {}", opts.preset, fs::path(opts.data).filename().string());
    double vmax = 0;  // clip early training (bpc ~8) so the rest of the curve stays readable
    for (auto& p : va.points) vmax = std::max(vmax, p.value);
    co.y_max = std::max(4.0, vmax + 0.25);
    co.y_min = 0.0;
    write_curves_svg(dir + "/" + kCurvesFile, {tr, va}, co);
  };

  const bool tty = opts.progress && isatty(fileno(stdout));
  if (opts.progress)
    fmt::print("mambagrad train: {} preset, {} parameters, {} layers, d_model {}; {} train / {} validation / {} test "
               "bytes; {} steps of {} x {} on {}{}; run folder {}\n",
               opts.preset, model.num_parameters(), opts.config.n_layer, opts.config.d_model, train_set.size(),
               val_set.size(), test_set.size(), opts.steps, opts.batch, opts.seq, opts.device.str(),
               resume ? fmt::format(", resuming at step {}", start) : "", dir);
  std::fflush(stdout);

  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  double tok_s = 0;
  std::optional<int64_t> last_saved;
  if (ckpt) last_saved = start;
  const int64_t first_due = opts.eval_every > 0 ? std::min(opts.steps, opts.eval_every) : opts.steps;
  auto bad_step = [&](const char* what, double v, int64_t step) {
    if (tty) fmt::print("\n");
    MG_THROW("[train] the {} is {} at step {}; stopping. {}", what, v, step,
             last_saved ? fmt::format("The last good checkpoint in {} is from step {}", dir, *last_saved)
                        : fmt::format("No checkpoint had been written yet (the first was due at step {})", first_due));
  };
  auto save = [&](int64_t step) {
    save_checkpoint(dir, model, opt, opts, step, data_gen);
    last_saved = step;
    write_plot();
  };
  auto stopped = [&](int64_t done, int signo, const char* phase) {
    if (last_saved != done) save(done);
    if (opts.progress)
      fmt::print("{}{}{} at step {}: checkpoint saved in {}; continue with: mambagrad train --resume {}\n",
                 tty ? "\n" : "", signo ? "interrupted" : "stopped", phase, done, dir, dir);
    TrainResult r;
    r.step = done, r.signal = signo;
    return r;
  };

  for (int64_t step = start; step < opts.steps; ++step) {
    const auto ts = clock::now();
    const double lr = lr_at(step, opts.warmup, opts.steps, opts.lr, opts.min_lr_ratio);
    opt.set_lr(lr);
    Batch b = train_set.sample(opts.batch, opts.seq, data_gen, opts.device);  // copied to the device
    Tensor loss = model.loss(b.inputs, b.targets);
    opt.zero_grad();
    loss.backward();
    // The norm comes back to the host (on CUDA the step's one wait for the device); the loss is read
    // after it, so reading it costs no extra wait. Neither check lets a non-finite step update the model.
    const double gnorm = clip_grad_norm(opt.groups(), opts.clip);
    const double lv = loss.item();
    if (!std::isfinite(lv)) bad_step("loss", lv, step + 1);
    if (!std::isfinite(gnorm)) bad_step("gradient norm", gnorm, step + 1);
    opt.step();
    const double dt = std::chrono::duration<double>(clock::now() - ts).count();
    const double inst = (double)(opts.batch * opts.seq) / std::max(dt, 1e-9);
    tok_s = step == start ? inst : 0.9 * tok_s + 0.1 * inst;
    const int64_t done = step + 1;
    nlohmann::ordered_json rec;
    rec["step"] = done, rec["lr"] = lr, rec["train_loss"] = lv, rec["train_bpc"] = lv / std::log(2.0);
    rec["grad_norm"] = gnorm, rec["tokens_per_s"] = inst;
    rec["elapsed_s"] = std::chrono::duration<double>(clock::now() - t0).count();
    if (opts.device.is_cuda()) {
      const cuda::MemoryStats m = cuda::memory_stats(opts.device.index);
      rec["device_mem_mb"] = (double)m.in_use / 1048576.0, rec["device_peak_mb"] = (double)m.peak / 1048576.0;
    }

    const bool eval_now = (opts.eval_every > 0 && done % opts.eval_every == 0) || done == opts.steps;
    int signo = 0;
    if (eval_now) {
      crash_point("validation");
      try {
        EvalResult v = evaluate(model, val_set, opts.batch, opts.seq, opts.eval_bytes);
        rec["val_loss"] = v.loss, rec["val_bpc"] = v.bpc();
      } catch (const Interrupted& e) {
        signo = e.signo;  // the step itself is done: log it and save it without its validation
      }
    }
    metrics.log(rec);
    history.push_back(rec);
    crash_point("metrics-logged");

    if (opts.progress) {
      const double elapsed = std::chrono::duration<double>(clock::now() - t0).count();
      const double eta = elapsed / (double)(done - start) * (double)(opts.steps - done);
      std::string line = fmt::format("step {:>{}}/{} | loss {:.4f} | bpc {:.3f} | {:.0f} tok/s | {} < {}", done,
                                     std::to_string(opts.steps).size(), opts.steps, lv, lv / std::log(2.0), tok_s,
                                     fmt_duration(elapsed), fmt_duration(eta));
      if (rec.contains("val_bpc")) line += fmt::format(" | val bpc {:.3f}", rec["val_bpc"].get<double>());
      line += device_memory(opts.device);
      if (tty)
        fmt::print("\r\033[K{}{}", line, eval_now ? "\n" : "");
      else if (eval_now || done % 10 == 0 || done == start + 1)
        fmt::print("{}\n", line);
      std::fflush(stdout);
    }
    if (eval_now && !signo) save(done);
    if (!signo) signo = interrupt_signal();
    if (signo) return stopped(done, signo, eval_now && !rec.contains("val_bpc") ? " during validation" : "");
    if (opts.stop_at > 0 && done >= opts.stop_at && done < opts.steps) return stopped(done, 0, "");
  }

  TrainResult result;
  result.step = opts.steps;
  crash_point("test");
  try {
    result.test = evaluate(model, test_set, opts.batch, opts.seq, opts.test_bytes);
  } catch (const Interrupted& e) {
    if (opts.progress)
      fmt::print("interrupted during the test evaluation; training is complete and its checkpoint (step {}) is saved "
                 "in {}; evaluate it with: mambagrad eval --run {} --split test\n",
                 opts.steps, dir, dir);
    result.signal = e.signo;
    return result;
  }
  result.finished = true;
  nlohmann::ordered_json rec;
  rec["step"] = opts.steps, rec["test_loss"] = result.test.loss, rec["test_bpc"] = result.test.bpc();
  metrics.log(rec);
  if (opts.progress) {
    fmt::print("test: loss {:.4f} nats, bpc {:.4f}, perplexity {:.3f} over {} bytes\n", result.test.loss,
               result.test.bpc(), result.test.perplexity(), result.test.targets);
    if (opts.device.is_cuda()) {
      const cuda::MemoryStats m = cuda::memory_stats(opts.device.index);
      fmt::print("{} memory: peak {:.1f} MB, in use {:.1f} MB, cached {:.1f} MB\n", opts.device.str(),
                 (double)m.peak / 1048576.0, (double)m.in_use / 1048576.0, (double)m.cached / 1048576.0);
    }
  }
  return result;
}

std::string generate(const MambaLM& model, const std::string& prompt, const SampleOptions& o,
                     const std::function<void(char)>& emit) {
  o.validate();
  NoGradGuard ng;
  auto state = model.initial_state(1);
  Generator gen(o.seed);
  const int64_t vocab = model.config().vocab_size;
  // An empty prompt starts from a newline, as if at the start of a line.
  std::string context = prompt.empty() ? std::string("\n") : prompt;
  Tensor logits;
  const Device device = model.device();
  for (unsigned char c : context) logits = model.step(from_vector<int64_t>({(int64_t)c}, {1}, device), state);
  std::string out;
  for (int64_t i = 0; i < o.bytes; ++i) {
    std::vector<float> l = logits.to_vector<float>();
    l.resize(vocab);  // padded rows are never sampled
    int64_t pick = 0;
    if (o.temperature == 0) {
      pick = std::max_element(l.begin(), l.end()) - l.begin();
    } else {
      std::vector<int64_t> idx(vocab);
      for (int64_t k = 0; k < vocab; ++k) idx[k] = k;
      int64_t keep = o.top_k > 0 ? std::min(o.top_k, vocab) : vocab;
      std::partial_sort(idx.begin(), idx.begin() + keep, idx.end(), [&](int64_t a, int64_t b) { return l[a] > l[b]; });
      std::vector<double> p(keep);
      double mx = l[idx[0]], total = 0;
      for (int64_t k = 0; k < keep; ++k) total += p[k] = std::exp((l[idx[k]] - mx) / o.temperature);
      double r = gen.next_uniform() * total;
      pick = idx[keep - 1];
      for (int64_t k = 0; k < keep; ++k) {
        if (r < p[k]) {
          pick = idx[k];
          break;
        }
        r -= p[k];
      }
    }
    char c = (char)pick;
    out += c;
    if (emit) emit(c);
    logits = model.step(from_vector<int64_t>({pick}, {1}, device), state);
  }
  return out;
}

}  // namespace mg
