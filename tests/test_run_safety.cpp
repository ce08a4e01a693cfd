// Outputs, resume and divergence under hostile use: outputs that name a device, a FIFO, a folder, a file
// the command reads or a run's own files; root files written over in place; a lost or renamed checkpoint
// on resume; a diverging run; SIGHUP; a full disk and /dev/full; damaged root files; a checkpoint that a
// trainer rotates under a reader. Most cases run the `mambagrad` program as a child process (tests/cli.h).
#include <doctest/doctest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>
#include <nlohmann/json.hpp>

#include "core/format.h"
#include "io/atomic_file.h"
#include "io/output_file.h"
#include "io/safetensors.h"
#include "tests/check.h"
#include "tests/cli.h"
#include "tests/run_cli.h"
#include "tests/temp_dir.h"
#include "tests/trainer_fixture.h"
#include "train/checkpoint.h"
#include "train/metrics.h"
#include "train/run_folder.h"

using namespace mg;
using test::resume_cli;
using test::run_cli;
using test::TempDir;
using test::tiny_train;
using test::write_text;
namespace fs = std::filesystem;

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A shell command line (for redirections such as `> /dev/full`), run with /bin/sh.
test::CliRun shell(const std::string& line) { return test::run_program("/bin/sh", {"-c", line}); }

std::string cli() { return MG_CLI_PATH; }

// True when every value of every tensor of a safetensors file is finite.
bool all_finite(const std::string& path) {
  for (auto& [name, t] : read_safetensors(path).tensors)
    for (float v : t.to_vector<float>())
      if (!std::isfinite(v)) return false;
  return true;
}

// A small tmpfs mounted at `dir` (of `size`) and filled up unless `fill` is false, unmounted at the end; `ok`
// is false where this process may not mount (not root, or in a container without the capability).
struct FullDisk {
  std::string dir;
  bool ok = false;
  explicit FullDisk(const std::string& d, const std::string& size = "64k", bool fill = true) : dir(d) {
    fs::create_directories(dir);
    ok = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, ("size=" + size).c_str()) == 0;
    if (!ok || !fill) return;
    std::FILE* f = std::fopen((dir + "/filler").c_str(), "wb");
    std::string block(4096, 'x');
    while (f && std::fwrite(block.data(), 1, block.size(), f) == block.size() && std::fflush(f) == 0) {}
    if (f) std::fclose(f);
  }
  ~FullDisk() {
    if (ok) ::umount(dir.c_str());
  }
};

// A trained tiny run in d/run (a checkpoint every step), stopped after `steps`.
std::string trained_run(const TempDir& d, const std::string& data, int steps) {
  auto r = run_cli(tiny_train(data, d / "run", steps));
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  return d / "run";
}

}  // namespace

TEST_CASE("run safety: the root model and config are files of their own, never links into a checkpoint") {
  TempDir d("root_copy");
  const std::string data = write_text(d, 30000);
  const std::string run = trained_run(d, data, 2);
  for (const char* f : {"model.safetensors", "config.json"}) {
    INFO(f);
    CHECK(fs::hard_link_count(run + "/" + f) == 1);
    CHECK(read_bytes(run + "/" + f) == read_bytes(run + "/checkpoint-2/" + f));
  }
  // Written over in place (as `cp other.safetensors run/model.safetensors` does): the checkpoint is intact,
  // and the run resumes from it.
  const std::string ckpt_model = read_bytes(run + "/checkpoint-2/model.safetensors");
  { std::ofstream(run + "/model.safetensors", std::ios::binary | std::ios::in) << "garbage"; }
  CHECK(read_bytes(run + "/checkpoint-2/model.safetensors") == ckpt_model);
  auto r = resume_cli(run, {"--steps", "3"});
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(all_finite(run + "/model.safetensors"));
  CHECK(fs::hard_link_count(run + "/model.safetensors") == 1);
}

TEST_CASE("run safety: a run folder of an earlier build (root files hard-linked) evaluates and resumes") {
  TempDir d("old_links");
  const std::string data = write_text(d, 30000);
  const std::string run = trained_run(d, data, 2);
  for (const char* f : {"model.safetensors", "config.json"}) {
    fs::remove(run + "/" + f);
    fs::create_hard_link(run + "/checkpoint-2/" + f, run + "/" + f);
  }
  auto e = run_cli({"eval", "--run", run, "--bytes", "512", "--threads", "1"});
  CHECK_MESSAGE(e.exit_code == 0, e.err);
  auto r = resume_cli(run, {"--steps", "3"});
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(fs::hard_link_count(run + "/model.safetensors") == 1);  // a copy now
  CHECK(fs::hard_link_count(run + "/checkpoint-3/model.safetensors") == 1);
}

