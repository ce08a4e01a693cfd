#include "train/trainer.h"

#include <unistd.h>

#include <charconv>
#include <csignal>
#include <exception>
#include <chrono>
#include <cmath>
#include <limits>
#include <optional>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "introspect/anomaly.h"
#include "autograd/grad_mode.h"
#include "introspect/memory_report.h"
#include "introspect/profiler.h"
#include "core/parallel.h"
#include "cuda/runtime.h"
#include "data/bytes.h"
#include "data/dataset.h"
#include "io/atomic_file.h"
#include "io/output_file.h"
#include "train/interrupt.h"
#include "train/metrics.h"
#include "train/optim.h"
#include "train/checkpoint.h"
#include "train/distributed.h"
#include "train/run_data.h"
#include "train/run_folder.h"
#include "train/train_step.h"
#include "io/safetensors.h"
#include "ops/ops.h"

namespace mg {

namespace fs = std::filesystem;

namespace {

// "| cuda mem 123.4 MB (peak 456.7 MB)": the caching allocator's counters (cuda/runtime.h).
std::string device_memory(Device d) {
  if (!d.is_cuda()) return "";
  const cuda::MemoryStats m = cuda::memory_stats(d.index);
  return mg::format(" | {} mem {:.1f} MB (peak {:.1f} MB)", d.str(), (double)m.in_use / 1048576.0,
                    (double)m.peak / 1048576.0);
}

std::string fmt_duration(double s) {
  int64_t t = (int64_t)std::max(0.0, s);
  return t >= 3600 ? mg::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60)
                   : mg::format("{:02}:{:02}", t / 60, t % 60);
}

// A new run may go into a folder that does not exist or is empty; one that holds a run only with
// --overwrite; one that holds other files is refused.
void check_new_run_folder(const std::string& dir, const RunFolderContents& c, bool overwrite) {
  MG_CHECK(!c.is_file, "[train] --out {} is a file, not a folder", dir);
  MG_CHECK(!c.is_checkpoint,
           "[train] --out {} is a checkpoint folder of a run (only its trainer writes there), not a folder for a "
           "new run: continue that run with --resume on the folder that holds it, or choose another --out",
           dir);
  if (c.holds_run() && !overwrite)
    MG_THROW(
        "[train] {} already holds a run ({}): continue it with --resume {}, replace it with --overwrite, or "
        "choose another --out",
        dir, join_names(c.run_files), shell_word(dir));
  if (!c.holds_run() && !c.other_files.empty())
    MG_THROW("[train] {} is not empty and holds no run ({}); choose an empty or new folder for --out", dir,
             join_names(c.other_files));
}

// How many threads each step of training or evaluation runs on: all of them or one, chosen by timing
// both ways (SplitChooser, core/parallel.h: probes, keeps the faster, backs off while one thread wins,
// leaves a split that stalls). On an idle machine all the threads win. With another process busy on
// one of the cores, a step split across all of them waits at every join for the thread that shares its
// core, and two threads ran slower than one (docs/perf.md, "Training beside a busy process"). A step's
// results are the same bits for any thread count (every kernel sums in an order fixed by the sizes), so
// the choice changes nothing but speed. Only for single-process CPU runs: a rank's step time also holds
// its wait for the other ranks.
class StepThreads {
 public:
  explicit StepThreads(bool enabled) : all_(num_threads()), on_(enabled && all_ > 1) {}
  ~StepThreads() {
    if (on_) set_num_threads(all_);
  }
  StepThreads(const StepThreads&) = delete;
  StepThreads& operator=(const StepThreads&) = delete;

  // Sets the thread count for the next step and returns it.
  int begin() {
    split_ = !on_ || chooser_.next();
    if (on_) set_num_threads(split_ ? all_ : 1);
    t0_ = Clock::now();
    return split_ ? all_ : 1;
  }
  // After the step: records its time and gives evaluation all the threads back.
  void end() {
    if (!on_) return;
    chooser_.record(split_, std::chrono::duration<double>(Clock::now() - t0_).count());
    set_num_threads(all_);
  }

 private:
  using Clock = std::chrono::steady_clock;
  const int all_;
  const bool on_;
  SplitChooser chooser_;
  bool split_ = true;
  Clock::time_point t0_;
};

// "NaN", "+inf" or "-inf".
const char* non_finite_name(double v) { return std::isnan(v) ? "NaN" : v > 0 ? "+inf" : "-inf"; }

// True when every parameter of `model` is finite: x * 0 is 0 for a finite x and NaN for inf or NaN, so
// the sum is 0 exactly when all are (on the model's device, with anomaly mode off: NaN is expected here).
bool weights_finite(const MambaLM& model) {
  NoGradGuard ng;
  AnomalyMode off(false);
  Tensor total;
  for (const auto& p : model.named_parameters()) {
    Tensor s = sum(p.tensor * 0.0);
    total = total.defined() ? total + s : s;
  }
  return !total.defined() || total.item() == 0.0;  // one read back from the device
}

// With --detect-anomaly, a validation loss that is not finite: its windows again with the graph recorded,
// which anomaly mode checks op by op (evaluation records none), so that the [anomaly] error names the op
// and module where the NaN or inf first appears. Returns when none does.
void name_anomaly(const MambaLM& model, const ByteDataset& val, const TrainOptions& opts) {
  const int64_t n = val.num_eval_batches(opts.batch, opts.seq, opts.eval_bytes);
  for (int64_t i = 0; i < n; ++i) {
    Batch b = val.eval_batch(i, opts.batch, opts.seq, opts.eval_bytes, model.device());
    (void)model.loss(b.inputs, b.targets);
  }
}

}  // namespace

double EvalResult::bpc() const { return loss / std::log(2.0); }
double EvalResult::perplexity() const { return std::exp(loss); }

EvalResult evaluate(const MambaLM& model, const ByteDataset& data, int64_t batch, int64_t seq, int64_t max_bytes) {
  NoGradGuard ng;
  EvalResult r;
  double total = 0;
  const int64_t n = data.num_eval_batches(batch, seq, max_bytes);
  const Device device = model.device();
  StepThreads threads(device.is_cpu());
  for (int64_t i = 0; i < n; ++i) {
    throw_if_interrupted("evaluate");
    threads.begin();
    Batch b = data.eval_batch(i, batch, seq, max_bytes, device);
    const int64_t count = b.targets.numel();
    total += model.loss(b.inputs, b.targets).item() * (double)count;
    threads.end();
    r.targets += count;
  }
  r.loss = r.targets ? total / (double)r.targets : std::nan("");
  return r;
}

