// Inputs that are not what they claim or are too large for the machine: data paths that are FIFOs,
// devices or folders; sizes in config.json or on the command line that no memory holds; gzip bombs;
// config.json fields this implementation does not support; benchmark options out of range; messages
// that name the option a user typed. Most cases run the `mambagrad` program as a child process
// (tests/cli.h), as a user would, with a kill timer so that a blocking open shows as a failure.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <zlib.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/memory_limit.h"
#include "data/bytes.h"
#include "models/mamba.h"
#include "tests/cli.h"
#include "tests/temp_dir.h"
#include "tests/trainer_fixture.h"

using namespace mg;
using test::run_cli;
using test::TempDir;
using test::write_text;
namespace fs = std::filesystem;

namespace {

constexpr int kKillMs = 60000;  // a child still running after this was blocked: the case fails

std::vector<std::string> tiny_train(const std::string& data, const std::string& out) {
  return {"train", "--data",       data,  "--out",     out, "--preset", "tiny", "--d-model",    "32", "--n-layer",
          "1",     "--steps",      "2",   "--batch",   "4", "--seq",    "32",   "--eval-every", "1",  "--eval-bytes",
          "512",   "--test-bytes", "512", "--threads", "1", "--quiet"};
}

// A child that ended by itself with an error (not killed by the timer, no crash) whose message holds
// every part of `expect`.
void check_refused(const test::CliRun& r, const std::vector<std::string>& expect) {
  INFO(r.err);
  CHECK(r.signal == 0);
  CHECK(r.exit_code == 1);
  for (const auto& e : expect) CHECK_MESSAGE(r.err.find(e) != std::string::npos, e);
  CHECK(r.err.find("bad_alloc") == std::string::npos);
}

// A run folder with a config.json changed by `edit` and a model file that is never read (the
// config is refused first).
std::string run_with_config(const TempDir& d, const std::function<void(nlohmann::json&)>& edit) {
  const std::string dir = d / "hf";
  fs::create_directories(dir);
  nlohmann::json j = nlohmann::json::parse(MambaConfig::preset("tiny").to_json());
  edit(j);
  std::ofstream(dir + "/config.json") << j.dump(2);
  std::ofstream(dir + "/model.safetensors") << "never read";
  return dir;
}

std::string config_error(const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json j = nlohmann::json::parse(MambaConfig::preset("tiny").to_json());
  edit(j);
  try {
    MambaConfig::from_json(j.dump(), "x/config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "(loaded)";
}

// A gzip file of `n` zero bytes, written in pieces (a few hundred bytes per megabyte).
std::string write_gzip_zeros(const std::string& path, size_t n) {
  gzFile f = gzopen(path.c_str(), "wb9");
  REQUIRE(f);
  std::vector<char> zeros(1 << 20, 0);
  for (size_t done = 0; done < n; done += zeros.size())
    REQUIRE(gzwrite(f, zeros.data(), (unsigned)std::min(zeros.size(), n - done)) > 0);
  REQUIRE(gzclose(f) == Z_OK);
  return path;
}

}  // namespace

TEST_CASE("input limits: a FIFO, a device or a folder as --data or --input is refused at once, naming the option") {
  TempDir d("limits_kinds");
  const std::string fifo = d / "fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);  // no writer: an open for reading would block forever
  for (const auto& [path, kind] :
       std::vector<std::pair<std::string, std::string>>{{fifo, "is a FIFO (named pipe)"},
                                                        {"/dev/zero", "is a character device"},
                                                        {d.path.string(), "is a directory"}}) {
    CAPTURE(path);
    auto t = run_cli(tiny_train(path, d / "run"), {}, kKillMs);
    check_refused(t, {kind, "--data must be a regular file"});
    CHECK(!fs::exists(d / "run"));
    auto l = run_cli({"logits", "--run", d / "nowhere", "--input", path, "--out", d / "l.safetensors"}, {}, kKillMs);
    CHECK(l.exit_code != 0);
    CHECK(l.signal == 0);
    CHECK(!fs::exists(d / "l.safetensors"));
  }
  // logits reads its --input after the model: a real run shows the --input message.
  const std::string data = write_text(d, 30000);
  REQUIRE(run_cli(tiny_train(data, d / "run"), {}, kKillMs).exit_code == 0);
  auto l = run_cli({"logits", "--run", d / "run", "--input", "/dev/zero", "--out", d / "l.safetensors"}, {}, kKillMs);
  check_refused(l, {"is a character device", "--input must be a regular file"});
  auto f = run_cli({"logits", "--run", d / "run", "--input", fifo, "--out", d / "l.safetensors"}, {}, kKillMs);
  check_refused(f, {"is a FIFO", "--input must be a regular file"});

  // The run's data replaced by a FIFO: eval and resume refuse it instead of blocking.
  fs::remove(data);
  REQUIRE(::mkfifo(data.c_str(), 0600) == 0);
  check_refused(run_cli({"eval", "--run", d / "run", "--threads", "1"}, {}, kKillMs), {"is a FIFO", "--data"});
  check_refused(run_cli({"train", "--resume", d / "run", "--steps", "3", "--quiet", "--threads", "1"}, {}, kKillMs),
                {"is a FIFO", "--data"});
}

TEST_CASE("input limits: a FIFO as a run's config.json, model file or run.json is refused at once, naming it") {
  TempDir d("limits_run_fifo");
  // A model folder whose config.json, then whose model file, is a FIFO with no writer.
  for (const std::string name : {"config.json", "model.safetensors"}) {
    CAPTURE(name);
    const std::string dir = run_with_config(d, [](nlohmann::json&) {});
    fs::remove(dir + "/" + name);
    REQUIRE(::mkfifo((dir + "/" + name).c_str(), 0600) == 0);
    check_refused(run_cli({"generate", "--run", dir}, {}, kKillMs),
                  {"'" + dir + "/" + name + "' is a FIFO (named pipe), not a regular file"});
    fs::remove_all(dir);
  }
  // A run that stopped before its first checkpoint, whose run.json is a FIFO: resuming it reads run.json.
  const std::string run = d / "run";
  fs::create_directories(run);
  REQUIRE(::mkfifo((run + "/run.json").c_str(), 0600) == 0);
  check_refused(run_cli({"train", "--resume", run, "--steps", "3", "--quiet", "--threads", "1"}, {}, kKillMs),
                {"'" + run + "/run.json' is a FIFO (named pipe), not a regular file"});
}

TEST_CASE("input limits: data larger than the memory bound, and a gzip bomb, are refused naming the file") {
  TempDir d("limits_data");
  const std::string data = write_text(d, 3 << 20);  // 3 MiB of text
  auto big = run_cli(tiny_train(data, d / "run"), {"MG_MEMORY_LIMIT=2097152"}, kKillMs);
  check_refused(big, {"[data] '" + data + "' (3145728 bytes) needs 3 MiB, more than this machine's memory (2 MiB)"});
  CHECK(!fs::exists(d / "run"));

  // 64 MiB of zeros in about 64 KiB of gzip, against a bound of 16 MiB: stopped while decoding.
  const std::string bomb = write_gzip_zeros(d / "bomb.gz", size_t(64) << 20);
  CHECK(fs::file_size(bomb) < (1 << 20));
  auto b = run_cli(tiny_train(bomb, d / "run"), {"MG_MEMORY_LIMIT=16777216"}, kKillMs);
  check_refused(b, {"gzip file '" + bomb + "' decompresses to more than this machine's memory (16 MiB)"});
  CHECK(!fs::exists(d / "run"));
}

TEST_CASE("input limits: a model too large for the memory is refused from config.json or --n-layer") {
  TempDir d("limits_model");
  const std::string dir = run_with_config(d, [](nlohmann::json& j) { j["num_hidden_layers"] = 1000000000; });
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"generate", "--run", dir}, {"eval", "--run", dir, "--data", d / "x"}}) {
    auto r = run_cli(args, {}, kKillMs);
    check_refused(r, {dir + "/config.json", "num_hidden_layers 1000000000", "more than this machine's memory"});
  }
  const std::string data = write_text(d, 30000);
  auto t =
      run_cli({"train", "--data", data, "--out", d / "run", "--preset", "tiny", "--n-layer", "1000000000", "--quiet"},
              {}, kKillMs);
  check_refused(t, {"[train] a model of", "--n-layer 1000000000", "more than this machine's memory",
                    "use a smaller model, --batch or --seq"});
  CHECK(!fs::exists(d / "run"));
  // The bound is the machine's memory, not a constant: a tiny model fits, and a lowered bound refuses it.
  CHECK(memory_limit_bytes() >= (uint64_t(64) << 20));
  auto low = run_cli(tiny_train(data, d / "run"), {"MG_MEMORY_LIMIT=100000"}, kKillMs);
  check_refused(low, {"more than this machine's memory (97.7 KiB)"});
}