TEST_CASE("run safety: eval, generate and logits verify the root model against checkpoint.json") {
  TempDir d("root_crc");
  const std::string data = write_text(d, 30000);
  const std::string run = trained_run(d, data, 2);
  xor_byte(run + "/model.safetensors", fs::file_size(run + "/model.safetensors") - 7, 0x10);  // a bit of a weight
  const std::vector<std::vector<std::string>> commands = {
      {"eval", "--run", run, "--bytes", "512"},
      {"generate", "--run", run, "--bytes", "4"},
      {"logits", "--run", run, "--input", data, "--bytes", "8", "--out", d / "l.safetensors"}};
  for (const auto& args : commands) {
    INFO(args[0]);
    auto r = run_cli(args);
    CHECK(r.exit_code == 1);
    CHECK(contains(r.err, run + "/model.safetensors does not match the size and CRC-32 that"));
    CHECK(contains(r.err, "checkpoint-2/checkpoint.json"));
  }
  CHECK(!fs::exists(d / "l.safetensors"));
  // Restored as the message says, it evaluates again.
  fs::copy_file(run + "/checkpoint-2/model.safetensors", run + "/model.safetensors",
                fs::copy_options::overwrite_existing);
  auto ok = run_cli(commands[0]);
  CHECK_MESSAGE(ok.exit_code == 0, ok.err);
  // The root config.json too: an edited epsilon would change every prediction without a word.
  const std::string config = read_bytes(run + "/config.json");
  const auto at = config.find("\"layer_norm_epsilon\": 1e-05");
  REQUIRE(at != std::string::npos);
  std::string edited = config;
  edited.replace(at, 27, "\"layer_norm_epsilon\": 0.5");
  write_bytes(run + "/config.json", edited);
  for (const auto& args : commands) {
    INFO(args[0]);
    auto r = run_cli(args);
    CHECK(r.exit_code == 1);
    CHECK(contains(r.err, run + "/config.json does not match the size and CRC-32 that"));
    CHECK(contains(r.err, "Restore it with: cp " + run + "/checkpoint-2/config.json " + run + "/config.json"));
  }
  CHECK(!fs::exists(d / "l.safetensors"));
  // The same JSON written differently (another build's serialisation) is the same config.
  write_bytes(run + "/config.json", nlohmann::json::parse(config).dump(4));
  ok = run_cli(commands[0]);
  CHECK_MESSAGE(ok.exit_code == 0, ok.err);
  write_bytes(run + "/config.json", config);
  ok = run_cli(commands[0]);
  CHECK_MESSAGE(ok.exit_code == 0, ok.err);

  // A folder of the model alone (no run, so no run files to refuse): logits still never writes over the
  // model or the config it reads.
  fs::create_directories(d / "bare");
  for (const std::string f : {"model.safetensors", "config.json"}) fs::copy_file(run + "/" + f, d / ("bare/" + f));
  const std::string bare_model = read_bytes(d / "bare/model.safetensors");
  for (const std::string f : {"model.safetensors", "config.json"}) {
    auto r = run_cli({"logits", "--run", d / "bare", "--input", data, "--bytes", "8", "--out", d / ("bare/" + f)});
    CHECK(r.exit_code == 1);
    CHECK(contains(r.err, "which this command reads"));
  }
  CHECK(read_bytes(d / "bare/model.safetensors") == bare_model);
}

TEST_CASE("run safety: a root model older than the newest checkpoint is passed over with a note") {
  TempDir d("root_older");
  const std::string data = write_text(d, 30000);
  // Killed after checkpoint 4 was committed, before the root copy was updated: the root model is step 3's.
  test::killed_run(data, d / "run", 4, "checkpoint-renamed:4");
  const std::string root = d / "run/model.safetensors", ckpt = d / "run/checkpoint-4";
  REQUIRE(fs::exists(ckpt));
  REQUIRE(read_bytes(root) != read_bytes(ckpt + "/model.safetensors"));
  const std::string note = root + " is from step 3, older than the newest checkpoint (" + ckpt +
                           ", step 4): that checkpoint's model is read";
  // Read is checkpoint 4's model: the same logits as from that folder itself.
  auto logits_of = [&](const std::string& run, const std::string& out) {
    return run_cli({"logits", "--run", run, "--input", data, "--bytes", "16", "--out", out, "--threads", "1"});
  };
  const test::CliRun from_run = logits_of(d / "run", d / "a.safetensors");
  CHECK_MESSAGE(from_run.exit_code == 0, from_run.err);
  CHECK(contains(from_run.err, note));
  const test::CliRun from_ckpt = logits_of(ckpt, d / "b.safetensors");
  CHECK_MESSAGE(from_ckpt.exit_code == 0, from_ckpt.err);
  CHECK(!contains(from_ckpt.err, "note:"));
  CHECK(read_bytes(d / "a.safetensors") == read_bytes(d / "b.safetensors"));
  auto e = run_cli({"eval", "--run", d / "run", "--bytes", "512", "--threads", "1"});
  CHECK_MESSAGE(e.exit_code == 0, e.err);
  CHECK(contains(e.err, note));
  // Resumed, the trainer puts the root copy back: no note after that.
  REQUIRE(test::resume_cli(d / "run").exit_code == 0);
  auto again = run_cli({"eval", "--run", d / "run", "--bytes", "512", "--threads", "1"});
  CHECK_MESSAGE(again.exit_code == 0, again.err);
  CHECK(!contains(again.err, "note:"));
}