EvalResult evaluate_stream(const MambaLM& model, const ByteDataset& data, int64_t batch, int64_t seq,
                           int64_t max_bytes) {
  NoGradGuard ng;
  EvalResult r;
  double total = 0;
  const int64_t n = data.num_stream_windows(batch, seq, max_bytes);
  const Device device = model.device();
  std::vector<LayerState> state, next;
  StepThreads threads(device.is_cpu());
  auto add = [&](const Batch& b) {
    throw_if_interrupted("evaluate");
    const int64_t count = b.targets.numel();
    threads.begin();
    total += model.loss(b.inputs, b.targets, state, next).item() * (double)count;
    threads.end();
    r.targets += count;
    state = std::move(next);
  };
  for (int64_t w = 0; w < n; ++w) add(data.stream_window(w, batch, seq, max_bytes, device));
  Batch tail = data.stream_tail(batch, max_bytes, device);
  if (tail.targets.defined()) {  // the leftover bytes continue the last stream
    for (auto& s : state) s.conv = narrow(s.conv, 0, batch - 1, 1), s.ssm = narrow(s.ssm, 0, batch - 1, 1);
    add(tail);
  }
  r.loss = r.targets ? total / (double)r.targets : std::nan("");
  return r;
}

namespace {

// The stop signal, agreed between the ranks so that all stop at the same point: a rank that got none
// stops as if by SIGTERM when another got one. (One process: its own signal.)
int agreed_signal(const World& world) {
  const int s = interrupt_signal();
  if (!world.distributed()) return s;
  double any = s ? 1 : 0;
  world.sum(&any, 1);
  return s ? s : any > 0 ? SIGTERM : 0;
}

// evaluate() split over the ranks of a data-parallel run: in round k rank r takes batch k N + r, and the
// sums are added up at the end. A stop signal is agreed after every round, as evaluate() polls between
// batches: every rank throws Interrupted after the same round (a rank that stopped alone would leave the
// others waiting in the sum), with SIGTERM on a rank that got no signal itself, so that Ctrl-C on mpirun
// (SIGTERM to every rank, SIGKILL a few seconds later) stops a long validation or test in time to save.
EvalResult evaluate_ranks(const MambaLM& model, const ByteDataset& data, int64_t batch, int64_t seq, int64_t max_bytes,
                          const World& world) {
  NoGradGuard ng;
  double sums[2] = {0, 0};  // loss * targets, targets
  const int64_t n = data.num_eval_batches(batch, seq, max_bytes), ranks = world.size();
  for (int64_t first = 0; first < n; first += ranks) {
    if (const int64_t i = first + world.rank(); i < n) {
      Batch b = data.eval_batch(i, batch, seq, max_bytes, model.device());
      const double count = (double)b.targets.numel();
      sums[0] += model.loss(b.inputs, b.targets).item() * count;
      sums[1] += count;
    }
    if (const int signo = agreed_signal(world)) throw Interrupted(signo, "evaluate");
  }
  world.sum(sums, 2);
  EvalResult r;
  r.targets = (int64_t)sums[1];
  r.loss = r.targets ? sums[0] / sums[1] : std::nan("");
  return r;
}

// The three splits, with every window size checked against them.
struct TrainData {
  ByteDataset train, val, test;
};

// Reads the data (a bad file fails before anything is written), checks that a resumed run sees its own
// data, and records the data's absolute path and identity in `opts`.
TrainData load_train_data(TrainOptions& opts, bool resume) {
  std::vector<uint8_t> bytes = resume ? read_run_data(opts, "", "resume") : read_byte_file(opts.data, "--data");
  if (resume) check_run_data(opts, bytes, "resume");
  opts.data = fs::absolute(opts.data).lexically_normal().string();
  opts.data_bytes = bytes.size(), opts.data_crc32 = crc32_bytes(bytes.data(), bytes.size());
  ByteSplits splits = split_bytes(std::move(bytes));
  TrainData d{ByteDataset(std::move(splits.train), "train"), ByteDataset(std::move(splits.val), "validation"),
              ByteDataset(std::move(splits.test), "test")};
  // Each split must hold one window: fail now, not after an hour of training.
  Generator probe(0);
  d.train.sample(1, opts.seq, probe);
  if (opts.carry_state) {
    MG_CHECK(d.train.stream_length(opts.batch) >= opts.seq,
             "[train] --carry-state cuts the train split ({} bytes) into --batch {} streams of {} bytes, shorter than "
             "one window of --seq {}; use a smaller --batch or --seq",
             d.train.size(), opts.batch, d.train.stream_length(opts.batch), opts.seq);
    d.val.num_stream_windows(opts.batch, opts.seq, opts.eval_bytes);
    d.test.num_stream_windows(opts.batch, opts.seq, opts.test_bytes);
  } else {
    d.val.num_eval_batches(opts.batch, opts.seq, opts.eval_bytes);
    d.test.num_eval_batches(opts.batch, opts.seq, opts.test_bytes);
  }
  return d;
}

// The divisors of n up to 1024, for messages ("1, 2, 4 or 8").
std::string divisors_text(int64_t n) {
  std::vector<std::string> d;
  for (int64_t k = 1; k <= std::min<int64_t>(n, 1024); ++k)
    if (n % k == 0) d.push_back(std::to_string(k));
  std::string s;
  for (size_t i = 0; i < d.size(); ++i) s += (i == 0 ? "" : i + 1 == d.size() ? " or " : ", ") + d[i];
  return s;
}

// What the number of processes allows: the global batch split evenly, and no carried state.
void check_ranks(const TrainOptions& opts, const World& world, bool resume) {
  if (!world.distributed()) return;
  const int n = world.size();
  if (resume)
    MG_CHECK(opts.batch % n == 0,
             "[resume] the run in {} has a global batch of {}, fixed by the run, which {} processes cannot split "
             "evenly: resume it on a number of processes that divides {} ({})",
             opts.out, opts.batch, n, opts.batch, divisors_text(opts.batch));
  const int64_t below = opts.batch / n * n, above = below + n;
  MG_CHECK(opts.batch % n == 0,
           "[train] --batch {} is the global batch, split evenly over the {} processes, and is not divisible by {}: "
           "use a multiple of {} (e.g. {})",
           opts.batch, n, n, n, below > 0 ? mg::format("{} or {}", below, above) : std::to_string(above));
  MG_CHECK(!opts.carry_state,
           "[{}] --carry-state is not supported with {} processes yet (each row is a stream whose state would "
           "have to travel with its rank's rows, in checkpoints too); {} as one process",
           resume ? "resume" : "train", n,
           resume ? mg::format("the run in {} was trained with it: resume it", opts.out) : std::string("run it"));
}

// The paths a run records (JSON: UTF-8 only) and the trace file of --profile, an output under the rule of
// io/output_file.h: never the data, never one of the run's files.
void check_train_paths(const TrainOptions& opts, bool resume) {
  const char* out_flag = resume ? "--resume" : "--out";
  check_utf8_path(opts.out, "train", out_flag);
  // The longest path the run writes below its folder (a checkpoint's temporary trainer state, with room for
  // any step and pid) must fit the system's limit, or the first checkpoint would fail after the training.
  constexpr size_t kLongestBelow =
      sizeof("/checkpoint-9223372036854775807.old.tmp.4294967295/trainer_state.safetensors.tmp.4294967295") - 1;
  constexpr size_t kLimit = PATH_MAX - 1 - kLongestBelow;
  MG_CHECK(opts.out.size() <= kLimit,
           "[train] {} is {} characters long; the run writes paths up to {} characters longer below it (its "
           "checkpoints' temporary files), past the system's limit of {} for a path: use a path of at most {} "
           "characters",
           out_flag, opts.out.size(), kLongestBelow, PATH_MAX - 1, kLimit);
  check_utf8_path(opts.data, "train", "--data");
  if (opts.profile.empty()) return;
  check_utf8_path(opts.profile, "train", "--profile");
  check_output_path(opts.profile, {"train", "--profile", {opts.data}, opts.out, "", OutputKind::Trace});
}

// What shows that the run in `dir`, which has no usable checkpoint, made progress that a start from step 0
// would lose: a root model (published only after a checkpoint), a checkpoint-* entry that is not a usable
// checkpoint (damaged, set aside, renamed, a file), metrics of a step after the first checkpoint was due
// (that checkpoint was complete before the next step began).
std::vector<std::string> progress_signs(const std::string& dir) {
  std::vector<std::string> signs;
  std::error_code ec;
  if (fs::exists(dir + "/" + kModelFile, ec)) signs.push_back(mg::format("a root {}", kModelFile));
  std::vector<std::string> odd;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("checkpoint-", 0) == 0 && !is_temporary(name))
      odd.push_back(e.is_directory(ec) ? name + "/" : name + " (not a folder)");
  }
  std::sort(odd.begin(), odd.end());
  signs.insert(signs.end(), odd.begin(), odd.end());
  const std::string run_file = dir + "/" + kRunFile;
  if (!fs::exists(run_file, ec)) return signs;
  const TrainOptions recorded = TrainOptions::from_json(read_text_file(run_file), run_file);
  const int64_t first_due = recorded.eval_every > 0 ? std::min(recorded.steps, recorded.eval_every) : recorded.steps;
  int64_t dropped = 0, last = 0;
  for (const auto& j : read_jsonl(dir + "/" + kMetricsFile, &dropped))
    if (j.is_object() && j.contains("step") && j["step"].is_number_integer())
      last = std::max(last, j["step"].get<int64_t>());
  if (last > first_due)
    signs.push_back(
        mg::format("{} with steps up to {} (the first checkpoint was due at step {})", kMetricsFile, last, first_due));
  return signs;
}

