// The run folder under hostile use: trainers killed at every point of a checkpoint and at random
// moments, folders that already hold a run, a second trainer, damaged files, options a resumed run
// cannot change, out-of-range options, Ctrl-C in every phase. Most cases run the `mambagrad` program
// as a child process (tests/cli.h), as a user would.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/format.h"

#include "data/bytes.h"
#include "data/dataset.h"
#include "tests/check.h"
#include "tests/cli.h"
#include "tests/run_cli.h"
#include "tests/temp_dir.h"
#include "tests/trainer_fixture.h"
#include "io/atomic_file.h"
#include "train/interrupt.h"
#include "train/metrics.h"
#include "train/run_folder.h"
#include "io/safetensors.h"
#include "train/trainer.h"

using namespace mg;
using test::cli_fails;
using test::cli_ok;
using test::resume_cli;
using test::run_cli;
using test::TempDir;
using test::tiny_options;
using test::tiny_train;
using test::train_tiny;
using test::write_text;
namespace fs = std::filesystem;

namespace {

int count_checkpoints(const std::string& dir) {
  int n = 0;
  for (auto& e : fs::directory_iterator(dir)) n += e.path().filename().string().rfind("checkpoint-", 0) == 0;
  return n;
}

bool has_temporaries(const std::string& dir) {
  for (auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) return true;
  return false;
}

// Rewrites a checkpoint's manifest after a test changed one of its files on purpose.
void rewrite_manifest(const std::string& ckpt) {
  auto j = nlohmann::json::parse(read_bytes(ckpt + "/checkpoint.json"));
  for (auto& [name, info] : j["files"].items()) {
    info["bytes"] = fs::file_size(ckpt + "/" + name);
    info["crc32"] = crc32_file(ckpt + "/" + name);
  }
  write_file_atomic(ckpt + "/checkpoint.json", j.dump());
}

}  // namespace

TEST_CASE("run folder: a trainer killed at any point of a checkpoint resumes to the weights of a run never killed") {
  TempDir d("kill_points");
  const std::string data = write_text(d, 40000);
  cli_ok(tiny_train(data, d / "ref", 5));
  const std::string want = read_bytes(d / "ref/model.safetensors");
  REQUIRE(want.size() > 1000);
  // Every named point the trainer passes, at the first checkpoint and at a later one (when an older
  // checkpoint exists and must survive).
  struct Point {
    std::string name;
    int64_t resumes_at;  // the checkpoint that must survive: the step the resumed run starts from
  };
  const std::vector<Point> points = {{"run-started", 0},
                                     {"metrics-logged:1", 0},
                                     {"checkpoint-begin:1", 0},
                                     {"checkpoint-model:1", 0},
                                     {"checkpoint-state:1", 0},
                                     {"checkpoint-written:1", 0},
                                     {"checkpoint-renamed:1", 1},
                                     {"checkpoint-superseded:1", 1},
                                     {"checkpoint-published:1", 1},
                                     {"checkpoint-done:1", 1},
                                     {"validation:3", 2},
                                     {"checkpoint-begin:3", 2},
                                     {"checkpoint-model:3", 2},
                                     {"checkpoint-state:3", 2},
                                     {"checkpoint-written:3", 2},
                                     {"checkpoint-renamed:3", 3},
                                     {"checkpoint-superseded:3", 3},
                                     {"checkpoint-published:3", 3},
                                     {"checkpoint-done:3", 3},
                                     // the last checkpoint: committed, the root copies not yet switched
                                     {"checkpoint-renamed:5", 5},
                                     {"checkpoint-published:5", 5},
                                     {"test", 5}};
  int i = 0;
  for (const auto& [point, resumes_at] : points) {
    INFO("killed at " << point);
    const std::string dir = mg::format("{}/k{}", d.path.string(), i++);
    auto killed = run_cli(tiny_train(data, dir, 5), {"MG_TEST_CRASH_AT=" + point});
    REQUIRE(killed.signal == SIGKILL);
    if (resumes_at > 0) {  // a checkpoint exists: the folder loads as it is, mid-crash
      CHECK(count_checkpoints(dir) >= 1);
      CHECK_NOTHROW(load_model(dir));
    }
    auto r = resume_cli(dir);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(read_bytes(dir + "/model.safetensors") == want);
    CHECK(count_checkpoints(dir) == 1);
    CHECK(fs::exists(dir + "/checkpoint-5/trainer_state.safetensors"));
    CHECK(!has_temporaries(dir));
    int64_t resumed_from = -1, tests = 0;
    for (auto& j : read_jsonl(dir + "/metrics.jsonl")) {  // strict: no line cut short
      if (j.value("event", "") == "resume") resumed_from = j["step"].get<int64_t>();
      tests += j.contains("test_loss");
    }
    CHECK(resumed_from == resumes_at);  // no completed checkpoint was lost
    CHECK(tests == 1);
  }
}