TEST_CASE("input limits: config.json sizes must be integers in range and the epsilon finite in float32") {
  auto set = [](const char* key, nlohmann::json v) { return [=](nlohmann::json& j) { j[key] = v; }; };
  const std::string range = "must be an integer from 1 to 2147483647";
  CHECK(config_error(set("hidden_size", 64.5)) == "[config] \"hidden_size\" in x/config.json " + range + ", got 64.5");
  CHECK(config_error(set("hidden_size", uint64_t(1) << 63)) ==
        "[config] \"hidden_size\" in x/config.json " + range + ", got 9223372036854775808");
  CHECK(config_error(set("num_hidden_layers", -3)).find("\"num_hidden_layers\" in x/config.json " + range) !=
        std::string::npos);
  CHECK(config_error(set("state_size", "16")).find("\"state_size\" in x/config.json " + range + ", got \"16\"") !=
        std::string::npos);
  CHECK(config_error(set("conv_kernel", true)).find(range) != std::string::npos);
  for (double eps : {1e300, 1e-50, 0.0, -1e-5, 1.0}) {
    CAPTURE(eps);
    CHECK(config_error(set("layer_norm_epsilon", eps))
              .find("\"layer_norm_epsilon\" in x/config.json must be a number "
                    "between 0 and 1 (exclusive) that float32 holds") != std::string::npos);
  }
  CHECK(config_error(set("hidden_size", 64.0)) == "(loaded)");  // an integer written as a float
  CHECK(config_error(set("layer_norm_epsilon", 1e-6)) == "(loaded)");
}

