#include "train/options.h"

#include "core/format.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>

#include "core/error.h"
#include "core/memory_limit.h"
#include "train/run_folder.h"

namespace mg {

void check_output_file_option(const std::string& path, const char* option) {
  namespace fs = std::filesystem;
  MG_CHECK(!path.empty(), "[{}] needs a file name, e.g. {} trace.json", option, option);
  std::error_code ec;
  MG_CHECK(!fs::is_directory(path, ec), "[{}] {} is a folder; give a file name such as {}/trace.json", option, path,
           path);
  const fs::path dir = fs::path(path).parent_path();
  MG_CHECK(dir.empty() || fs::is_directory(dir, ec),
           "[{}] the folder of {} does not exist ({}); create it first or give a path in an existing folder", option,
           path, dir.string());
}

namespace {

// --eval-bytes and --test-bytes cap a split: the cap must hold one window of --seq + 1 bytes.
void check_window_bytes(const char* option, int64_t bytes, int64_t seq) {
  MG_CHECK(bytes == -1 || bytes > seq,
           "[train] {} {} is shorter than one window of --seq {} + 1 bytes: use at least {}, or -1 (the whole split)",
           option, bytes, seq, (uint64_t)seq + 1);
}

// A lower bound of what training needs, against the machine's memory: 16 bytes per parameter (the
// parameters, their gradients and AdamW's two moments, float32) and, per token of a step, one float32
// per layer and d_inner channel (the scan's saved input) plus the logits.
void check_training_memory(const TrainOptions& o) {
  const MambaConfig& c = o.config;
  const double params = c.num_parameters();
  const double tokens = (double)o.batch * (double)o.seq;
  const double bytes = 16 * params + 4 * tokens * ((double)c.n_layer * (double)c.d_inner() + (double)c.padded_vocab());
  check_fits_in_memory(
      bytes, "train",
      mg::format("a model of {:.3g} parameters (--d-model {}, --n-layer {}, --d-state {}, --expand {}) "
                 "trained on --batch {} x --seq {} tokens per step (a lower bound: parameters, "
                 "gradients, AdamW moments, activations)",
                 params, c.d_model, c.n_layer, c.d_state, c.expand, o.batch, o.seq),
      "; use a smaller model, --batch or --seq");
}

}  // namespace

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
  check_window_bytes("--eval-bytes", eval_bytes, seq);
  check_window_bytes("--test-bytes", test_bytes, seq);
  MG_CHECK(stop_at == -1 || (stop_at >= 1 && stop_at <= steps),
           "[train] --stop-at must be between 1 and --steps ({}), got {}", steps, stop_at);
  MG_CHECK(profile_steps >= 1, "[train] --profile-steps must be at least 1, got {}", profile_steps);
  if (!profile.empty()) check_output_file_option(profile, "--profile");
  const auto names = MambaConfig::preset_names();
  MG_CHECK(std::find(names.begin(), names.end(), preset) != names.end(), "[train] unknown --preset '{}' (valid: {})",
           preset, mg::join(names, ", "));
  config.validate();
  check_training_memory(*this);
}