TEST_CASE("run folder: SIGKILL at random moments, resumed each time, ends with the weights of a run never killed") {
  TempDir d("kill_random");
  const std::string data = write_text(d, 40000);
  const int steps = 30;
  cli_ok(tiny_train(data, d / "ref", steps));
  const std::string dir = d / "run";
  // Finished: its test line is written (after the last checkpoint and the root copies). A kill between the
  // last checkpoint and that line leaves a run that the next --resume finishes; one after it, a run that
  // --resume refuses as finished.
  const auto finished = [&] {
    if (!fs::exists(dir + "/metrics.jsonl")) return false;
    const auto lines = read_jsonl(dir + "/metrics.jsonl");
    return std::any_of(lines.begin(), lines.end(), [](const auto& j) { return j.contains("test_loss"); });
  };
  int kills = 0;
  for (int i = 0; i < 12 && !finished(); ++i) {
    const int delay_ms = 5 + (i * 37) % 90;  // spread over start-up, steps and checkpoint writes
    const bool started = fs::exists(dir + "/run.json");
    auto r = started ? run_cli({"train", "--resume", dir, "--threads", "1", "--quiet"}, {}, delay_ms)
                     : run_cli(tiny_train(data, dir, steps), {}, delay_ms);
    INFO("attempt " << i << ": " << r.err);
    REQUIRE((r.signal == SIGKILL || r.exit_code == 0));
    if (r.exit_code == 0) break;
    ++kills;
  }
  CHECK(kills >= 3);
  if (!finished()) {
    auto r = fs::exists(dir + "/run.json") ? resume_cli(dir) : run_cli(tiny_train(data, dir, steps));
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  }
  CHECK(read_bytes(dir + "/model.safetensors") == read_bytes(d / "ref/model.safetensors"));
  CHECK(!has_temporaries(dir));
}

TEST_CASE("run folder: a run is never replaced unless asked, and a refused start changes nothing") {
  TempDir d("refuse");
  TrainOptions o = train_tiny(d, {.steps = 4});
  const std::string data = o.data;
  const std::string metrics = read_bytes(d / "run/metrics.jsonl"), model = read_bytes(d / "run/model.safetensors");
  CHECK_THROWS_WITH_AS(train(o, false),
                       doctest::Contains("already holds a run (checkpoint-4, config.json, curves.svg, metrics.jsonl "
                                         "and 2 more): continue it with --resume"),
                       Error);
  TrainOptions bad = o;  // a start that fails on an option touches nothing, even with --overwrite
  bad.overwrite = true;
  bad.clip = 0;
  CHECK_THROWS_WITH_AS(train(bad, false), doctest::Contains("--clip must be positive"), Error);
  bad.clip = 1, bad.warmup = 100;
  CHECK_THROWS_WITH_AS(train(bad, false), doctest::Contains("--warmup must be -1"), Error);
  CHECK(read_bytes(d / "run/metrics.jsonl") == metrics);
  CHECK(read_bytes(d / "run/model.safetensors") == model);

  // --overwrite replaces the run's own files and nothing else.
  std::ofstream(d / "run/notes.txt") << "mine";
  o.overwrite = true;
  o.steps = 2;
  o.eval_every = 1;
  train(o, false);
  CHECK(read_jsonl(d / "run/metrics.jsonl").size() == 3);  // two steps and the test line
  CHECK(fs::exists(d / "run/checkpoint-2"));
  CHECK(!fs::exists(d / "run/checkpoint-4"));
  CHECK(read_bytes(d / "run/notes.txt") == "mine");

  // A folder with files of its own, not a run, is refused.
  fs::create_directories(d / "docs");
  std::ofstream(d / "docs/thesis.tex") << "...";
  CHECK_THROWS_WITH_AS(train(tiny_options(data, d / "docs"), false),
                       doctest::Contains("is not empty and holds no run (thesis.tex)"), Error);
  CHECK(!fs::exists(d / "docs/run.json"));

  // Two runs without --out go to runs/tiny and runs/tiny-2.
  for (int i = 0; i < 2; ++i) {
    auto r = cli_ok({"train", "--data",       data,  "--preset",  "tiny", "--d-model", "32", "--n-layer",
                     "1",     "--steps",      "1",   "--batch",   "2",    "--seq",     "16", "--eval-bytes",
                     "256",   "--test-bytes", "256", "--threads", "1"},
                    {}, d.path.string());
    CHECK(r.out.find(i == 0 ? "run folder runs/tiny\n" : "run folder runs/tiny-2\n") != std::string::npos);
    // The run ends by saying where it is and how to sample from it.
    const std::string run = i == 0 ? "runs/tiny" : "runs/tiny-2";
    CHECK(r.out.find("the run is saved in " + run + "; sample from it with: mambagrad generate --run " + run) !=
          std::string::npos);
  }
}