TEST_CASE("run safety: a root model newer than the newest usable checkpoint is not taken unverified") {
  TempDir d("root_newer");
  const std::string data = write_text(d, 30000);
  // Killed after checkpoint 4 was committed, before checkpoint 3 was removed, with the root model already
  // step 4's (as earlier builds left it: they published before removing the older checkpoint); then
  // checkpoint 4 is damaged.
  test::killed_run(data, d / "run", 4, "checkpoint-renamed:4");
  REQUIRE(fs::exists(d / "run/checkpoint-3"));
  fs::copy_file(d / "run/checkpoint-4/model.safetensors", d / "run/model.safetensors",
                fs::copy_options::overwrite_existing);
  const std::string damaged = d / "run/checkpoint-4/model.safetensors";
  xor_byte(damaged, fs::file_size(damaged) / 2, 1);
  auto e = run_cli({"eval", "--run", d / "run", "--bytes", "512"});
  CHECK(e.exit_code == 1);
  CHECK(contains(e.err, (d / "run/model.safetensors") + " is from step 4, newer than the newest usable checkpoint (" +
                            (d / "run/checkpoint-3") + ", step 3), so it cannot be verified"));
}

TEST_CASE("run safety: an output never replaces a folder, a FIFO, a device, a file it reads or a run's files") {
  TempDir d("outputs");
  const std::string data = write_text(d, 30000);
  const std::string run = trained_run(d, data, 2);
  const std::string input = d.file("input.txt", std::string(64, 'a'));
  fs::create_symlink(input, d / "link-to-input");
  fs::create_directories(d / "folder");
  REQUIRE(::mkfifo((d / "fifo").c_str(), 0644) == 0);
  auto logits = [&](const std::string& out) {
    return run_cli({"logits", "--run", run, "--input", input, "--bytes", "16", "--out", out});
  };
  struct Case {
    std::string out, says;
  };
  for (const Case& c :
       std::vector<Case>{{d / "folder", "is a directory"},
                         {d / "fifo", "is a FIFO (named pipe)"},
                         {input, "is an input, which this command reads"},
                         {d / "link-to-input", "is the same file as " + input},
                         {data, "is the training data of the run (" + data + ")"},
                         {run + "/model.safetensors", "is one of a run's own files"},
                         {run + "/checkpoint-2/trainer_state.safetensors", "is one of a run's own files"}}) {
    INFO(c.out);
    auto r = logits(c.out);
    CHECK(r.exit_code == 1);
    CHECK(contains(r.err, "[logits] --out " + c.out + " " + c.says));
  }
  CHECK(fs::is_directory(d / "folder"));
  CHECK(fs::is_fifo(d / "fifo"));
  CHECK(read_bytes(input) == std::string(64, 'a'));
  CHECK(fs::is_symlink(d / "link-to-input"));
  auto resumed = resume_cli(run, {"--steps", "3"});  // the data and the run are intact
  CHECK_MESSAGE(resumed.exit_code == 0, resumed.err);
  // graph and train --profile follow the same rule.
  auto g = run_cli({"graph", "--out", run + "/model.safetensors"});
  CHECK(g.exit_code == 1);
  CHECK(contains(g.err, "[graph] --out " + run + "/model.safetensors is one of a run's own files"));
  auto p = run_cli({"train", "--data", data, "--out", d / "new", "--steps", "1", "--profile", data});
  CHECK(p.exit_code == 1);
  CHECK(contains(p.err, "[train] --profile " + data + " is an input"));
  fs::create_directories(d / "new");  // an empty folder for a new run
  auto own =
      run_cli({"train", "--data", data, "--out", d / "new", "--steps", "1", "--profile", d / "new/metrics.jsonl"});
  CHECK(own.exit_code == 1);
  CHECK(contains(own.err, "[train] --profile " + (d / "new/metrics.jsonl") + " is one of a run's own files"));
  CHECK(fs::is_empty(d / "new"));  // refused before anything was made
}

