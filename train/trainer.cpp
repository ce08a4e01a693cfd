#include "train/trainer.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "autograd/grad_mode.h"
#include "cuda/runtime.h"
#include "data/bytes.h"
#include "data/dataset.h"
#include "train/atomic_file.h"
#include "train/metrics.h"
#include "train/optim.h"
#include "train/safetensors.h"

namespace mg {

namespace fs = std::filesystem;

// ---- options ----

std::string TrainOptions::to_json() const {
  nlohmann::ordered_json j;
  j["data"] = data, j["out"] = out, j["preset"] = preset;
  j["config"] = nlohmann::json::parse(config.to_json());
  j["steps"] = steps, j["batch"] = batch, j["seq"] = seq, j["lr"] = lr, j["min_lr_ratio"] = min_lr_ratio;
  j["warmup"] = warmup, j["weight_decay"] = weight_decay, j["clip"] = clip, j["eval_every"] = eval_every;
  j["eval_bytes"] = eval_bytes, j["test_bytes"] = test_bytes, j["seed"] = seed;
  return j.dump();
}

TrainOptions TrainOptions::from_json(const std::string& text, const std::string& source) {
  TrainOptions o;
  try {
    auto j = nlohmann::json::parse(text);
    o.data = j.at("data"), o.out = j.at("out"), o.preset = j.at("preset");
    o.config = MambaConfig::from_json(j.at("config").dump(), source);
    o.steps = j.at("steps"), o.batch = j.at("batch"), o.seq = j.at("seq"), o.lr = j.at("lr");
    o.min_lr_ratio = j.at("min_lr_ratio"), o.warmup = j.at("warmup"), o.weight_decay = j.at("weight_decay");
    o.clip = j.at("clip"), o.eval_every = j.at("eval_every"), o.eval_bytes = j.at("eval_bytes");
    o.test_bytes = j.at("test_bytes"), o.seed = j.at("seed");
  } catch (const nlohmann::json::exception& e) {
    MG_THROW("[resume] the training options in {} are unreadable: {}", source, e.what());
  }
  return o;
}

double EvalResult::bpc() const { return loss / std::log(2.0); }
double EvalResult::perplexity() const { return std::exp(loss); }

// ---- checkpoints ----

namespace {

const char* kModelFile = "model.safetensors";
const char* kConfigFile = "config.json";
const char* kStateFile = "trainer_state.safetensors";

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  MG_CHECK(f.good(), "[load] cannot open {}", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Every file is written to a temporary name and renamed (train/atomic_file.h): a crash leaves the
// previous checkpoint whole. The step is stored in both safetensors files so a mismatched pair (a
// crash between the two renames) is detected on resume.
void save_checkpoint(const std::string& dir, const MambaLM& model, const AdamW& opt, const TrainOptions& opts,
                     int64_t step, const Generator& data_gen) {
  fs::create_directories(dir);
  write_file_atomic(dir + "/" + kConfigFile, model.config().to_json());
  save_safetensors(dir + "/" + kModelFile, model.state_dict(), {{"format", "pt"}, {"step", std::to_string(step)}});
  save_safetensors(dir + "/" + kStateFile, opt.state_tensors(),
                   {{"format", "mambagrad-trainer"},
                    {"step", std::to_string(step)},
                    {"adamw_steps", std::to_string(opt.step_count())},
                    {"data_seed", std::to_string(data_gen.seed())},
                    {"data_offset", std::to_string(data_gen.offset())},
                    {"options", opts.to_json()}});
}

std::string require_run(const std::string& dir) {
  MG_CHECK(fs::is_directory(dir), "[run] {} is not a run folder (train one with: mambagrad train --out {})", dir, dir);
  for (const char* f : {kModelFile, kConfigFile})
    MG_CHECK(fs::exists(dir + "/" + f), "[run] {} has no {} (is it a run folder written by mambagrad train?)", dir, f);
  return dir;
}

volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void on_sigint(int) { g_interrupted = 1; }

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

}  // namespace

void require_device(Device device, const char* op) {
  if (device.is_cpu()) return;
  if (!cuda::built_with_cuda()) cuda::unsupported(op);  // "[op] this build has no CUDA support ..."
  const int n = cuda::device_count();
  MG_CHECK(device.index < n, "[{}] {} is not present: this machine has {} CUDA device{}{}", op, device.str(), n,
           n == 1 ? "" : "s", n == 0 ? " (use --device cpu)" : "");
}

TrainOptions load_run_options(const std::string& run_dir) {
  require_run(run_dir);
  std::string path = run_dir + "/" + kStateFile;
  MG_CHECK(fs::exists(path), "[resume] {} has no {}", run_dir, kStateFile);
  auto f = read_safetensors(path);
  MG_CHECK(f.metadata.count("options"), "[resume] {} has no training options in its metadata", path);
  return TrainOptions::from_json(f.metadata.at("options"), path);
}

std::unique_ptr<MambaLM> load_model(const std::string& run_dir, Device device) {
  require_device(device, "load_model");
  require_run(run_dir);
  MambaConfig cfg = MambaConfig::from_json(read_text(run_dir + "/" + kConfigFile), run_dir + "/" + kConfigFile);
  auto model = std::make_unique<MambaLM>(cfg);
  model->load_state_dict(load_safetensors(run_dir + "/" + kModelFile), run_dir + "/" + kModelFile);
  model->to(device);
  return model;
}

EvalResult evaluate(const MambaLM& model, const ByteDataset& data, int64_t batch, int64_t seq, int64_t max_bytes) {
  NoGradGuard ng;
  EvalResult r;
  double total = 0;
  const int64_t n = data.num_eval_batches(batch, seq, max_bytes);
  const Device device = model.device();
  for (int64_t i = 0; i < n; ++i) {
    Batch b = data.eval_batch(i, batch, seq, max_bytes, device);
    const int64_t count = b.targets.numel();
    total += model.loss(b.inputs, b.targets).item() * (double)count;
    r.targets += count;
  }
  r.loss = r.targets ? total / (double)r.targets : std::nan("");
  return r;
}

EvalResult train(TrainOptions opts, bool resume) {
  MG_CHECK(opts.steps >= 1 && opts.batch >= 1 && opts.seq >= 1,
           "[train] steps, batch and seq must be positive (got {}, {}, {})", opts.steps, opts.batch, opts.seq);
  MG_CHECK(opts.lr > 0 && std::isfinite(opts.lr), "[train] lr must be positive, got {}", opts.lr);
  opts.config.validate();
  require_device(opts.device, "train");  // before reading data or writing anything
  if (opts.warmup < 0) opts.warmup = std::min<int64_t>(100, opts.steps / 10);
  const std::string dir = opts.out;

  // Data first: a bad file fails before anything is written.
  ByteSplits splits = split_bytes(read_byte_file(opts.data));
  ByteDataset train_set(std::move(splits.train), "train"), val_set(std::move(splits.val), "validation"),
      test_set(std::move(splits.test), "test");
  {  // each split must hold one window: fail now, not after an hour of training
    Generator probe(0);
    train_set.sample(1, opts.seq, probe);
    val_set.num_eval_batches(opts.batch, opts.seq, opts.eval_bytes);
    test_set.num_eval_batches(opts.batch, opts.seq, opts.test_bytes);
  }

  // The model is initialised (and a checkpoint loaded) on the CPU, then moved; the optimizer is made
  // after the move so that its state lives on the device too.
  MambaLM model(opts.config, opts.seed);
  SafetensorsFile state_file;
  if (resume) {
    state_file = read_safetensors(dir + "/" + kStateFile);
    auto model_file = read_safetensors(dir + "/" + kModelFile);
    MG_CHECK(state_file.metadata.count("step") && model_file.metadata.count("step") &&
                 state_file.metadata.at("step") == model_file.metadata.at("step"),
             "[resume] {} and {} in {} are from different steps; the checkpoint is inconsistent", kModelFile,
             kStateFile, dir);
    model.load_state_dict(model_file.tensors, dir + "/" + kModelFile);
  }
  model.to(opts.device);
  std::vector<ParamGroup> groups(2);
  groups[0].weight_decay = opts.weight_decay;
  for (auto& p : model.named_parameters()) groups[p.decay ? 0 : 1].params.push_back({p.name, p.tensor});
  AdamW opt(groups, opts.lr);
  Generator data_gen(opts.seed + 1);
  int64_t start = 0;

  if (resume) {
    const auto& st = state_file;
    start = std::stoll(st.metadata.at("step"));
    opt.load_state(st.tensors, std::stoll(st.metadata.at("adamw_steps")));
    data_gen.set_state(std::stoull(st.metadata.at("data_seed")), std::stoull(st.metadata.at("data_offset")));
    MG_CHECK(start < opts.steps, "[resume] the run in {} already reached step {} of {} (raise --steps)", dir, start,
             opts.steps);
  } else {
    fs::create_directories(dir);
  }

  // Metrics: keep what the checkpoint had seen, drop lines of steps it had not reached.
  const std::string metrics_path = dir + "/metrics.jsonl";
  std::vector<nlohmann::json> history = resume ? read_jsonl(metrics_path) : std::vector<nlohmann::json>{};
  std::erase_if(history, [&](const nlohmann::json& j) { return j.value("step", int64_t(0)) > start; });
  {
    MetricsLog rewrite(metrics_path, /*append=*/false);
    for (auto& j : history) rewrite.log(j);
  }
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
    write_curves_svg(dir + "/curves.svg", {tr, va}, co);
  };