// Every file of a folder, with its bytes (recursively; names relative to the folder).
std::map<std::string, std::string> folder_bytes(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    out[fs::relative(e.path(), dir).string()] = e.is_regular_file() ? read_bytes(e.path()) : "(folder)";
  return out;
}

TEST_CASE("run folder: a checkpoint folder, a user's *.tmp.* files and a lone config.json are never taken for a run") {
  TempDir d("not_a_run");
  TrainOptions o = train_tiny(d, {.steps = 4});
  const std::string run = d / "run", ckpt = d / "run/checkpoint-4";
  const auto ckpt_before = folder_bytes(ckpt);

  // A checkpoint folder (model, config and trainer state, as the older run layout) is not a folder to
  // train in or resume: the run's only checkpoint would be replaced.
  for (bool overwrite : {false, true}) {
    TrainOptions into = tiny_options(o.data, ckpt);
    into.overwrite = overwrite;
    CHECK_THROWS_WITH_AS(train(into, false), doctest::Contains("is a checkpoint folder of a run"), Error);
  }
  cli_fails({"train", "--resume", ckpt, "--steps", "6", "--threads", "1"},
            "is a checkpoint folder of a run, not a run folder");
  auto copy = d / "copy-of-checkpoint";  // copied elsewhere, its checkpoint.json still says what it is
  fs::copy(ckpt, copy);
  cli_fails({"train", "--resume", copy, "--steps", "6", "--threads", "1"}, "is a checkpoint folder of a run");
  CHECK(folder_bytes(ckpt) == ckpt_before);
  auto r = resume_cli(run, {"--steps", "6"});  // the run itself resumes
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(fs::exists(run + "/checkpoint-6/checkpoint.json"));

  // Names with ".tmp." that the trainer did not write are a user's files: a folder holding them is not
  // empty, and a run folder keeps them through --resume and --overwrite.
  fs::create_directories(d / "mine/old.tmp.backup");
  write_bytes(d / "mine/thesis.tmp.tex", "precious");
  write_bytes(d / "mine/old.tmp.backup/data.csv", "precious");
  CHECK_THROWS_WITH_AS(train(tiny_options(o.data, d / "mine"), false),
                       doctest::Contains("is not empty and holds no run (old.tmp.backup, thesis.tmp.tex)"), Error);
  write_bytes(run + "/notes.tmp.md", "mine");
  write_bytes(run + "/notes.tmp.1234", "mine too");
  write_bytes(run + "/model.safetensors.tmp.1234", "a writer's leftover");
  r = resume_cli(run, {"--steps", "7"});
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(!fs::exists(run + "/model.safetensors.tmp.1234"));
  o.overwrite = true;
  train(o, false);
  CHECK(read_bytes(d / "mine/thesis.tmp.tex") == "precious");
  CHECK(read_bytes(d / "mine/old.tmp.backup/data.csv") == "precious");
  CHECK(read_bytes(run + "/notes.tmp.md") == "mine");
  CHECK(read_bytes(run + "/notes.tmp.1234") == "mine too");

  // A folder with a config.json of its own (or a model, metrics or curves) holds no run: refused, even
  // with --overwrite, and the file is left alone; --resume says the same.
  fs::create_directories(d / "app");
  write_bytes(d / "app/config.json", "{\"port\": 8080}");
  for (bool overwrite : {false, true}) {
    TrainOptions into = tiny_options(o.data, d / "app");
    into.overwrite = overwrite;
    CHECK_THROWS_WITH_AS(train(into, false), doctest::Contains("is not empty and holds no run (config.json)"), Error);
  }
  auto app = cli_fails({"train", "--resume", d / "app", "--steps", "2", "--threads", "1"}, "holds no training run");
  CHECK(app.err.find("leaves only its lock") == std::string::npos);
  fs::create_directories(d / "empty");
  auto empty = cli_fails({"train", "--resume", d / "empty"}, "holds no training run");
  CHECK(empty.err.find("leaves only its lock") == std::string::npos);
  CHECK(read_bytes(d / "app/config.json") == "{\"port\": 8080}");
  // A folder a trainer left as it started (its lock, a temporary run.json): the message says to start again.
  fs::create_directories(d / "early");
  write_bytes(d / "early/.lock", "");
  write_bytes(d / "early/run.json.tmp.4242", "{");
  cli_fails({"train", "--resume", d / "early"}, "leaves only its lock: start the run again with mambagrad train --out");
}