TEST_CASE("input limits: config.json fields this implementation does not support are refused by name") {
  auto set = [](const char* key, nlohmann::json v) { return [=](nlohmann::json& j) { j[key] = v; }; };
  const std::vector<std::tuple<const char*, nlohmann::json, std::string>> cases = {
      {"use_bias", true, "it supports only false (in_proj and out_proj without bias)"},
      {"use_conv_bias", false, "it supports only true (the depthwise conv with a bias)"},
      {"tie_word_embeddings", false, "it supports only true (the LM head tied to the embeddings)"},
      {"model_type", "llama", "it supports only \"mamba\" (a Mamba model)"},
      {"hidden_act", "gelu", "it supports only \"silu\" (SiLU activations)"},
  };
  for (const auto& [key, value, expect] : cases) {
    CAPTURE(key);
    const std::string e = config_error(set(key, value));
    CHECK(e.find(mg::format("\"{}\" in x/config.json is {}, which this implementation does not support", key,
                            value.dump())) != std::string::npos);
    CHECK(e.find(expect) != std::string::npos);
  }
  CHECK(config_error(set("intermediate_size", 100)).find("supports only intermediate_size = expand * hidden_size") !=
        std::string::npos);
  // Hugging Face's own spelling of the defaults loads: the supported values, "auto" rank, extra fields.
  CHECK(config_error([](nlohmann::json& j) {
          j["time_step_rank"] = "auto", j["hidden_act"] = "silu", j["use_cache"] = true, j["time_step_scale"] = 1.0;
          j["intermediate_size"] = 128;
        }) == "(loaded)");
  // And the command line says the same for a run folder holding such a config.
  TempDir d("limits_fields");
  auto r = run_cli({"generate", "--run", run_with_config(d, set("use_conv_bias", false))}, {}, kKillMs);
  check_refused(r, {"\"use_conv_bias\"", "does not support"});
}