  const bool tty = opts.progress && isatty(fileno(stdout));
  if (opts.progress)
    fmt::print("mambagrad train: {} preset, {} parameters, {} layers, d_model {}; {} train / {} validation / {} test "
               "bytes; {} steps of {} x {} on {}{}\n",
               opts.preset, model.num_parameters(), opts.config.n_layer, opts.config.d_model, train_set.size(),
               val_set.size(), test_set.size(), opts.steps, opts.batch, opts.seq, opts.device.str(),
               resume ? fmt::format(", resuming at step {}", start) : "");
  std::fflush(stdout);

  g_interrupted = 0;
  auto old_handler = std::signal(SIGINT, on_sigint);
  struct Restore {
    decltype(old_handler) h;
    ~Restore() { std::signal(SIGINT, h); }
  } restore{old_handler};

  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  double tok_s = 0;
  int64_t last_saved = start;
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
    if (!std::isfinite(lv)) {
      if (tty) fmt::print("\n");
      MG_THROW("[train] the loss is {} at step {}; stopping. The last good checkpoint in {} is from step {}", lv,
               step + 1, dir, last_saved);
    }
    if (!std::isfinite(gnorm)) {
      if (tty) fmt::print("\n");
      MG_THROW("[train] the gradient norm is {} at step {}; stopping. The last good checkpoint in {} is from step {}",
               gnorm, step + 1, dir, last_saved);
    }
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
    if (eval_now) {
      EvalResult v = evaluate(model, val_set, opts.batch, opts.seq, opts.eval_bytes);
      rec["val_loss"] = v.loss, rec["val_bpc"] = v.bpc();
    }
    metrics.log(rec);
    history.push_back(rec);