namespace {

// True when /proc/locks lists the flock this process takes on a file (Linux; a sandbox may hide it).
bool proc_locks_lists_flocks(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  struct stat st {};
  ::fstat(fd, &st);
  const std::string inode = ":" + std::to_string((unsigned long long)st.st_ino) + " ";
  const std::string pid = " " + std::to_string(::getpid()) + " ";
  bool listed = false;
  std::ifstream in;
  if (::flock(fd, LOCK_EX | LOCK_NB) == 0) in.open("/proc/locks");
  for (std::string line; in && std::getline(in, line);)
    listed |= line.find(" FLOCK ") != std::string::npos && line.find(pid) != std::string::npos &&
              line.find(inode) != std::string::npos;
  ::close(fd);
  return listed;
}

}  // namespace

TEST_CASE("run folder: a second trainer on a folder in use is refused") {
  TempDir d("lock");
  // Where the kernel lists the holders of flocks, the messages name the process that holds the lock.
  const bool holders_known = proc_locks_lists_flocks(d / "probe");
  if (!holders_known) MESSAGE("/proc/locks does not list this process's flock here: the holders' pids are not checked");
  TrainOptions o = train_tiny(d, {.steps = 2});
  {
    RunLock held(d / "run");  // as a trainer running in another process holds it
    TrainOptions r = load_run_options(d / "run");
    r.steps = 4;
    r.progress = false;
    CHECK_THROWS_WITH_AS(train(r, true), doctest::Contains("is in use by another trainer (pid "), Error);
    o.overwrite = true;
    CHECK_THROWS_WITH_AS(train(o, false), doctest::Contains("is in use by another trainer"), Error);
    CHECK(fs::exists(d / "run/checkpoint-2"));
    // Its .lock removed by hand while it runs: the folder's own lock still refuses a second trainer.
    fs::remove(d / "run/.lock");
    const std::string holder = holders_known ? mg::format("is in use by another trainer (pid {} (", ::getpid())
                                             : std::string("is in use by another trainer (its pid is unknown");
    CHECK_THROWS_WITH_AS(train(r, true), doctest::Contains(holder.c_str()), Error);
    CHECK_THROWS_WITH_AS(train(r, true), doctest::Contains("its .lock was removed while it runs"), Error);
    o.overwrite = false;
  }
  {
    // Another program (this one) holds the .lock, which still names the last trainer: long gone, or a pid
    // that a live process (init) has now. The message names the holder instead of that pid as a trainer in use.
    const pid_t gone = ::fork();
    if (gone == 0) ::_exit(0);
    REQUIRE(gone > 0);
    REQUIRE(::waitpid(gone, nullptr, 0) == gone);
    for (const long long written : {(long long)gone, 1LL}) {
      CAPTURE(written);
      write_bytes(d / "run/.lock", std::to_string(written) + "\n");
      const int fd = ::open((d / "run/.lock").c_str(), O_RDWR | O_CLOEXEC);
      REQUIRE(fd >= 0);
      REQUIRE(::flock(fd, LOCK_EX | LOCK_NB) == 0);
      TrainOptions r = load_run_options(d / "run");
      r.steps = 4;
      r.progress = false;
      const std::string holder = mg::format("is locked by another process: pid {} (", ::getpid());
      const std::string stale = mg::format("(the pid written in it, {}, is of an earlier trainer)", written);
      if (holders_known) {
        CHECK_THROWS_WITH_AS(train(r, true), doctest::Contains(holder.c_str()), Error);
        CHECK_THROWS_WITH_AS(train(r, true), doctest::Contains(stale.c_str()), Error);
      } else if (written != 1) {  // without the holders, a pid of no process is all that tells
        const std::string want =
            mg::format("is locked by another program: its .lock names pid {}, a trainer that has exited", written);
        CHECK_THROWS_WITH_AS(train(r, true), doctest::Contains(want.c_str()), Error);
      }
      ::close(fd);
    }
  }
  TrainOptions r = load_run_options(d / "run");  // released: the run continues
  r.steps = 4;
  r.progress = false;
  CHECK(train(r, true).finished);
}

TEST_CASE("run folder: a metrics line cut short by a full disk does not block resuming") {
  TempDir d("metrics_tail");
  train_tiny(d, {.stop_at = 3});
  std::ofstream(d / "run/metrics.jsonl", std::ios::app) << "{\"step\": 4, \"train_lo";
  TrainOptions r = load_run_options(d / "run");
  r.progress = false;
  CHECK(train(r, true).finished);
  auto lines = read_jsonl(d / "run/metrics.jsonl");  // strict: every line is whole again
  int64_t steps = 0;
  for (auto& j : lines) steps += j.contains("train_loss");
  CHECK(steps == 8);
  // A line damaged in the middle is dropped too, with a note on stderr even under --quiet.
  std::string text = read_bytes(d / "run/metrics.jsonl");
  text.insert(text.find('\n') + 1, "garbage\n");
  write_bytes(d / "run/metrics.jsonl", text);
  auto q = resume_cli(d / "run", {"--steps", "10"});
  CHECK_MESSAGE(q.exit_code == 0, q.err);
  CHECK(q.err.find("note: 1 line of " + (d / "run/metrics.jsonl") + " could not be read") != std::string::npos);
  CHECK(read_bytes(d / "run/metrics.jsonl").find("garbage") == std::string::npos);
}