TEST_CASE("run safety: an output replaces only an earlier output of its kind or an empty file, never a user's file") {
  TempDir d("output_kinds");
  const std::string data = write_text(d, 30000);
  const std::string run = trained_run(d, data, 2);
  const std::string input = d.file("input.txt", std::string(64, 'a'));
  const std::string notes = d.file("notes.txt", std::string("my notes\n"));
  fs::copy_file(run + "/model.safetensors", d / "weights.safetensors");  // safetensors, but not logits
  const std::string weights = read_bytes(d / "weights.safetensors");
  auto refused = [&](const test::CliRun& r, const std::string& says) {
    CHECK(r.exit_code == 1);
    CHECK_MESSAGE(contains(r.err, says), r.err);
  };
  // graph: a data file, notes and a DOT file of another tool's are refused; its own earlier output and an
  // empty file are replaced.
  const std::string other_dot = d.file("other.dot", std::string("digraph deps { a -> b }\n"));  // a user's DOT graph
  for (const std::string& out : {data, notes, other_dot})
    refused(run_cli({"graph", "--out", out}), "[graph] --out " + out + " exists and is not a DOT graph");
  CHECK(read_bytes(notes) == "my notes\n");
  CHECK(read_bytes(other_dot) == "digraph deps { a -> b }\n");
  const std::string empty = d.file("empty.dot", std::string());
  for (const std::string& out : {d / "g.dot", d / "g.dot", empty}) {
    auto g = run_cli({"graph", "--out", out});
    CHECK_MESSAGE(g.exit_code == 0, g.err);
    CHECK(read_bytes(out).starts_with("digraph"));
  }
  // logits: a model's safetensors and notes are refused; its own earlier output is replaced.
  auto logits = [&](const std::string& out) {
    return run_cli({"logits", "--run", run, "--input", input, "--bytes", "16", "--out", out});
  };
  refused(logits(d / "weights.safetensors"),
          "[logits] --out " + (d / "weights.safetensors") + " exists and is not a logits file");
  refused(logits(notes), "is not a logits file");
  CHECK(read_bytes(d / "weights.safetensors") == weights);
  for (int i = 0; i < 2; ++i) {
    auto l = logits(d / "logits.safetensors");
    CHECK_MESSAGE(l.exit_code == 0, l.err);
  }
  // train --profile: notes are refused before the run folder is made; an earlier trace is replaced.
  refused(run_cli({"train", "--data", data, "--out", d / "p", "--steps", "1", "--profile", notes}),
          "[train] --profile " + notes + " exists and is not a Chrome trace");
  CHECK(!fs::exists(d / "p"));
  CHECK(read_bytes(notes) == "my notes\n");
  const std::string trace = d / "trace.json";
  for (const char* out : {"p1", "p2"}) {
    std::vector<std::string> args = tiny_train(data, d / out, 1);
    args.insert(args.end(), {"--profile", trace});
    auto t = run_cli(args);
    CHECK_MESSAGE(t.exit_code == 0, t.err);
  }
  CHECK(contains(read_bytes(trace), "\"traceEvents\""));
}

TEST_CASE("run safety: a character device named as an output is written into, never replaced") {
  TempDir d("devices");
  const std::string data = write_text(d, 30000);
  const std::string run = trained_run(d, data, 2);
  const std::string node = d / "null-device";
  if (::mknod(node.c_str(), S_IFCHR | 0666, makedev(1, 3)) != 0) {  // a second /dev/null
    std::printf("SKIPPED: mknod of a character device is not permitted here (%s)\n", std::strerror(errno));
    return;
  }
  auto r = run_cli({"logits", "--run", run, "--input", data, "--bytes", "16", "--out", node});
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(fs::is_character_file(node));
  auto g = run_cli({"graph", "--out", node});
  CHECK_MESSAGE(g.exit_code == 0, g.err);
  CHECK(fs::is_character_file(node));
  // /dev/full: the write error is an error, and the device stays.
  auto full = run_cli({"logits", "--run", run, "--input", data, "--bytes", "16", "--out", "/dev/full"});
  CHECK(full.exit_code == 1);
  CHECK(contains(full.err, "No space left on device"));
  CHECK(fs::is_character_file("/dev/full"));
  std::vector<std::string> left;
  for (auto& e : fs::directory_iterator(d.path))
    if (contains(e.path().filename().string(), ".tmp.")) left.push_back(e.path().string());
  CHECK(left.empty());
}

TEST_CASE("run safety: a write error on standard output fails eval, generate and train") {
  TempDir d("stdout_full");
  const std::string data = write_text(d, 30000);
  const std::string run = trained_run(d, data, 2);
  for (const std::string& cmd :
       {" eval --run " + run + " --bytes 512 --threads 1", " generate --run " + run + " --bytes 50",
        " generate --run " + run + " --bytes 5 --num-samples 2 --jsonl", " graph --out " + (d / "g.dot")}) {
    INFO(cmd);
    auto r = shell(cli() + cmd + " > /dev/full");
    CHECK(r.exit_code == 1);
    CHECK(contains(r.err, "cannot write to standard output: No space left on device"));
  }
}

TEST_CASE("run safety: the commands that messages suggest can be pasted into a shell whatever the path holds") {
  // shell_word against the shell itself: printf prints the word back as the shell parsed it.
  for (const std::string w : {"runs/small", "a b", "it's", "$(rm -rf x)", "tab\there", "new\nline", "back\\slash",
                              "\"quoted\"", "-dash", "", "''", "*?[]~#!&;|<>"}) {
    INFO(w);
    const auto r = shell("printf %s " + shell_word(w));
    CHECK(r.exit_code == 0);
    CHECK(r.out == w);
  }
  CHECK(shell_word("runs/small-2.5") == "runs/small-2.5");  // plain words stay as they are
  TempDir d("paste");
  const std::string data = write_text(d, 30000), run = d / "my run";
  std::vector<std::string> args = tiny_train(data, run, 2);
  args.erase(std::find(args.begin(), args.end(), "--quiet"));
  const test::CliRun r = run_cli(args);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  CHECK(contains(r.out, "sample from it with: mambagrad generate --run '" + run + "' --prompt"));
}

TEST_CASE("run safety: an --out too long for the checkpoints' paths is refused before anything is made") {
  TempDir d("long_out");
  const std::string data = write_text(d, 30000);
  std::string out = d / "top";
  while (out.size() < 4000) out += "/" + std::string(200, 'd');  // each part a valid name, the whole too long
  const test::CliRun r = run_cli(tiny_train(data, out, 2));
  CHECK(r.exit_code == 1);
  CHECK(contains(r.err, "[train] --out is " + std::to_string(out.size()) + " characters long"));
  CHECK(contains(r.err, "use a path of at most"));
  CHECK(!fs::exists(d / "top"));  // it used to train, then fail at its first checkpoint, on every resume too
}