// Resuming a run without a usable checkpoint starts it over from step 0; that is refused when anything
// shows that the run got further (the checkpoint was lost, damaged or renamed).
void refuse_lost_progress(const std::string& dir, const std::vector<std::string>& skipped) {
  std::vector<std::string> found = skipped;
  for (auto& s : progress_signs(dir)) found.push_back(s);
  if (found.empty()) return;
  MG_THROW(
      "[resume] {} has no usable checkpoint, but the run got further than its start: {}. Resuming would start "
      "it over from step 0, so it is refused. Either restore the checkpoint folder (checkpoint-<step>/ with its "
      "{}) and resume again, or start the run over with: mambagrad train --out {} --overwrite ...",
      dir, join_names(found, found.size()), kManifestFile, shell_word(dir));
}

// What a resumed run starts from: the newest usable checkpoint (loaded into `model`), or step 0 when
// the run stopped before its first; and the options it changed.
struct Restored {
  std::optional<CheckpointRef> ckpt;
  LoadedCheckpoint loaded;
  nlohmann::ordered_json changed = nlohmann::ordered_json::object();
  int64_t start = 0;
};

// `writer`: the process that owns the folder (rank 0 of a data-parallel run, which restores first); the
// other ranks only read what it left.
Restored restore_run(const std::string& dir, const TrainOptions& opts, MambaLM& model, bool writer) {
  Restored r;
  std::vector<std::string> skipped;
  r.ckpt = find_checkpoint(dir, &skipped);
  // A complete checkpoint folder never fails to verify after a crash (its rename is the commit point);
  // one that does was damaged afterwards. An older good one is used (the newer is set aside, not
  // deleted); with none, resuming would silently start again, so it is an error.
  if (!r.ckpt) refuse_lost_progress(dir, skipped);
  if (writer) {
    for (const auto& s : skipped) mg::print(stderr, "note: {}\n", s);
    for (const auto& [from, to] : set_aside_unusable_checkpoints(dir, r.ckpt && !r.ckpt->legacy ? r.ckpt->step : -1))
      mg::print(stderr, "note: {} is set aside as {}\n", from, to);
  }
  if (r.ckpt) {
    r.loaded = read_checkpoint(*r.ckpt);
    r.start = r.loaded.step;
    r.changed = resume_changes(r.loaded.options, opts, dir);
    model.load_state_dict(r.loaded.model, r.ckpt->dir + "/" + kModelFile);
  } else {
    const std::string run_file = dir + "/" + kRunFile;
    MG_CHECK(fs::exists(run_file), "[resume] {} holds no run to resume (no {} and no checkpoint)", dir, kRunFile);
    r.changed = resume_changes(TrainOptions::from_json(read_text_file(run_file), run_file), opts, dir);
    if (opts.progress)
      mg::print(
          "note: {} has no checkpoint yet (the run stopped before its first) and shows no progress past it; "
          "starting it from step 0\n",
          dir);
  }
  MG_CHECK(r.start <= opts.steps, "[resume] the run in {} already reached step {}, past --steps {}", dir, r.start,
           opts.steps);
  return r;
}