TEST_CASE("input limits: bench options out of range are errors naming the option") {
  for (const auto& args : std::vector<std::vector<std::string>>{{"bench", "scan", "--quick", "--reps", "0"},
                                                                {"bench", "scan", "--quick", "--reps", "-1"},
                                                                {"bench", "matmul", "--quick", "--reps", "0"}}) {
    auto r = run_cli(args, {}, kKillMs);
    INFO(r.err);
    CHECK(r.signal == 0);
    CHECK(r.exit_code != 0);
    CHECK(r.err.find("--reps: must be an integer from 1 to 1000000, got '" + args[4] + "'") != std::string::npos);
    CHECK(r.out.find("best of") == std::string::npos);
  }
  auto s = run_cli({"bench", "train", "--steps", "0"}, {}, kKillMs);
  CHECK(s.exit_code != 0);
  CHECK(s.err.find("--steps: must be an integer from 1 to 1000000") != std::string::npos);
  CHECK(run_cli({"bench", "scan", "--ref-steps", "-4"}, {}, kKillMs).err.find("--ref-steps: must be a non-negative") !=
        std::string::npos);
}

TEST_CASE("input limits: an option of another benchmark is an error naming it and where it belongs") {
  TempDir d("limits_bench_options");
  const std::string trace = d / "trace.json";
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const Case cases[] = {
      {{"bench", "conv", "--preset", "base"}, "[bench conv] --preset is an option of bench train and generate"},
      {{"bench", "conv", "--profile", trace}, "[bench conv] --profile is an option of bench train, not of bench conv"},
      {{"bench", "scan", "--quick", "--steps", "3"}, "[bench scan] --steps is an option of bench train"},
      {{"bench", "generate", "--reps", "2"}, "[bench generate] --reps is an option of bench scan, matmul and conv"},
  };
  for (const Case& c : cases) {
    auto r = run_cli(c.args, {}, kKillMs);
    check_refused(r, {c.message});
    CHECK(r.out.empty());  // refused before any benchmark ran
  }
  CHECK(!fs::exists(trace));
}

TEST_CASE("input limits: --eval-bytes and eval --bytes shorter than a window name the option and its minimum") {
  TempDir d("limits_window");
  const std::string data = write_text(d, 30000);
  auto args = tiny_train(data, d / "run");
  args[20] = "1";  // --eval-bytes
  REQUIRE(args[19] == "--eval-bytes");
  auto r = run_cli(args, {}, kKillMs);
  check_refused(r, {"--eval-bytes 1 is shorter than one window of --seq 32 + 1 bytes: use at least 33"});
  CHECK(r.err.find("max_bytes") == std::string::npos);
  CHECK(r.err.find("seq_len") == std::string::npos);
  CHECK(!fs::exists(d / "run"));

  REQUIRE(run_cli(tiny_train(data, d / "run"), {}, kKillMs).exit_code == 0);
  auto e = run_cli({"eval", "--run", d / "run", "--bytes", "10"}, {}, kKillMs);
  check_refused(e, {"--bytes 10 is shorter than one window of --seq 32 + 1 bytes (the run's): use at least 33"});
  CHECK(e.err.find("smaller --seq") == std::string::npos);  // the run's window: not the user's to shrink
  // A --seq of the user's own: a smaller one is a way out too.
  auto s = run_cli({"eval", "--run", d / "run", "--bytes", "39", "--seq", "39"}, {}, kKillMs);
  check_refused(s, {"--bytes 39 is shorter than one window of --seq 39 + 1 bytes: use at least 40, or -1 (the whole "
                    "split), or a smaller --seq"});
  // A window longer than the split: no --bytes helps (not even -1), so the message gives the largest --seq
  // instead. The test split of 30000 bytes is its last 1500: checked from the size the run records,
  // before the file is read, and again on the bytes read when --data names the file.
  for (const std::string bytes : {"1000", "-1"}) {
    CAPTURE(bytes);
    auto w = run_cli({"eval", "--run", d / "run", "--bytes", bytes, "--seq", "999999999"}, {}, kKillMs);
    check_refused(w, {"[eval] the test split of " + data +
                      " has 1500 bytes, shorter than one window of --seq "
                      "999999999 + 1 bytes: pass --seq at most 1499"});
    CHECK(w.err.find("-1 (the whole split)") == std::string::npos);
  }
  auto f = run_cli({"eval", "--run", d / "run", "--bytes", "-1", "--seq", "1500", "--data", data}, {}, kKillMs);
  check_refused(f, {"[eval] the test split of " + data +
                    " has 1500 bytes, shorter than one window of --seq 1500 + "
                    "1 bytes: pass --seq at most 1499"});
  auto v = run_cli({"eval", "--run", d / "run", "--split", "validation", "--seq", "1499"}, {}, kKillMs);
  CHECK_MESSAGE(v.exit_code == 0, v.err);  // 1500 bytes hold one window of 1499 + 1
}