TEST_CASE("run safety: with standard output closed, no file the trainer opens takes its place") {
  TempDir d("stdout_closed");
  const std::string data = write_text(d, 30000);
  const std::string run = d / "run";
  std::string cmd = cli();
  for (const std::string& a : tiny_train(data, run, 3))
    if (a != "--quiet") cmd += " '" + a + "'";  // progress lines, which went into .lock (descriptor 1)
  auto r = shell(cmd + " >&-");
  CHECK(r.exit_code == 1);
  CHECK(contains(r.err, "cannot write to standard output: Bad file descriptor"));
  std::ifstream lock(run + "/.lock");
  std::string text((std::istreambuf_iterator<char>(lock)), std::istreambuf_iterator<char>());
  CAPTURE(text);
  CHECK(text.find_first_not_of("0123456789\n") == std::string::npos);  // the holder's pid alone
}

TEST_CASE("run safety: a full disk: graph says why and leaves no file, generate stops with an error") {
  TempDir d("full_disk");
  FullDisk full(d / "full");
  if (!full.ok) {
    std::printf("SKIPPED: mounting a small tmpfs is not permitted here (%s)\n", std::strerror(errno));
    return;
  }
  auto g = run_cli({"graph", "--out", full.dir + "/g.dot"});
  CHECK(g.exit_code == 1);
  CHECK(contains(g.err, "No space left on device"));
  std::vector<std::string> names;
  for (auto& e : fs::directory_iterator(full.dir)) names.push_back(e.path().filename().string());
  CHECK(names == std::vector<std::string>{"filler"});  // no g.dot, no temporary
  const std::string data = write_text(d, 30000);
  const std::string run = trained_run(d, data, 2);
  auto r = shell(cli() + " generate --run " + run + " --bytes 50000 > " + full.dir + "/out.txt");
  CHECK(r.exit_code == 1);
  CHECK(contains(r.err, "No space left on device"));
}

TEST_CASE(
    "run safety: on a nearly full disk a checkpoint's root copy takes the space of the checkpoint it supersedes") {
  TempDir d("nearly_full");
  const std::string data = write_text(d, 30000);
  FullDisk mounted(d / "disk", "16m", /*fill=*/false);
  if (!mounted.ok) {
    std::printf("SKIPPED: mounting a small tmpfs is not permitted here (%s)\n", std::strerror(errno));
    return;
  }
  const std::string disk = mounted.dir;
  const std::string run = disk + "/run";
  auto first = run_cli(tiny_train(data, run, 1));
  REQUIRE_MESSAGE(first.exit_code == 0, first.err);
  // Leave free the space of one more checkpoint and half a model: checkpoint-2 fits, and its root copy fits
  // only once checkpoint-1 is gone (removing it after the copy, as before, failed every resume here).
  auto used = [](const std::string& dir) {
    uintmax_t bytes = 0;
    for (auto& e : fs::recursive_directory_iterator(dir))
      if (e.is_regular_file()) bytes += (e.file_size() + 4095) / 4096 * 4096;
    return bytes;
  };
  const uintmax_t ckpt = used(run + "/checkpoint-1"), model = fs::file_size(run + "/model.safetensors");
  const fs::space_info space = fs::space(disk);
  const uintmax_t keep = ckpt + model / 2;
  REQUIRE(space.available > keep);
  {
    std::ofstream filler(disk + "/filler", std::ios::binary);
    filler << std::string(space.available - keep, 'x');
    REQUIRE(filler.good());
  }
  auto r = resume_cli(run, {"--steps", "2"});
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(fs::exists(run + "/checkpoint-2"));
  CHECK(!fs::exists(run + "/checkpoint-1"));
  CHECK(read_bytes(run + "/model.safetensors") == read_bytes(run + "/checkpoint-2/model.safetensors"));
}

TEST_CASE("run safety: a root model that cannot be updated says that the checkpoint is saved and how to go on") {
  TempDir d("root_blocked");
  const std::string data = write_text(d, 30000);
  const std::string run = trained_run(d, data, 1);
  fs::remove(run + "/model.safetensors");
  fs::create_directories(run + "/model.safetensors");  // the copy's rename cannot replace it
  auto r = resume_cli(run, {"--steps", "2"});
  CHECK(r.exit_code == 1);
  CHECK(contains(r.err, "[checkpoint] checkpoint-1 is saved in " + run +
                            ", but the root model.safetensors (a copy of the checkpoint's) could not be updated"));
  CHECK(contains(r.err, "continue the run with: mambagrad train --resume " + run));
  fs::remove(run + "/model.safetensors");  // the cause fixed: the run goes on
  auto again = resume_cli(run, {"--steps", "2"});
  CHECK_MESSAGE(again.exit_code == 0, again.err);
  CHECK(read_bytes(run + "/model.safetensors") == read_bytes(run + "/checkpoint-2/model.safetensors"));
}