// metrics.jsonl and curves.svg. On resume it keeps what the checkpoint had seen, drops lines of steps it
// had not reached (and a line that a crash or a full disk cut short), records the resume and the
// changed options, and replaces the file atomically; then each record is appended and flushed.
class RunHistory {
 public:
  RunHistory(const TrainOptions& opts, bool resume, int64_t start, const nlohmann::ordered_json& changed)
      : opts_(opts), path_(opts.out + "/" + kMetricsFile) {
    if (resume) {
      int64_t dropped = 0;
      history_ = read_jsonl(path_, &dropped);
      if (dropped)  // on stderr even with --quiet: lines of the user's file are dropped
        std::fputs(mg::format("note: {} line{} of {} could not be read (cut short by a crash?) and {} dropped\n",
                              dropped, dropped == 1 ? "" : "s", path_, dropped == 1 ? "is" : "are")
                       .c_str(),
                   stderr);
    }
    const size_t before = history_.size();
    int64_t first_past = -1;
    std::erase_if(history_, [&](const nlohmann::json& j) {
      const bool past = !j.is_object() || j.value("step", int64_t(0)) > start;
      if (past && j.is_object() && first_past < 0) first_past = j.value("step", int64_t(0));
      return past;
    });
    const size_t past = before - history_.size();
    if (resume && past > 0 && opts.progress)  // the steps after the checkpoint are trained again
      std::fputs(mg::format("note: {} line{} of {} from step {} on {} dropped: the run resumes from its checkpoint "
                            "of step {} and trains those steps again\n",
                            past, past == 1 ? "" : "s", path_, first_past, past == 1 ? "is" : "are", start)
                     .c_str(),
                 stderr);
    if (resume && start == opts.steps) {  // training is done; only the final test evaluation may be missing
      const bool tested = std::any_of(history_.begin(), history_.end(), [&](const nlohmann::json& j) {
        return j.value("step", int64_t(-1)) == start && j.contains("test_loss");
      });
      MG_CHECK(!tested, "[resume] the run in {} already finished its {} steps (raise --steps to train further)",
               opts.out, start);
    }
    if (resume) {
      nlohmann::ordered_json rec;
      rec["step"] = start, rec["event"] = "resume", rec["changed"] = changed;
      history_.push_back(nlohmann::json::parse(rec.dump()));
    }
    write_file_atomic(path_, [&](std::ostream& out) {
      for (auto& j : history_) out << j.dump() << '\n';
    });
    log_ = std::make_unique<MetricsLog>(path_, /*append=*/true);
  }

  void log(const nlohmann::ordered_json& rec) {
    log_->log(rec);
    history_.push_back(nlohmann::json::parse(rec.dump()));
  }

  // curves.svg: train bpc (every step) and validation bpc (dots) against step.
  void plot() const {
    CurveSeries tr{"train", {}, "#1f77b4", false}, va{"validation", {}, "#d62728", true};
    for (auto& j : history_) {
      if (j.contains("train_bpc") && j["train_bpc"].is_number())
        tr.points.push_back({j["step"].get<double>(), j["train_bpc"].get<double>()});
      if (j.contains("val_bpc") && j["val_bpc"].is_number())
        va.points.push_back({j["step"].get<double>(), j["val_bpc"].get<double>()});
    }
    CurvesOptions co;
    co.title = mg::format("mambagrad {} on {}", opts_.preset, fs::path(opts_.data).filename().string());
    double vmax = 0;  // clip early training (bpc ~8) so the rest of the curve stays readable
    for (auto& p : va.points) vmax = std::max(vmax, p.value);
    co.y_max = std::max(4.0, vmax + 0.25);
    co.y_min = 0.0;
    write_curves_svg(opts_.out + "/" + kCurvesFile, {tr, va}, co);
  }

 private:
  const TrainOptions& opts_;
  std::string path_;
  std::vector<nlohmann::json> history_;
  std::unique_ptr<MetricsLog> log_;
};

// "N bytes", or the whole split for -1 (--eval-bytes, --test-bytes).
std::string bytes_text(int64_t n) { return n > 0 ? mg::format("{} bytes", n) : std::string("the whole split"); }

// The progress output: one line per step, updated in place on a terminal (plain lines every 10 steps
// and at evaluations otherwise), with the ETA and, on CUDA, the allocator's counters.
class Progress {
 public:
  Progress(const TrainOptions& opts, int64_t start)
      : opts_(opts), start_(start), tty_(opts.progress && isatty(fileno(stdout))), t0_(Clock::now()) {}

  void header(const MambaLM& model, const TrainData& d, bool resume) const {
    if (opts_.progress)
      mg::print(
          "mambagrad train: {} preset, {} parameters, {} layers, d_model {}; {} train / {} validation / {} "
          "test bytes; {} steps of {} x {}{} on {}{}{}; run folder {}\n",
          opts_.preset, model.num_parameters(), opts_.config.n_layer, opts_.config.d_model, d.train.size(),
          d.val.size(), d.test.size(), opts_.steps, opts_.batch, opts_.seq,
          opts_.carry_state ? " (contiguous streams, state carried)" : "", opts_.device.str(),
          opts_.precision == Precision::bf16 ? " in bf16 mixed precision" : "",
          resume ? mg::format(", resuming at step {}", start_) : "", opts_.out);
    std::fflush(stdout);
  }

  double elapsed() const { return std::chrono::duration<double>(Clock::now() - t0_).count(); }

  void step(const nlohmann::ordered_json& rec, double tok_s, bool eval_now) const {
    if (!opts_.progress) return;
    const int64_t done = rec["step"].get<int64_t>();
    const double lv = rec["train_loss"].get<double>();
    const double eta = elapsed() / (double)(done - start_) * (double)(opts_.steps - done);
    std::string line = mg::format("step {:>{}}/{} | loss {:.4f} | bpc {:.3f} | {:.0f} tok/s | {} < {}", done,
                                  std::to_string(opts_.steps).size(), opts_.steps, lv, lv / std::log(2.0), tok_s,
                                  fmt_duration(elapsed()), fmt_duration(eta));
    if (rec.contains("val_bpc")) line += mg::format(" | val bpc {:.3f}", rec["val_bpc"].get<double>());
    line += device_memory(opts_.device);
    if (tty_)
      mg::print("\r\033[K{}{}", line, eval_now ? "\n" : "");
    else if (eval_now || done % 10 == 0 || done == start_ + 1)
      mg::print("{}\n", line);
    std::fflush(stdout);
  }

  // Ends an in-place line before a message.
  const char* break_line() const { return tty_ ? "\n" : ""; }
  // Clears a line that phase() wrote, for the message that replaces it.
  const char* clear_line() const { return tty_ ? "\r\033[K" : ""; }

  // On a terminal, says on the progress line what runs between two steps' lines for a while (validation,
  // the test pass); the next step's line replaces it.
  void phase(const std::string& what) const {
    if (!tty_) return;
    mg::print("\r\033[K{} ...", what);
    std::fflush(stdout);
  }