TEST_CASE("input limits: eval and resume after the run's data file moved ask for --data with the recorded path") {
  TempDir d("limits_moved");
  const std::string data = write_text(d, 30000);
  REQUIRE(run_cli(tiny_train(data, d / "run"), {}, kKillMs).exit_code == 0);
  fs::rename(data, d / "moved.txt");
  const std::string expect = "the run's data file '" + data +
                             "' does not exist (moved or deleted?): pass --data <path "
                             "to the moved file>";
  auto e = run_cli({"eval", "--run", d / "run", "--threads", "1"}, {}, kKillMs);
  check_refused(e, {"[eval] " + expect});
  CHECK(e.err.find("download") == std::string::npos);
  auto t = run_cli({"train", "--resume", d / "run", "--steps", "3", "--quiet", "--threads", "1"}, {}, kKillMs);
  check_refused(t, {"[resume] " + expect});
  // With --data naming the moved file, both go on.
  CHECK(run_cli({"eval", "--run", d / "run", "--data", d / "moved.txt", "--threads", "1"}, {}, kKillMs).exit_code == 0);
}

TEST_CASE("input limits: generate, logits and eval bound what their options ask for against the memory") {
  TempDir d("limits_batches");
  const std::string data = write_text(d, 30000);
  REQUIRE(run_cli(tiny_train(data, d / "run"), {}, kKillMs).exit_code == 0);
  check_refused(
      run_cli({"generate", "--run", d / "run", "--num-samples", "1000000000", "--bytes", "1000000"}, {}, kKillMs),
      {"[generate] --num-samples 1000000000 x (--bytes 1000000 + a prompt of 1 bytes), with their states "
       "needs",
       "more than this machine's memory", "use a smaller --num-samples or --bytes"});
  // --bytes plus the prompt's length past 2^63 once wrapped and passed the bound (and sampled without end).
  check_refused(run_cli({"generate", "--run", d / "run", "--num-samples", "3", "--prompt", "0123456789", "--bytes",
                         "9223372036854775800"},
                        {}, kKillMs),
                {"[generate] --num-samples 3 x (--bytes 9223372036854775800 + a prompt of 10 bytes)",
                 "more than this machine's memory"});
  // One continuation streams: its text is not kept, so a long one is not bounded by the memory.
  auto streamed = run_cli({"generate", "--run", d / "run", "--bytes", "30000000000"}, {}, 2000);
  CHECK(streamed.signal != 0);  // still sampling when the test's limit stopped it
  CHECK(streamed.err.find("memory") == std::string::npos);
  // Continuation i uses seed + i: past 2^64 - 1 it would wrap to seed 0.
  check_refused(
      run_cli({"generate", "--run", d / "run", "--seed", "18446744073709551615", "--num-samples", "2"}, {}, kKillMs),
      {"[generate] --seed 18446744073709551615 with --num-samples 2",
       "use a --seed of at most "
       "18446744073709551614"});
  check_refused(
      run_cli({"logits", "--run", d / "run", "--input", data, "--out", d / "l.safetensors", "--bytes", "100000000000"},
              {}, kKillMs),
      {"[logits] the forward over --bytes 100000000000 (logits of (1, 100000000000, 256) float32) needs",
       "use a smaller --bytes"});
  CHECK(!fs::exists(d / "l.safetensors"));
  check_refused(
      run_cli({"eval", "--run", d / "run", "--batch", "100000", "--seq", "32"}, {"MG_MEMORY_LIMIT=150000000"}, kKillMs),
      {"[eval] a batch of --batch 100000 x --seq 32 tokens needs", "more than this machine's memory (143 MiB)"});
}