    if (opts.progress) {
      const double elapsed = std::chrono::duration<double>(clock::now() - t0).count();
      const double eta = elapsed / (double)(done - start) * (double)(opts.steps - done);
      std::string line = fmt::format("step {:>{}}/{} | loss {:.4f} | bpc {:.3f} | {:.0f} tok/s | {} < {}", done,
                                     std::to_string(opts.steps).size(), opts.steps, lv, lv / std::log(2.0), tok_s,
                                     fmt_duration(elapsed), fmt_duration(eta));
      if (eval_now) line += fmt::format(" | val bpc {:.3f}", rec["val_bpc"].get<double>());
      line += device_memory(opts.device);
      if (tty)
        fmt::print("\r\033[K{}{}", line, eval_now ? "\n" : "");
      else if (eval_now || done % 10 == 0 || done == start + 1)
        fmt::print("{}\n", line);
      std::fflush(stdout);
    }
    if (eval_now) {
      save_checkpoint(dir, model, opt, opts, done, data_gen);
      last_saved = done;
      write_plot();
    }
    if (g_interrupted || (opts.stop_at > 0 && done >= opts.stop_at && done < opts.steps)) {
      if (last_saved != done) save_checkpoint(dir, model, opt, opts, done, data_gen), write_plot();
      if (opts.progress)
        fmt::print("{}{} at step {}: checkpoint saved in {}; continue with: mambagrad train --resume {}\n",
                   tty ? "\n" : "", g_interrupted ? "interrupted" : "stopped", done, dir, dir);
      return EvalResult{};
    }
  }

  EvalResult test = evaluate(model, test_set, opts.batch, opts.seq, opts.test_bytes);
  nlohmann::ordered_json rec;
  rec["step"] = opts.steps, rec["test_loss"] = test.loss, rec["test_bpc"] = test.bpc();
  metrics.log(rec);
  if (opts.progress) {
    fmt::print("test: loss {:.4f} nats, bpc {:.4f}, perplexity {:.3f} over {} bytes\n", test.loss, test.bpc(),
               test.perplexity(), test.targets);
    if (opts.device.is_cuda()) {
      const cuda::MemoryStats m = cuda::memory_stats(opts.device.index);
      fmt::print("{} memory: peak {:.1f} MB, in use {:.1f} MB, cached {:.1f} MB\n", opts.device.str(),
                 (double)m.peak / 1048576.0, (double)m.in_use / 1048576.0, (double)m.cached / 1048576.0);
    }
  }
  return test;
}

std::string generate(const MambaLM& model, const std::string& prompt, const SampleOptions& o,
                     const std::function<void(char)>& emit) {
  MG_CHECK(o.temperature >= 0, "[generate] temperature must be >= 0, got {}", o.temperature);
  MG_CHECK(o.top_k >= 0, "[generate] top-k must be >= 0, got {}", o.top_k);
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