 private:
  using Clock = std::chrono::steady_clock;
  const TrainOptions& opts_;
  int64_t start_;
  bool tty_;
  Clock::time_point t0_;
};

// --profile and --memory-report: which steps they watch, and what they print and write. The first step
// this process takes is skipped when there are enough steps (it fills the allocator's cache and is
// slower than the others).
class StepIntrospection {
 public:
  StepIntrospection(const TrainOptions& opts, int64_t start) : opts_(opts) {
    const int64_t left = opts.steps - start;
    first_ = left > opts.profile_steps ? start + 1 : start;
    last_ = std::min(opts.steps, first_ + opts.profile_steps);
    mem_step_ = left > 1 ? start + 1 : start;
    if (!opts.profile.empty()) {
      profiler_.emplace();
      profiler_->pause();
    }
  }

  void before(int64_t step) {
    if (opts_.memory_report && step == mem_step_) tracker_.emplace();
    if (profiler_ && step >= first_ && step < last_) {
      profiler_->resume();
      step_scope_.emplace(*profiler_, step + 1);
    }
  }

  void after(int64_t step, const MambaLM& model, const AdamW& opt) {
    if (step_scope_) {
      step_scope_.reset();
      profiler_->pause();
      if (step + 1 == last_) finish();
    }
    if (tracker_) {
      std::vector<Tensor> params, state;
      for (auto& p : model.named_parameters()) params.push_back(p.tensor);
      for (auto& [name, t] : opt.state_tensors()) state.push_back(t);
      const MemoryReport r = tracker_->report(params, state);
      tracker_.reset();
      mg::print("memory report, step {} (batch {}, seq {}):\n{}", step + 1, opts_.batch, opts_.seq, r.text());
    }
  }

  // Writes the trace and prints the table (once; also when the run stops before the last profiled step).
  void finish() {
    if (!profiler_ || done_) return;
    done_ = true;
    profiler_->stop();
    write_file_atomic(opts_.profile, profiler_->chrome_trace());
    mg::print("profile of {} step{} (Chrome trace: {}; open it in ui.perfetto.dev):\n{}", profiler_->steps().size(),
              profiler_->steps().size() == 1 ? "" : "s", opts_.profile, profiler_->table_text());
  }

 private:
  const TrainOptions& opts_;
  int64_t first_ = 0, last_ = 0, mem_step_ = 0;
  bool done_ = false;
  std::optional<Profiler> profiler_;
  std::optional<Profiler::StepScope> step_scope_;
  std::optional<MemoryTracker> tracker_;
};

// Runs `f`, a phase that may fail on one rank alone, and ends it with an agreement round (World::agree), so
// that no rank goes on to wait in a collective for one that stopped.
template <class F>
void agreed_phase(const World& world, F&& f) {
  std::exception_ptr err;
  try {
    f();
  } catch (...) {
    err = std::current_exception();
  }
  world.agree(err, "train");
}

// The options, checked before reading data or writing anything.
void check_options(TrainOptions& opts, const World& world, bool resume) {
  agreed_phase(world, [&] {
    opts.validate();
    require_device(opts.device, "train");
    check_ranks(opts, world, resume);
    check_train_paths(opts, resume);
  });
}

// The folder, read only (a new run must not replace a run unless asked to; only rank 0 looks), then the
// data. The ranks run one job: their options and data must be rank 0's.
TrainData check_folder_and_load_data(TrainOptions& opts, const World& world, bool resume) {
  TrainData data;
  agreed_phase(world, [&] {
    if (world.root()) {
      const RunFolderContents contents = inspect_run_folder(opts.out);
      if (resume) {
        MG_CHECK(!contents.is_file, "[resume] {} is a file, not a run folder", opts.out);
        MG_CHECK(contents.exists, "[resume] {} is not a run folder (train one with: mambagrad train --out {})",
                 opts.out, shell_word(opts.out));
        MG_CHECK(!contents.is_checkpoint,
                 "[resume] {} is a checkpoint folder of a run, not a run folder: resume the run with --resume on "
                 "the folder that holds it, which picks its newest complete checkpoint (to continue a copy of a "
                 "checkpoint as a run of its own, make it one: mkdir NEW && cp -r {} NEW/checkpoint-<its step>, "
                 "then --resume NEW)",
                 opts.out, shell_word(opts.out));
        MG_CHECK(!opts.overwrite, "[train] --overwrite and --resume exclude each other");
      } else {
        check_new_run_folder(opts.out, contents, opts.overwrite);
      }
    }
    data = load_train_data(opts, resume);
    throw_if_interrupted("train");
  });
  agreed_phase(world, [&] { world.check_same_as_root(rank_identity(opts, resume), "train"); });
  return data;
}

// The model, moved to the run's device, and its optimizer, made after the move so that its state lives
// on the device too.
AdamW optimizer_on_device(MambaLM& model, const TrainOptions& opts) {
  model.to(opts.device);
  return AdamW(make_param_groups(model, opts.weight_decay), opts.lr);
}

// Data parallel: the gradients' average over the ranks; none for one process.
std::unique_ptr<GradientReducer> make_reducer(const World& world, const MambaLM& model) {
  if (!world.distributed()) return nullptr;
  std::vector<Tensor> params;
  for (auto& p : model.named_parameters()) params.push_back(p.tensor);
  return std::make_unique<GradientReducer>(world, std::move(params), 1.0 / world.size());
}

// The carried state of a checkpoint, checked against the run's shapes and moved to its device.
std::vector<LayerState> restore_carry(const LoadedCheckpoint& loaded, const TrainOptions& opts, int64_t start) {
  MG_CHECK(!loaded.carry.empty(),
           "[resume] the run in {} carries state but its checkpoint of step {} holds none (the checkpoint is damaged)",
           opts.out, start);
  const MambaConfig& c = opts.config;
  std::vector<LayerState> carry;
  for (size_t i = 0; i < loaded.carry.size(); ++i) {
    const LayerState& s = loaded.carry[i];
    MG_CHECK(s.conv.shape() == Shape({opts.batch, c.d_inner(), c.d_conv - 1}) &&
                 s.ssm.shape() == Shape({opts.batch, c.d_inner(), c.d_state}) && s.ssm.dtype() == DType::f32 &&
                 s.conv.dtype() == DType::f32,
             "[resume] the carried state of layer {} in the checkpoint of step {} has shapes {} and {}; the run "
             "needs float32 ({}, {}, {}) and ({}, {}, {})",
             i, start, s.conv.shape(), s.ssm.shape(), opts.batch, c.d_inner(), c.d_conv - 1, opts.batch, c.d_inner(),
             c.d_state);
    carry.push_back({s.conv.to(opts.device), s.ssm.to(opts.device)});
  }
  return carry;
}