TEST_CASE("input limits: under an address-space limit (ulimit -v) a large run is refused by the bound, not bad_alloc") {
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer reserves terabytes of address space for its shadow memory: under any such limit the
  // program cannot start. The bound itself is tested above through MG_MEMORY_LIMIT.
  std::printf("SKIPPED: an address-space limit and AddressSanitizer cannot run together\n");
  return;
#endif
  TempDir d("limits_rlimit");
  const std::string data = write_text(d, 30000);
  // 1 GiB of address space: the program runs, but a base model on --batch 64 x --seq 4096 does not fit.
  auto r = test::run_program(
      "/bin/sh",
      {"-c", std::string("ulimit -v 1048576 && exec ") + MG_CLI_PATH + " train --data " + data + " --out " +
                 (d / "run") + " --preset base --batch 64 --seq 4096 --quiet --threads 1"},
      {}, kKillMs);
  check_refused(r, {"[train] a model of", "more than this machine's memory (1 GiB)"});
  CHECK(!fs::exists(d / "run"));
}

TEST_CASE("input limits: empty paths, seeds out of range and outputs into missing folders are refused by name first") {
  TempDir d("limits_empty");
  const std::string data = write_text(d, 30000);
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const Case cases[] = {
      {{"gradcheck", "--op", ""}, "--op: must name an op, got ''"},
      {{"gradcheck", "--seed", "-1"}, "--seed: must be an integer from 0 to 18446744073709551615, got '-1'"},
      {{"graph", "--seed", "99999999999999999999999", "--out", d / "g.dot"}, "which is out of the 64-bit range"},
      {{"train", "--data", data, "--out", d / "run", "--profile", ""}, "--profile: must name a file for the trace"},
      {{"train", "--data", "", "--out", d / "run"}, "--data: must name a byte file, got ''"},
      {{"eval", "--run", d / "run", "--data", ""}, "--data: must name a byte file, got ''"},
      {{"bench", "train", "--data", ""}, "--data: must name a byte file, got ''"},
  };
  for (const Case& c : cases) {
    auto r = run_cli(c.args, {}, kKillMs);
    INFO(r.err);
    CHECK(r.signal == 0);
    CHECK(r.exit_code != 0);
    CHECK_MESSAGE(r.err.find(c.message) != std::string::npos, c.message);
  }
  CHECK(!fs::exists(d / "run"));
  CHECK(!fs::exists(d / "g.dot"));

  // An output in a folder that does not exist is refused before the work (the forward of logits), naming
  // the option; a run folder that cannot be made names --out; a missing --input gets no enwik8 hint.
  check_refused(run_cli({"graph", "--out", d / "missing/g.dot"}, {}, kKillMs),
                {"[graph] --out " + (d / "missing/g.dot") + ": the folder " + (d / "missing") + " does not exist"});
  REQUIRE(run_cli(tiny_train(data, d / "run"), {}, kKillMs).exit_code == 0);
  check_refused(
      run_cli({"logits", "--run", d / "run", "--input", data, "--out", d / "missing/l.safetensors"}, {}, kKillMs),
      {"[logits] --out", "does not exist"});
  auto in =
      run_cli({"logits", "--run", d / "run", "--input", d / "nope.txt", "--out", d / "l.safetensors"}, {}, kKillMs);
  check_refused(in, {"[data] --input '" + (d / "nope.txt") + "' does not exist"});
  CHECK(in.err.find("enwik8") == std::string::npos);
  std::ofstream(d / "a-file") << "x";
  check_refused(run_cli({"train", "--data", data, "--out", d / "a-file/run", "--steps", "1"}, {}, kKillMs),
                {"[train] cannot create the run folder " + (d / "a-file/run") + " (--out)"});
  check_refused(run_cli({"graph", "--out", d / "a-file/g.dot"}, {}, kKillMs),
                {"[graph] --out " + (d / "a-file/g.dot") + ": " + (d / "a-file") + " is a regular file, not a folder"});
  // A user's folder with a checkpoint.json of its own is not a checkpoint: outputs may go there.
  fs::create_directories(d / "mine");
  std::ofstream(d / "mine/checkpoint.json") << "{}";
  auto g = run_cli({"graph", "--out", d / "mine/g.dot"}, {}, kKillMs);
  CHECK_MESSAGE(g.exit_code == 0, g.err);
}