TEST_CASE("run safety: resume never starts over when the run got further than its start") {
  TempDir d("no_restart");
  const std::string data = write_text(d, 30000);
  auto base = tiny_train(data, d / "base", 6);
  base.insert(base.end(), {"--stop-at", "4"});
  auto r = run_cli(base);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  struct Case {
    std::string name, says;
    std::function<void(const std::string&)> damage;
  };
  const std::vector<Case> cases = {
      {"removed", "a root model.safetensors", [](const std::string& run) { fs::remove_all(run + "/checkpoint-4"); }},
      {"renamed", "checkpoint-abc/",
       [](const std::string& run) { fs::rename(run + "/checkpoint-4", run + "/checkpoint-abc"); }},
      {"a file", "checkpoint-4 (not a folder)",
       [](const std::string& run) {
         fs::remove_all(run + "/checkpoint-4");
         std::ofstream(run + "/checkpoint-4") << "x";
       }},
      {"metrics only", "metrics.jsonl with steps up to 4 (the first checkpoint was due at step 1)",
       [](const std::string& run) {
         fs::remove_all(run + "/checkpoint-4");
         fs::remove(run + "/model.safetensors");
       }}};
  for (const auto& c : cases) {
    INFO(c.name);
    const std::string run = d / c.name;
    fs::copy(d / "base", run, fs::copy_options::recursive);
    c.damage(run);
    const std::string metrics = read_bytes(run + "/metrics.jsonl");
    const std::string model = fs::exists(run + "/model.safetensors") ? read_bytes(run + "/model.safetensors") : "";
    auto e = resume_cli(run);
    CHECK(e.exit_code == 1);
    CHECK(contains(e.err, run + " has no usable checkpoint, but the run got further than its start"));
    CHECK(contains(e.err, c.says));
    CHECK(contains(e.err, "restore the checkpoint folder"));
    CHECK(contains(e.err, "mambagrad train --out " + shell_word(run) + " --overwrite"));  // quoted: "a file"
    CHECK(read_bytes(run + "/metrics.jsonl") == metrics);                                 // nothing changed
    if (!model.empty()) CHECK(read_bytes(run + "/model.safetensors") == model);
  }
}

TEST_CASE("run safety: a diverging run stops before saving, and its last good checkpoint is finite") {
  TempDir d("diverge");
  const std::string data = write_text(d, 30000);
  // Diverging from the first step: nothing is saved.
  auto args = tiny_train(data, d / "lrr", 20);
  args.insert(args.end(), {"--lr", "1e38", "--warmup", "0"});
  auto r = run_cli(args);
  CHECK(r.exit_code == 1);
  INFO(r.err);
  CHECK(contains(r.err, "; stopping before anything of that step is saved. "));
  if (contains(r.err, "No checkpoint had been written")) {
    CHECK(!fs::exists(d / "lrr/model.safetensors"));
  } else {  // the one it names is finite
    const size_t at = r.err.find(" is step ");
    REQUIRE(at != std::string::npos);
    const std::string ckpt = d / ("lrr/checkpoint-" + std::to_string(std::atoll(r.err.c_str() + at + 9)));
    CHECK(all_finite(ckpt + "/model.safetensors"));
  }
  // Diverging after a good checkpoint (the warm-up raises the rate to 100 by step 10; the validation at step 3
  // is NaN): that one is kept and named, it is finite, and it evaluates.
  auto later = tiny_train(data, d / "run", 20);
  later.insert(later.end(), {"--lr", "100", "--warmup", "10"});
  auto e = run_cli(later);
  CHECK(e.exit_code == 1);
  CHECK(contains(e.err,
                 "[train] the validation loss became NaN at step 3; stopping before anything of that step is "
                 "saved. The last good checkpoint in " +
                     (d / "run") + " is step 2"));
  CHECK(fs::exists(d / "run/checkpoint-2"));
  CHECK(!fs::exists(d / "run/checkpoint-3"));
  CHECK(read_bytes(d / "run/model.safetensors") == read_bytes(d / "run/checkpoint-2/model.safetensors"));
  CHECK(all_finite(d / "run/checkpoint-2/model.safetensors"));
  int64_t logged = 0;
  for (auto& j : read_jsonl(d / "run/metrics.jsonl")) {
    logged = std::max(logged, j["step"].get<int64_t>());
    if (j.contains("val_bpc")) CHECK(j["val_bpc"].is_number());  // never null (NaN)
  }
  CHECK(logged == 2);  // the diverged step is not logged
  auto ev = run_cli({"eval", "--run", d / "run", "--bytes", "512", "--threads", "1"});
  CHECK_MESSAGE(ev.exit_code == 0, ev.err);
}

TEST_CASE("run safety: SIGHUP saves the last finished step and exits with 129") {
  TempDir d("sighup");
  const std::string data = write_text(d, 30000);
  // No checkpoint but the one SIGHUP saves.
  auto r = run_cli(tiny_train(data, d / "run", 6, {.eval_every = 0}), {"MG_TEST_HANGUP_AT=metrics-logged:3"});
  CHECK(r.exit_code == 128 + SIGHUP);
  CHECK(fs::exists(d / "run/checkpoint-3"));
  auto resumed = resume_cli(d / "run");
  CHECK_MESSAGE(resumed.exit_code == 0, resumed.err);
}