// The profile and the memory report come from rank 0 alone (one trace file, one table).
TrainOptions introspection_options(TrainOptions opts, const World& world) {
  if (!world.root()) opts.profile.clear(), opts.memory_report = false;
  return opts;
}

// One process's part of a training run, from its set-up (or restore) to its end. Rank 0 of a data-parallel
// run (N ranks each take batch / N rows of the same global batch, train/distributed.h) is the folder's
// only writer and the only one that prints.
class Trainer {
 public:
  Trainer(TrainOptions& opts, TrainData data, World& world, bool resume);

  int64_t start() const { return start_; }
  // Trains step `step` (0-based) and returns its metrics record; throws when it diverged.
  nlohmann::ordered_json step(int64_t step);
  bool eval_due(int64_t done) const {
    return (opts_.eval_every > 0 && done % opts_.eval_every == 0) || done == opts_.steps;
  }
  // Adds the validation loss to `rec`; returns the signal that interrupted it, else 0.
  int validate(nlohmann::ordered_json& rec);
  // Records the step: metrics.jsonl (rank 0) and the progress line.
  void log(const nlohmann::ordered_json& rec, bool eval_now);
  void save(int64_t step);
  // Ends the run after step `done` when a signal (agreed between the ranks) or --stop-at says so.
  std::optional<TrainResult> maybe_stop(int64_t done, int signo, bool during_validation);
  // The end: the test evaluation, its record and the closing messages.
  TrainResult finish();

 private:
  Restored take_folder();
  void restore_state();
  void write_run_record();
  StepResult train_step_of(int64_t step);
  void check_step(const StepResult& sr, int64_t done);
  [[noreturn]] void diverged(const std::string& what, int64_t step) const;
  void check_finite(const char* what, double v, int64_t step) const;
  EvalResult run_eval(const ByteDataset& split, int64_t max_bytes) const;
  TrainResult stopped(int64_t done, int signo, const char* phase);
  void check_folder_in_place(int64_t step);
  std::string saved_folder(const char* phase) const;
  void print_test_result(const EvalResult& test) const;

  TrainOptions& opts_;
  World& world_;
  const bool root_, resume_;
  const std::string dir_;
  const int64_t local_batch_;
  TrainData data_;
  // The model is initialised (and a checkpoint loaded) on the CPU, then moved.
  MambaLM model_;
  std::optional<RunLock> lock_;
  Restored from_;
  const int64_t start_;
  AdamW opt_;
  std::unique_ptr<GradientReducer> reducer_;
  Generator data_gen_;
  // With --carry-state: row r reads stream r of the train split, window after window; window w of a step
  // is step % windows (full windows only), and each starts from the previous one's final state (carry,
  // detached), zeros when the streams wrap to their start.
  const int64_t windows_;
  std::vector<LayerState> carry_;
  std::optional<RunHistory> history_;  // rank 0's
  const Progress progress_;
  std::optional<int64_t> last_saved_;
  const int64_t first_due_;
  const TrainOptions introspection_opts_;
  StepIntrospection introspection_;
  StepThreads step_threads_;
  double tok_s_ = 0;
  const char* const eval_mode_;
};

Trainer::Trainer(TrainOptions& opts, TrainData data, World& world, bool resume)
    : opts_(opts),
      world_(world),
      root_(world.root()),
      resume_(resume),
      dir_(opts.out),
      local_batch_(opts.batch / world.size()),
      data_(std::move(data)),
      model_(opts.config, opts.seed),
      from_(take_folder()),
      start_(from_.start),
      opt_(optimizer_on_device(model_, opts)),
      reducer_(make_reducer(world, model_)),
      data_gen_(opts.seed + 1),
      windows_(opts.carry_state ? data_.train.stream_length(opts.batch) / opts.seq : 0),
      progress_(opts, start_),
      first_due_(opts.eval_every > 0 ? std::min(opts.steps, opts.eval_every) : opts.steps),
      introspection_opts_(introspection_options(opts, world)),
      introspection_(introspection_opts_, start_),
      step_threads_(opts.device.is_cpu() && !world.distributed()),
      eval_mode_(opts.carry_state ? "stream" : "windows") {
  if (from_.ckpt) restore_state();  // its root copies say themselves how to go on when they fail
  try {
    write_run_record();
  } catch (const Error& e) {  // a full disk, mostly: run.json and metrics.jsonl of a resumed run are rewritten here
    // A refusal ("[resume] the run ... already finished") is not a failure to fix and retry: as it is.
    if (!resume_ || !from_.ckpt || std::string_view(e.what()).starts_with("[resume]")) throw;
    MG_THROW(
        "{}. The run is as it was at its checkpoint (step {}); fix the cause and resume again with: mambagrad "
        "train --resume {}",
        e.what(), start_, shell_word(dir_));
  }
  progress_.header(model_, data_, resume_);
}

// Rank 0 takes the folder: from here on it is the folder's only writer. A resumed run's checkpoint is
// loaded into the model (the other ranks read what rank 0 chose, after it).
Restored Trainer::take_folder() {
  Restored from;
  agreed_phase(world_, [&] {
    if (!root_) return;
    std::error_code ec;
    fs::create_directories(dir_, ec);
    MG_CHECK(!ec, "[train] cannot create the run folder {} (--out): {}", dir_, ec.message());
    lock_.emplace(dir_);
    if (!resume_) {
      check_new_run_folder(dir_, inspect_run_folder(dir_), opts_.overwrite);  // again, now that it is ours
      if (opts_.overwrite) remove_run_files(dir_);
    }
    remove_temporaries(dir_);
    if (resume_) from = restore_run(dir_, opts_, model_, true);
  });
  if (!root_ && resume_) from = restore_run(dir_, opts_, model_, false);
  return from;
}

// The optimizer, the data generator and the carried state of the checkpoint the run resumes from.
void Trainer::restore_state() {
  opt_.load_state(from_.loaded.state, from_.loaded.adamw_steps);
  data_gen_.set_state(from_.loaded.data_seed, from_.loaded.data_offset);
  if (opts_.carry_state && start_ % windows_ != 0) carry_ = restore_carry(from_.loaded, opts_, start_);
  // The root files may still be the previous checkpoint's after a crash.
  if (root_) publish_checkpoint(dir_, *from_.ckpt);
  last_saved_ = start_;
}