TEST_CASE("run folder: outputs never replace a run's own files") {
  TempDir d("logits_out");
  const std::string data = write_text(d, 30000);
  cli_ok(tiny_train(data, d / "run", 2));
  const std::string model = read_bytes(d / "run/model.safetensors");
  for (std::string target : {"run/model.safetensors", "run/config.json", "run/metrics.jsonl",
                             "run/checkpoint-2/model.safetensors", "run/checkpoint-2/new.safetensors"}) {
    INFO(target);
    cli_fails({"logits", "--run", d / "run", "--input", data, "--bytes", "16", "--out", d / target},
              "is one of a run's own files", 1);
  }
  CHECK(read_bytes(d / "run/model.safetensors") == model);
  cli_ok({"logits", "--run", d / "run", "--input", data, "--bytes", "16", "--out", d / "run/logits.safetensors"});
}

TEST_CASE("run folder: on resume the options a run cannot change are refused by name, the others recorded") {
  TempDir d("resume_opts");
  train_tiny(d, {.stop_at = 4});
  TrainOptions r = load_run_options(d / "run");
  r.progress = false;
  TrainOptions bad = r;
  bad.lr = 0.002, bad.batch = 8, bad.config.d_state = 8;
  CHECK_THROWS_WITH_AS(train(bad, true),
                       doctest::Contains("cannot change when it resumes: --d-state 8 (the run's: 16), --batch 8 (the "
                                         "run's: 4), --lr 0.002 (the run's: 0.001)"),
                       Error);
  auto cli = resume_cli(d / "run", {"--seq", "64"});
  CHECK(cli.exit_code == 1);
  CHECK(cli.err.find("--seq 64 (the run's: 32)") != std::string::npos);
  auto same = resume_cli(d / "run", {"--seq", "32", "--steps", "10", "--eval-every", "5"});  // same value: fine
  CHECK_MESSAGE(same.exit_code == 0, same.err);
  bool recorded = false;
  for (auto& j : read_jsonl(d / "run/metrics.jsonl"))
    if (j.value("event", "") == "resume") {
      recorded = true;
      CHECK(j["step"] == 4);
      CHECK(j["changed"]["steps"] == nlohmann::json::array({8, 10}));
      CHECK(j["changed"]["eval_every"] == nlohmann::json::array({4, 5}));
    }
  CHECK(recorded);
  CHECK(nlohmann::json::parse(read_bytes(d / "run/run.json"))["steps"] == 10);
  CHECK(load_run_options(d / "run").steps == 10);
  auto other = resume_cli(d / "run", {"--out", d / "elsewhere"});
  CHECK(other.err.find("name different folders") != std::string::npos);
  auto both = resume_cli(d / "run", {"--overwrite"});
  CHECK(both.err.find("exclude each other") != std::string::npos);
  // A finished run is refused as such, without advice to fix a cause and resume again (which fails the same).
  auto done = resume_cli(d / "run");
  CHECK(done.exit_code == 1);
  CHECK(done.err.find("already finished its 10 steps (raise --steps to train further)") != std::string::npos);
  CHECK(done.err.find("fix the cause") == std::string::npos);
}