TEST_CASE("run safety: commands on a run that has not saved its first checkpoint say so") {
  TempDir d("first_ckpt");
  const std::string data = write_text(d, 30000);
  test::killed_run(data, d / "run", 4, "metrics-logged:1");
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"eval", "--run", d / "run"},
        {"generate", "--run", d / "run"},
        {"logits", "--run", d / "run", "--input", data, "--out", d / "l.safetensors"}}) {
    INFO(args[0]);
    auto r = run_cli(args);
    CHECK(r.exit_code == 1);
    CHECK(contains(r.err, "the run in " + (d / "run") + " has not saved its first checkpoint yet"));
  }
}

TEST_CASE("run safety: paths that are not UTF-8 and an empty --resume are refused by name, leaving nothing") {
  TempDir d("paths");
  const std::string data = write_text(d, 30000);
  const std::string bad = d / "run-\xff\xfe";
  auto r = run_cli({"train", "--data", data, "--out", bad, "--steps", "1", "--quiet"});
  CHECK(r.exit_code == 1);
  CHECK(contains(r.err, "[train] --out is not valid UTF-8 text (byte 0xff at offset"));
  CHECK(!fs::exists(bad));
  fs::copy(trained_run(d, data, 1), bad, fs::copy_options::recursive);  // a run copied under such a name
  auto rb = run_cli({"train", "--resume", bad});
  CHECK(rb.exit_code == 1);
  CHECK(contains(rb.err, "[train] --resume is not valid UTF-8 text"));
  CHECK(contains(rb.err, "rename the folder (mv) to a name in UTF-8"));
  auto e = run_cli({"train", "--resume", "", "--data", data});
  CHECK(e.exit_code == 1);
  CHECK(contains(e.err, "[train] --resume is empty"));
  CHECK_NOTHROW(check_utf8_path("caf\xc3\xa9 \xf0\x9f\x99\x82", "t", "--x"));  // two- and four-byte forms
  for (const char* s :
       {"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "a\xe2\x82"})  // overlong, surrogate, > U+10FFFF, cut
    CHECK_THROWS_WITH_AS(check_utf8_path(s, "t", "--x"), doctest::Contains("[t] --x is not valid UTF-8"), Error);
}

TEST_CASE("run safety: eval and generate read the newest checkpoint again when a trainer rotates them") {
  TempDir d("rotate");
  const std::string data = write_text(d, 30000);
  const std::string run = trained_run(d, data, 1);
  // A trainer saving every step beside readers that load the run's options and model in a loop.
  const std::vector<std::string> args = {"train", "--resume", run, "--steps", "60", "--threads", "1", "--quiet"};
  std::vector<char*> argv;
  std::vector<std::string> argv_s{MG_CLI_PATH};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  REQUIRE(posix_spawn(&pid, MG_CLI_PATH, nullptr, nullptr, argv.data(), environ) == 0);
  int loads = 0, status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    CHECK_NOTHROW(load_run_options(run));
    CHECK_NOTHROW(load_model(run));
    ++loads;
  }
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  CHECK(loads > 0);
}

namespace {

// The step of the newest checkpoint-<step> folder in `run` (0 when none, or the folder is gone).
int64_t newest_checkpoint_step(const fs::path& run) {
  int64_t newest = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(run, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("checkpoint-", 0) == 0 && name.find('.') == std::string::npos)
      newest = std::max<int64_t>(newest, std::atoll(name.c_str() + 11));
  }
  return newest;
}

// A tiny run of many steps (a checkpoint every 2), and `act` on its folder once it has saved step 4 (not
// at all when the trainer ends first: then the test's checks fail, rather than `act` throwing in a thread).
test::CliRun train_and_then(const std::string& data, const fs::path& run, const std::function<void()>& act) {
  std::atomic<bool> ended{false};
  std::thread mover([&] {
    while (newest_checkpoint_step(run) < 4 && !ended) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (!ended) act();
  });
  test::CliRun r = run_cli(tiny_train(data, run, 3000, {.eval_every = 2}), {}, 180000);
  ended = true;
  mover.join();
  return r;
}

}  // namespace