// The run's record: what it is, what it trains on, what it was asked. config.json at the root is what
// from_pretrained(dir) reads (the checkpoints carry their own copy; a resumed run's root has its
// checkpoint's, published in restore_state, which readers check against the checkpoint's manifest).
void Trainer::write_run_record() {
  if (!root_) return;
  write_file_atomic(dir_ + "/" + kRunFile, nlohmann::ordered_json::parse(opts_.to_json()).dump(2) + "\n");
  if (!from_.ckpt || from_.ckpt->legacy) write_file_atomic(dir_ + "/" + kConfigFile, model_.config().to_json());
  crash_point("run-started");
  history_.emplace(opts_, resume_, start_, from_.changed);
}

StepResult Trainer::train_step_of(int64_t step) {
  if (opts_.carry_state) {
    if (step % windows_ == 0) carry_.clear();  // the streams start (again): zero states
    Batch b = data_.train.stream_window(step % windows_, opts_.batch, opts_.seq, -1, opts_.device);
    return train_step(model_, opt_, b, opts_.clip, carry_);
  }
  if (world_.distributed()) {
    // Every rank draws the whole global batch (the same generator state everywhere) and keeps its rows.
    Batch b = data_.train.sample(opts_.batch, opts_.seq, data_gen_);
    const int64_t first = world_.rank() * local_batch_;
    b.inputs = b.inputs.narrow(0, first, local_batch_).contiguous().to(opts_.device);
    b.targets = b.targets.narrow(0, first, local_batch_).contiguous().to(opts_.device);
    return train_step(model_, opt_, b, opts_.clip, nullptr, reducer_.get());
  }
  Batch b = data_.train.sample(opts_.batch, opts_.seq, data_gen_, opts_.device);  // copied to the device
  return train_step(model_, opt_, b, opts_.clip);
}

nlohmann::ordered_json Trainer::step(int64_t step) {
  const double ts = progress_.elapsed();
  const double lr = lr_at(step, opts_.warmup, opts_.steps, opts_.lr, opts_.min_lr_ratio);
  opt_.set_lr(lr);
  introspection_.before(step);
  const int step_nt = step_threads_.begin();
  const StepResult sr = train_step_of(step);
  step_threads_.end();
  crash_point("step");
  introspection_.after(step, model_, opt_);
  check_step(sr, step + 1);
  const double inst = (double)(opts_.batch * opts_.seq) / std::max(progress_.elapsed() - ts, 1e-9);
  tok_s_ = step == start_ ? inst : 0.9 * tok_s_ + 0.1 * inst;
  nlohmann::ordered_json rec;
  rec["step"] = step + 1, rec["lr"] = lr, rec["train_loss"] = sr.loss, rec["train_bpc"] = sr.loss / std::log(2.0);
  rec["grad_norm"] = sr.grad_norm, rec["tokens_per_s"] = inst, rec["elapsed_s"] = progress_.elapsed();
  if (opts_.device.is_cpu()) rec["threads"] = step_nt;
  if (opts_.device.is_cuda()) {
    const cuda::MemoryStats m = cuda::memory_stats(opts_.device.index);
    rec["device_mem_mb"] = (double)m.in_use / 1048576.0, rec["device_peak_mb"] = (double)m.peak / 1048576.0;
  }
  return rec;
}

// A step whose loss, gradient norm, weights or validation loss is not finite is never saved: training
// stops there, and the checkpoint it names is one whose weights and validation were finite.
void Trainer::diverged(const std::string& what, int64_t step) const {
  mg::print("{}", progress_.break_line());
  MG_THROW("[train] the {} at step {}; stopping before anything of that step is saved. {}", what, step,
           last_saved_ ? mg::format("The last good checkpoint in {} is step {}", dir_, *last_saved_)
                       : mg::format("No checkpoint had been written yet (the first was due at step {})", first_due_));
}

void Trainer::check_finite(const char* what, double v, int64_t step) const {
  if (!std::isfinite(v)) diverged(mg::format("{} became {}", what, non_finite_name(v)), step);
}

void Trainer::check_step(const StepResult& sr, int64_t done) {
  check_finite("loss", sr.loss, done);
  check_finite("gradient norm", sr.grad_norm, done);
  if (!weights_finite(model_)) diverged("weights became non-finite (NaN or inf)", done);
}

// Validation and test: split over the ranks of a data-parallel run; streams with carried state for a run
// that carries it, else windows.
EvalResult Trainer::run_eval(const ByteDataset& split, int64_t max_bytes) const {
  if (world_.distributed()) return evaluate_ranks(model_, split, opts_.batch, opts_.seq, max_bytes, world_);
  return opts_.carry_state ? evaluate_stream(model_, split, opts_.batch, opts_.seq, max_bytes)
                           : evaluate(model_, split, opts_.batch, opts_.seq, max_bytes);
}

int Trainer::validate(nlohmann::ordered_json& rec) {
  const int64_t done = rec["step"].get<int64_t>();
  crash_point("validation");
  progress_.phase(mg::format("step {}/{} | validation on {}", done, opts_.steps, bytes_text(opts_.eval_bytes)));
  try {
    EvalResult v = run_eval(data_.val, opts_.eval_bytes);
    if (!std::isfinite(v.loss) && opts_.detect_anomaly) name_anomaly(model_, data_.val, opts_);
    check_finite("validation loss", v.loss, done);
    rec["val_loss"] = v.loss, rec["val_bpc"] = v.bpc(), rec["eval_mode"] = eval_mode_;
  } catch (const Interrupted& e) {
    return e.signo;  // the step itself is done: log it and save it without its validation
  }
  return 0;
}

void Trainer::log(const nlohmann::ordered_json& rec, bool eval_now) {
  if (root_) history_->log(rec);
  crash_point("metrics-logged");
  progress_.step(rec, tok_s_, eval_now);
}

void Trainer::save(int64_t step) {
  if (root_) {
    check_folder_in_place(step);
    try {
      save_checkpoint(dir_, model_, opt_, opts_, step, data_gen_, carry_);
      history_->plot();
    } catch (const Error&) {
      check_folder_in_place(step);  // moved while the checkpoint was written: say so rather than ENOENT
      throw;
    }
  }
  last_saved_ = step;
}