TEST_CASE("run folder: every out-of-range option is an error naming it, before anything is written") {
  TempDir d("ranges");
  const std::string data = write_text(d, 30000);
  const std::string out = d / "run";
  struct Case {
    std::vector<std::string> args;
    std::string expect;
  };
  std::vector<Case> cases = {
      {{"--d-model", "0"}, "--d-model: must be a positive integer, got '0'"},
      {{"--n-layer", "0"}, "--n-layer: must be a positive integer"},
      {{"--d-state", "0"}, "--d-state: must be a positive integer"},
      {{"--dt-rank", "-2"}, "--dt-rank: must be a non-negative integer, got '-2'"},
      {{"--eval-bytes", "-5"}, "--eval-bytes: must be -1 (the whole split) or a positive integer"},
      {{"--eval-every", "-1"}, "--eval-every: must be a non-negative integer"},
      {{"--stop-at", "-3"}, "--stop-at: must be a positive integer"},
      {{"--stop-at", "99"}, "--stop-at must be between 1 and --steps (4), got 99"},
      {{"--steps", "99999999999999999999"}, "out of the 64-bit range"},
      {{"--seed", "-1"}, "--seed: must be an integer from 0 to 18446744073709551615, got '-1'"},
      {{"--clip", "0"}, "--clip: must be a positive number"},
      {{"--lr", "nan"}, "--lr: must be a positive number"},
      {{"--warmup", "5"}, "--warmup must be -1 (auto: min(100, steps / 10)) or between 0 and --steps (4), got 5"},
      {{"--preset", "huge"}, "--preset: huge not in {tiny,small,base}"},
      {{"--batch", "4611686018427387904", "--seq", "1024"}, "more bytes than a 64-bit count holds"},
      {{"--seq", "9223372036854775807"}, "more bytes than a 64-bit count holds"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args{"train", "--data", data, "--out", out, "--preset", "tiny", "--steps", "4", "--quiet"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    INFO(c.args[0] << " " << c.args[1]);
    CHECK(cli_fails(args, c.expect).err.size() < 400);
    CHECK(!fs::exists(out));
  }
  // generate rejects its options before printing the prompt
  auto g = cli_fails({"generate", "--run", d / "nowhere", "--prompt", "hello", "--temperature", "-1"},
                     "--temperature: must be a non-negative number");
  CHECK(g.out.empty());
  cli_fails({"generate", "--run", d / "nowhere", "--bytes", "-5"}, "--bytes: must be a non-negative");
  cli_fails({"generate", "--run", d / "nowhere", "--top-p", "0"}, "--top-p: must be a number in (0, 1] (1: no cut)");
  SampleOptions s;
  s.top_k = -1;
  CHECK_THROWS_WITH_AS(s.validate(), doctest::Contains("--top-k must be >= 0"), Error);
  // global options: a short message, accepted after the subcommand too; an unknown command is named
  auto t = cli_fails({"--threads", "0", "gradcheck", "--op", "add"},
                     "--threads: must be an integer from 1 to 4096, got '0'");
  CHECK(t.err.size() < 200);
  cli_ok({"gradcheck", "--op", "add", "--threads", "1"});
  // MG_NUM_THREADS: the whole text, in --threads' range (it took "1.5", "1e3" and "2abc" by their first digits,
  // and any size)
  for (const char* v : {"0", "-1", "abc", "", "1.5", "1e3", "2abc", " 2", "4097", "99999999999"}) {
    INFO("MG_NUM_THREADS=" << v);
    const test::CliRun r = run_cli({"gradcheck", "--op", "add"}, {std::string("MG_NUM_THREADS=") + v});
    CHECK(r.exit_code != 0);
    CHECK(r.err.find("[threads] MG_NUM_THREADS='" + std::string(v) + "' is not an integer from 1 to 4096") !=
          std::string::npos);
  }
  cli_ok({"gradcheck", "--op", "add"}, {"MG_NUM_THREADS=2"});
  cli_fails({"bogus-command"}, "unknown command 'bogus-command' (valid: train, eval, generate");
  // an option the command does not have is named with the command's options; one given twice is named
  cli_fails({"generate", "--run", d / "nowhere", "--min-p", "0.05"},
            "[generate] unknown option --min-p (generate's options: --run, --prompt, --prompt-file, --bytes, "
            "--temperature, --top-k, --top-p");
  // values that start with '-' are values, and a flag takes none
  cli_fails({"train", "--warmup", "-1", "--bogus", "5"}, "[train] unknown option --bogus (");
  cli_fails({"generate", "--run", d / "nowhere", "--prompt", "-- hi", "--jsonl", "--zz", "1"},
            "[generate] unknown option --zz (");
  cli_fails({"generate", "--run", d / "nowhere", "--bytes", "5", "--bytes", "3"},
            "[generate] --bytes was given 2 times; give it once");
  // --help that cannot be written fails, as any command's output does
  auto h = test::run_program("/bin/sh", {"-c", std::string(MG_CLI_PATH) + " --help > /dev/full"});
  CHECK(h.exit_code == 1);
  CHECK(h.err.find("cannot write to standard output") != std::string::npos);
}

TEST_CASE("run folder: a non-finite loss before any checkpoint says that none exists") {
  TempDir d("nan_first");
  const std::string data = write_text(d, 30000);
  TrainOptions o = tiny_options(data, d / "run");
  o.steps = 40;
  o.eval_every = 0;
  o.lr = 1e30;
  o.clip = 1e30;
  CHECK_THROWS_WITH_AS(train(o, false),
                       doctest::Contains("is saved. No checkpoint had been written yet (the first was due at step 40)"),
                       Error);
}

TEST_CASE("run folder: the run records its data by absolute path, size and CRC-32, and notices a changed file") {
  TempDir d("data_id");
  const std::string data = write_text(d, 30000);
  const std::string rel = fs::relative(data).string();  // as a user types it
  TrainOptions o = tiny_options(rel, d / "run");
  o.stop_at = 2;
  train(o, false);
  TrainOptions stored = load_run_options(d / "run");
  CHECK(fs::path(stored.data).is_absolute());
  CHECK(fs::equivalent(stored.data, data));
  CHECK(stored.data_bytes == 30000);
  std::vector<uint8_t> bytes = read_byte_file(data);
  CHECK(stored.data_crc32 == crc32_bytes(bytes.data(), bytes.size()));
  CHECK_NOTHROW(check_run_data(stored, bytes, "eval"));
  bytes[100] ^= 1;
  CHECK_THROWS_WITH_AS(check_run_data(stored, bytes, "eval"),
                       doctest::Contains("is not the data this run was trained on: it holds 30000 bytes"), Error);
  std::ofstream(data, std::ios::app) << "more";
  stored.progress = false;
  CHECK_THROWS_WITH_AS(train(stored, true), doctest::Contains("Pass --data with the run's file"), Error);
  // eval from another working directory finds the data by its absolute path ... and notices the change
  cli_fails({"eval", "--run", d / "run", "--split", "validation", "--bytes", "256"},
            "is not the data this run was trained on", -1, "/");
}

TEST_CASE("run folder: eval works on a folder with only model.safetensors and config.json, given --data") {
  TempDir d("eval_hf");
  const std::string data = train_tiny(d, {.steps = 2}).data;
  fs::create_directories(d / "hf");
  fs::copy_file(d / "run/model.safetensors", d / "hf/model.safetensors");
  fs::copy_file(d / "run/config.json", d / "hf/config.json");
  cli_fails({"eval", "--run", d / "hf"},
            "records no training run (no run.json and no checkpoint), so its data is unknown: pass --data FILE", 1);
  auto e = cli_ok({"eval", "--run", d / "hf", "--data", data, "--split", "validation", "--seq", "32"});
  CHECK(e.out.find("bpc") != std::string::npos);
}

TEST_CASE("run folder: train --carry-state and eval --stream / --windows from the command line") {
  TempDir d("eval_stream");
  const std::string data = write_text(d, 30000);
  cli_ok({"train", "--data",       data,   "--preset",      "tiny",    "--d-model", "32",     "--n-layer",
          "1",     "--steps",      "3",    "--batch",       "4",       "--seq",     "32",     "--eval-bytes",
          "1024",  "--test-bytes", "1024", "--carry-state", "--quiet", "--out",     d / "run"});
  CHECK(load_run_options(d / "run").carry_state);
  auto e = cli_ok({"eval", "--run", d / "run", "--split", "validation", "--bytes", "1000"});
  CHECK(e.out.find("999 bytes predicted (16 streams, state carried across windows of 32)") != std::string::npos);
  auto w = cli_ok({"eval", "--run", d / "run", "--split", "validation", "--bytes", "1000", "--windows"});
  CHECK(w.out.find("992 bytes predicted (windows of 32 bytes, each from a zero state)") != std::string::npos);
  cli_fails({"eval", "--run", d / "run", "--stream", "--windows"}, "--stream excludes --windows");
  cli_ok({"train", "--resume", d / "run", "--steps", "5", "--carry-state", "--quiet"});  // the run's own mode
  TrainOptions plain = tiny_options(data, d / "plain");
  plain.steps = 2;
  train(plain, false);
  cli_fails({"train", "--resume", d / "plain", "--steps", "4", "--carry-state", "--quiet"},
            "--carry-state true (the run's: false)", 1);
}

TEST_CASE("run folder: every field of a damaged trainer state is checked with a message naming it") {
  TempDir d("state_fields");
  train_tiny(d, {.eval_every = 2, .stop_at = 2});
  const std::string ckpt = d / "run/checkpoint-2", state = ckpt + "/trainer_state.safetensors";
  const std::string good = read_bytes(state);
  struct Case {
    std::string key, value, expect;
  };
  for (const Case& c : std::vector<Case>{
           {"step", "abc", "the metadata field 'step' of"},
           {"data_offset", "-5", "the metadata field 'data_offset' of"},
           {"data_seed", "18446744073709551616", "the metadata field 'data_seed' of"},
           {"adamw_steps", "", "has no 'adamw_steps' in its metadata"},
           {"options", "{\"data\": 3}", "the field 'data' of the training options in"},
           {"options", "{not json", "are not valid JSON"},
           {"format", "something", "is not a mambagrad trainer state"},
       }) {
    INFO(c.key << " = " << c.value);
    { std::ofstream(state, std::ios::binary) << good; }
    auto f = read_safetensors(state);
    if (c.value.empty())
      f.metadata.erase(c.key);
    else
      f.metadata[c.key] = c.value;
    save_safetensors(state, f.tensors, f.metadata);
    rewrite_manifest(ckpt);
    auto e = resume_cli(d / "run");
    CHECK(e.exit_code == 1);
    CHECK(e.err.find(c.expect) != std::string::npos);
    CHECK(e.err.find("stoll") == std::string::npos);
    CHECK(e.err.find("map::at") == std::string::npos);
  }
  // A checkpoint damaged on disk (its CRC no longer matches) with no older one is an error, not a silent
  // restart from step 0.
  { std::ofstream(state, std::ios::binary) << good; }
  rewrite_manifest(ckpt);
  xor_byte(state, fs::file_size(state) - 5, 0x40);
  auto e = resume_cli(d / "run");
  CHECK(e.exit_code == 1);
  CHECK(e.err.find("has no usable checkpoint") != std::string::npos);
  CHECK(e.err.find("does not match its CRC-32") != std::string::npos);
}

TEST_CASE("run folder: a damaged newest checkpoint is set aside and the older complete one resumes bit-exactly") {
  TempDir d("fallback");
  const std::string data = write_text(d, 30000);
  cli_ok(tiny_train(data, d / "ref", 4));
  // Kill right after checkpoint 4 committed, before the older one is removed: both are present.
  test::killed_run(data, d / "run", 4, "checkpoint-renamed:4");
  REQUIRE(fs::exists(d / "run/checkpoint-3"));
  REQUIRE(fs::exists(d / "run/checkpoint-4"));
  const std::string damaged = d / "run/checkpoint-4/model.safetensors";
  xor_byte(damaged, fs::file_size(damaged) / 2, 1);
  auto r = resume_cli(d / "run");
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  CHECK(r.err.find("checkpoint-4 is not a usable checkpoint") != std::string::npos);
  CHECK(r.err.find("is set aside as " + (d / "run/checkpoint-4.damaged")) != std::string::npos);  // the real name
  CHECK(fs::exists(d / "run/checkpoint-4.damaged"));
  CHECK(read_bytes(d / "run/model.safetensors") == read_bytes(d / "ref/model.safetensors"));
}

TEST_CASE("run folder: a run of the earlier layout (model and trainer state at the root) resumes") {
  TempDir d("legacy");
  const std::string data = write_text(d, 30000);
  TrainOptions o = tiny_options(data, d / "ref");
  train(o, false);
  o.out = d / "run";
  o.stop_at = 4;
  train(o, false);
  // Turn the folder into the earlier layout.
  fs::remove(d / "run/model.safetensors");
  fs::copy_file(d / "run/checkpoint-4/model.safetensors", d / "run/model.safetensors");
  fs::copy_file(d / "run/checkpoint-4/trainer_state.safetensors", d / "run/trainer_state.safetensors");
  fs::remove_all(d / "run/checkpoint-4");
  fs::remove(d / "run/run.json");
  TrainOptions r = load_run_options(d / "run");
  r.progress = false;
  CHECK(train(r, true).finished);
  CHECK(read_bytes(d / "run/model.safetensors") == read_bytes(d / "ref/model.safetensors"));
  CHECK(!fs::exists(d / "run/trainer_state.safetensors"));  // superseded by checkpoint-8/
  CHECK(fs::exists(d / "run/checkpoint-8/trainer_state.safetensors"));
}

TEST_CASE("run folder: Ctrl-C stops training, validation and the test evaluation, saves, and exits with 130") {
  TempDir d("ctrl_c");
  const std::string data = write_text(d, 30000);
  struct Case {
    std::string point, says;
    int saved_step;
  };
  for (const Case& c : std::vector<Case>{{"metrics-logged:2", "interrupted at step 2", 2},
                                         {"validation:3", "interrupted during validation at step 3", 3},
                                         {"test", "interrupted during the test evaluation", 4}}) {
    INFO(c.point);
    const std::string dir = d / c.point.substr(0, c.point.find(':'));
    auto args = tiny_train(data, dir, 4);
    args.pop_back();  // not --quiet: the message is part of the check
    auto r = run_cli(args, {"MG_TEST_INTERRUPT_AT=" + c.point});
    CHECK(r.exit_code == 130);
    CHECK(r.out.find(c.says) != std::string::npos);
    CHECK(fs::exists(mg::format("{}/checkpoint-{}", dir, c.saved_step)));
    if (c.saved_step < 4) {
      auto lines = read_jsonl(dir + "/metrics.jsonl");
      REQUIRE(!lines.empty());
      CHECK(lines.back()["step"] == c.saved_step);
      auto resumed = resume_cli(dir);
      CHECK_MESSAGE(resumed.exit_code == 0, resumed.err);
    }
  }
  // evaluate() itself stops between batches
  ByteDataset set(std::vector<uint8_t>(4096, 'a'), "validation");
  MambaLM model(tiny_options(data, "").config);
  InterruptGuard guard;
  std::raise(SIGINT);
  CHECK(interrupt_signal() == SIGINT);
  CHECK_THROWS_AS(evaluate(model, set, 2, 32, -1), Interrupted);
}