std::string TrainOptions::to_json() const {
  nlohmann::ordered_json j;
  j["data"] = data, j["data_bytes"] = data_bytes, j["data_crc32"] = data_crc32;
  j["out"] = out, j["preset"] = preset;
  j["config"] = nlohmann::json::parse(config.to_json());
  j["steps"] = steps, j["batch"] = batch, j["seq"] = seq, j["lr"] = lr, j["min_lr_ratio"] = min_lr_ratio;
  j["warmup"] = warmup, j["weight_decay"] = weight_decay, j["clip"] = clip, j["eval_every"] = eval_every;
  j["eval_bytes"] = eval_bytes, j["test_bytes"] = test_bytes, j["seed"] = seed;
  j["carry_state"] = carry_state;
  j["precision"] = precision_name(precision);
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
    if constexpr (std::is_same_v<T, std::string>)
      ok = v.is_string();
    else if constexpr (std::is_same_v<T, bool>)
      ok = v.is_boolean();
    else if constexpr (std::is_floating_point_v<T>)
      ok = v.is_number();
    else if constexpr (std::is_unsigned_v<T>)
      ok = v.is_number_unsigned() && v.template get<uint64_t>() <= std::numeric_limits<T>::max();
    else
      ok = v.is_number_integer();
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
  field("carry_state", o.carry_state, true);  // absent in runs from before carried state: false
  std::string precision = "fp32";             // absent in runs from before mixed precision
  field("precision", precision, true);
  const auto p = parse_precision(precision);
  MG_CHECK(p.has_value(), "[resume] the field 'precision' of the training options in {} is '{}', not fp32 or bf16",
           source, precision);
  o.precision = *p;
  try {
    o.validate();
  } catch (const Error& e) {
    MG_THROW("[resume] the training options in {} are out of range: {}", source, e.what());
  }
  return o;
}

std::vector<std::pair<std::string, std::string>> rank_identity(const TrainOptions& o, bool resume) {
  const MambaConfig& c = o.config;
  auto s = [](const auto& v) { return mg::format("{}", v); };
  return {{"--resume", resume ? "(resuming)" : "(a new run)"},
          {"--out", std::filesystem::absolute(o.out).lexically_normal().string()},
          {"--preset", o.preset},
          {"--d-model", s(c.d_model)},
          {"--n-layer", s(c.n_layer)},
          {"--d-state", s(c.d_state)},
          {"--d-conv", s(c.d_conv)},
          {"--expand", s(c.expand)},
          {"--dt-rank", s(c.rank())},
          {"vocab_size", s(c.vocab_size)},
          {"norm_eps", s(c.norm_eps)},
          {"--steps", s(o.steps)},
          {"--batch", s(o.batch)},
          {"--seq", s(o.seq)},
          {"--lr", s(o.lr)},
          {"min_lr_ratio", s(o.min_lr_ratio)},
          {"--warmup", s(o.warmup)},
          {"--weight-decay", s(o.weight_decay)},
          {"--clip", s(o.clip)},
          {"--eval-every", s(o.eval_every)},
          {"--eval-bytes", s(o.eval_bytes)},
          {"--test-bytes", s(o.test_bytes)},
          {"--seed", s(o.seed)},
          {"--carry-state", s(o.carry_state)},
          {"--precision", std::string(precision_name(o.precision))},
          {"--stop-at", s(o.stop_at)},
          {"--device", o.device.is_cpu() ? "cpu" : "cuda"},
          {"--data", mg::format("{} bytes with CRC-32 {:08x}", o.data_bytes, o.data_crc32)}};
}

nlohmann::ordered_json resume_changes(const TrainOptions& stored, const TrainOptions& now, const std::string& dir) {
  nlohmann::ordered_json changed = nlohmann::ordered_json::object();
  std::vector<std::string> fixed;
  auto check = [&](const char* flag, const auto& a, const auto& b) {
    if (a != b) fixed.push_back(mg::format("{} {} (the run's: {})", flag, b, a));
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
  check("--carry-state", stored.carry_state, now.carry_state);
  MG_CHECK(fixed.empty(),
           "[resume] these options are fixed by the run in {} and cannot change when it resumes: {}. Drop them to "
           "continue the run, or start a new run (another --out, or --overwrite) to use them",
           dir, join_names(fixed, fixed.size()));
  auto note = [&](const char* key, const auto& a, const auto& b) {
    if (a != b) changed[key] = {a, b};
  };
  note("steps", stored.steps, now.steps), note("eval_every", stored.eval_every, now.eval_every);
  note("eval_bytes", stored.eval_bytes, now.eval_bytes), note("test_bytes", stored.test_bytes, now.test_bytes);
  note("data", stored.data, now.data);
  note("precision", std::string(precision_name(stored.precision)), std::string(precision_name(now.precision)));
  return changed;
}

}  // namespace mg