// The trainer writes its folder by path: when the folder it locked is no longer at --out (moved, renamed
// or removed while it trains), it stops instead of making a new folder there, which would hold
// checkpoints with no lock (a second trainer could take it) and no run record. A moved folder gets the
// checkpoint of `step` where it now is, so nothing is lost.
void Trainer::check_folder_in_place(int64_t step) {
  const std::optional<std::string> where = lock_->moved_to();
  if (!where) return;
  mg::print("{}", progress_.break_line());
  if (where->empty())
    MG_THROW(
        "[train] the run folder {} was removed while training (or another folder took its name); stopping at step "
        "{} without writing there: a new folder would hold checkpoints with no run record and no lock",
        dir_, step);
  if (const auto there = find_checkpoint(*where); !there || there->step != step) {  // it may have got there
    try {
      save_checkpoint(*where, model_, opt_, opts_, step, data_gen_, carry_);
    } catch (const Error& e) {  // moved on, or removed, while this was written
      MG_THROW(
          "[train] the run folder {} was moved to {} while training, and the checkpoint of step {} could not be "
          "written there ({}); training stops rather than make a new {}",
          dir_, *where, step, e.what(), dir_);
    }
  }
  last_saved_ = step;
  MG_THROW(
      "[train] the run folder {} was moved to {} while training; the checkpoint of step {} is saved there, and "
      "training stops rather than make a new {}. Continue with: mambagrad train --resume {}",
      dir_, *where, step, dir_, shell_word(*where));
}

std::optional<TrainResult> Trainer::maybe_stop(int64_t done, int signo, bool during_validation) {
  if (!signo) signo = agreed_signal(world_);
  if (signo) return stopped(done, signo, during_validation ? " during validation" : "");
  if (opts_.stop_at > 0 && done >= opts_.stop_at && done < opts_.steps) return stopped(done, 0, "");
  return std::nullopt;
}

TrainResult Trainer::stopped(int64_t done, int signo, const char* phase) {
  introspection_.finish();
  if (last_saved_ != done) save(done);
  const std::string folder = saved_folder(phase);
  if (opts_.progress)
    mg::print("{}{}{} at step {}: checkpoint saved in {}; continue with: mambagrad train --resume {}\n",
              progress_.break_line(), signo ? "interrupted" : "stopped", phase, done, folder, shell_word(folder));
  TrainResult r;
  r.step = done, r.signal = signo;
  return r;
}

TrainResult Trainer::finish() {
  introspection_.finish();
  TrainResult result;
  result.step = opts_.steps;
  crash_point("test");
  progress_.phase(mg::format("training done | test evaluation on {}", bytes_text(opts_.test_bytes)));
  try {
    result.test = run_eval(data_.test, opts_.test_bytes);
  } catch (const Interrupted& e) {
    const std::string folder = saved_folder(" during the test evaluation");
    if (opts_.progress)
      mg::print(
          "interrupted during the test evaluation; training is complete and its checkpoint (step {}) is saved "
          "in {}; evaluate it with: mambagrad eval --run {} --split test\n",
          opts_.steps, folder, shell_word(folder));
    result.signal = e.signo;
    return result;
  }
  result.finished = true;
  nlohmann::ordered_json rec;
  rec["step"] = opts_.steps, rec["test_loss"] = result.test.loss, rec["test_bpc"] = result.test.bpc();
  rec["eval_mode"] = eval_mode_;
  if (root_) history_->log(rec);  // metrics.jsonl is open: the record follows a moved folder
  if (opts_.progress) print_test_result(result.test);
  const std::string folder = saved_folder(" during the test evaluation");
  if (opts_.progress)
    mg::print("the run is saved in {}; sample from it with: mambagrad generate --run {} --prompt \"The \"\n", folder,
              shell_word(folder));
  return result;
}

// The folder that the closing messages name: where the run is now. A folder moved after its last checkpoint
// (`phase`: " during the test evaluation", or at a stop) is named where it went, as check_folder_in_place
// finds it, with a note; a removed one ends the command with an error, as removal while training does,
// since nothing of the run is left. Rank 0 alone holds the lock; the others answer --out.
std::string Trainer::saved_folder(const char* phase) const {
  const std::optional<std::string> where = lock_ ? lock_->moved_to() : std::nullopt;
  if (!where) return dir_;
  const char* when = *phase ? phase : " after its last checkpoint";
  MG_CHECK(!where->empty(),
           "[train] the run folder {} was removed{} (or another folder took its name): its checkpoints and "
           "metrics are gone",
           dir_, when);
  // On stderr even with --quiet, as the trainer's other notes on the user's files.
  if (opts_.progress) mg::print("{}", progress_.break_line());
  std::fputs(
      mg::format("note: the run folder {} was moved to {}{}; the run is saved there\n", dir_, *where, when).c_str(),
      stderr);
  return *where;
}

void Trainer::print_test_result(const EvalResult& test) const {
  mg::print("{}test: loss {:.4f} nats, bpc {:.4f}, perplexity {:.3f} over {} bytes{}\n", progress_.clear_line(),
            test.loss, test.bpc(), test.perplexity(), test.targets,
            opts_.carry_state ? mg::format(" ({} streams, state carried)", opts_.batch) : "");
  if (opts_.device.is_cuda()) {
    const cuda::MemoryStats m = cuda::memory_stats(opts_.device.index);
    mg::print("{} memory: peak {:.1f} MB, in use {:.1f} MB, cached {:.1f} MB\n", opts_.device.str(),
              (double)m.peak / 1048576.0, (double)m.in_use / 1048576.0, (double)m.cached / 1048576.0);
  }
}

}  // namespace

TrainResult train(TrainOptions opts, bool resume) {
  InterruptGuard interrupt;  // Ctrl-C from here on stops at the next safe point
  World& world = World::get();
  check_options(opts, world, resume);
  if (world.distributed() && !world.root()) opts.progress = false;  // rank 0 alone prints
  // --detect-anomaly: every step checks each op output and gradient for NaN/inf and throws at the first
  // (introspect/anomaly.h). Left as it was when off, so a caller's own AnomalyMode guard still applies.
  AnomalyMode anomaly(opts.detect_anomaly || AnomalyMode::is_enabled());
  // --precision bf16: every matmul of the steps and evaluations, forward and backward, with bf16 inputs.
  AutocastGuard autocast(opts.precision);
  if (opts.warmup < 0) opts.warmup = std::min<int64_t>(100, opts.steps / 10);

  Trainer run(opts, check_folder_and_load_data(opts, world, resume), world, resume);
  for (int64_t step = run.start(); step < opts.steps; ++step) {
    nlohmann::ordered_json rec = run.step(step);
    const int64_t done = step + 1;
    const bool eval_now = run.eval_due(done);
    const int signo = eval_now ? run.validate(rec) : 0;  // a signal that stopped the validation
    run.log(rec, eval_now);
    if (eval_now && !signo) run.save(done);
    if (std::optional<TrainResult> r = run.maybe_stop(done, signo, eval_now && !rec.contains("val_bpc"))) return *r;
  }
  return run.finish();
}

}  // namespace mg