TEST_CASE("run safety: a run folder moved or removed while it trains is never made again at its old name") {
  TempDir d("moved_run");
  const std::string data = write_text(d, 30000);
  {
    // Moved: the trainer saves the step it is at where the folder now is and stops, naming the new place.
    const fs::path run = d / "run", moved = d / "moved";
    const test::CliRun r = train_and_then(data, run, [&] {
      std::error_code ec;
      fs::rename(run, moved, ec);
    });
    CAPTURE(r.err);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("was moved to") != std::string::npos);
    CHECK(r.err.find("train --resume " + fs::canonical(moved).string()) != std::string::npos);
    CHECK(!fs::exists(run));  // before: a new folder there with later checkpoints, no run.json, no lock
    const auto ckpt = find_checkpoint(moved);
    REQUIRE(ckpt);
    CHECK(ckpt->step >= 4);
    CHECK(ckpt->step < 3000);
    CHECK(test::train_losses((moved / "metrics.jsonl").string()).size() == (size_t)ckpt->step);
    const test::CliRun resumed =
        run_cli({"train", "--resume", moved, "--stop-at", std::to_string(ckpt->step + 2), "--threads", "1", "--quiet"});
    CHECK_MESSAGE(resumed.exit_code == 0, resumed.err);
  }
  {
    // Removed (as rm -rf would: here renamed away first, then removed): the trainer stops with an error and
    // makes nothing at the old name.
    const fs::path run = d / "run2", gone = d / "gone";
    const test::CliRun r = train_and_then(data, run, [&] {
      std::error_code ec;
      fs::rename(run, gone, ec);
      while (fs::exists(gone, ec) && fs::remove_all(gone, ec) == static_cast<std::uintmax_t>(-1)) {}
    });
    CAPTURE(r.err);
    CHECK(r.exit_code == 1);
    // The trainer may have seen the folder moved before it was removed: then it saved there first.
    CHECK((r.err.find("was removed while training") != std::string::npos ||
           r.err.find("was moved to") != std::string::npos));
    CHECK(!fs::exists(run));
  }
}

TEST_CASE("run safety: a run folder moved or removed during the final test evaluation is named where it is") {
  TempDir d("moved_at_test");
  const std::string data = write_text(d, 30000);
  // A finished 2-step run that stops itself (SIGSTOP) as its test evaluation starts; `act` then runs on
  // its folder and the run goes on. Without --quiet, for its closing lines.
  auto finish_after = [&](const fs::path& run, const std::function<void()>& act) {
    std::vector<std::string> args = tiny_train(data, run, 2);
    std::erase(args, std::string("--quiet"));
    return run_cli(args, {"MG_TEST_STOP_AT=test"}, -1, "", act);
  };
  {
    // Moved: the test's record follows the folder (metrics.jsonl is open), and the closing lines name the new
    // place. Before, they named the old one, where nothing was.
    const fs::path run = d / "run", moved = d / "moved";
    bool acted = false;
    const test::CliRun r = finish_after(run, [&] { fs::rename(run, moved), acted = true; });
    CAPTURE(r.out);
    CAPTURE(r.err);
    REQUIRE(acted);
    CHECK(r.exit_code == 0);
    const std::string now = fs::canonical(moved).string();
    CHECK(contains(r.err, "the run folder " + run.string() + " was moved to " + now + " during the test evaluation"));
    CHECK(contains(r.out, "the run is saved in " + now + ";"));
    CHECK(contains(r.out, "generate --run " + now + " "));
    CHECK(!contains(r.out, run.string() + ";"));
    CHECK(!fs::exists(run));
    const std::vector<nlohmann::json> lines = read_jsonl((moved / "metrics.jsonl").string());
    REQUIRE(!lines.empty());
    CHECK(lines.back().value("step", int64_t(0)) == 2);
    CHECK(lines.back().contains("test_bpc"));
  }
  {
    // Removed: an error (exit 1) rather than "the run is saved in" a folder that is gone; nothing is made there.
    const fs::path run = d / "run2";
    bool acted = false;
    const test::CliRun r = finish_after(run, [&] { fs::remove_all(run), acted = true; });
    CAPTURE(r.out);
    CAPTURE(r.err);
    REQUIRE(acted);
    CHECK(r.exit_code == 1);
    CHECK(contains(r.err, "the run folder " + run.string() + " was removed during the test evaluation"));
    CHECK(contains(r.out, "test: loss"));  // the evaluation's figures are printed before the error
    CHECK(!contains(r.out, "the run is saved in"));
    CHECK(!fs::exists(run));
  }
}

TEST_CASE("run safety: write_file_atomic replaces only regular files, copy_file_atomic makes a file of its own") {
  TempDir d("atomic_kinds");
  REQUIRE(::mkfifo((d / "fifo").c_str(), 0644) == 0);
  fs::create_directories(d / "folder");
  for (const std::string& p : {d / "fifo", d / "folder"}) {
    INFO(p);
    CHECK_THROWS_WITH_AS(write_file_atomic(p, "x"), doctest::Contains("is not a regular file"), Error);
    CHECK(file_kind(p) != "a regular file");
  }
  CHECK(fs::is_fifo(d / "fifo"));  // refused without opening it (a FIFO with no reader would block)
  CHECK(fs::is_directory(d / "folder"));
  write_file_atomic(d / "new.txt", "one");
  CHECK(read_bytes(d / "new.txt") == "one");
  fs::create_hard_link(d / "new.txt", d / "link.txt");
  write_file_atomic(d / "link.txt", "two");  // the name gets a new file; the other link keeps its bytes
  CHECK(read_bytes(d / "new.txt") == "one");
  copy_file_atomic(d / "new.txt", d / "copy.txt");
  CHECK(read_bytes(d / "copy.txt") == "one");
  CHECK(fs::hard_link_count(d / "copy.txt") == 1);
  CHECK(fs::hard_link_count(d / "new.txt") == 1);
  { std::ofstream(d / "copy.txt", std::ios::binary | std::ios::in) << "ONE"; }  // written in place
  CHECK(read_bytes(d / "new.txt") == "one");
}
