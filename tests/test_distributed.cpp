// Data-parallel training (train/distributed.h): the bucketed gradient all-reduce, and the trainer run
// by mpirun on two ranks against one process. The cases that start mpirun need a build with MPI
// (-DMG_MPI) and print SKIPPED otherwise; the all-reduce case also runs as two ranks under mpirun,
// registered in CMakeLists.txt ("distributed.mpirun.*").
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <algorithm>
#include <filesystem>
#include <fstream>

#include "io/safetensors.h"
#include "cuda/nccl.h"
#include "ops/ops.h"
#include "tests/check.h"
#include "tests/cli.h"
#include "tests/devices.h"
#include "tests/run_cli.h"
#include "tests/trainer_fixture.h"
#include "train/checkpoint.h"
#include "train/distributed.h"
#include "train/run_folder.h"

using namespace mg;
namespace fs = std::filesystem;

namespace {

// On `device`, through `transport` (host: device gradients travel through host buffers; nccl: device
// buffers and ncclAllReduce).
void check_bucketed_allreduce(Device device, GradientTransport transport) {
  const World& world = World::get();  // a world of one, or of two under mpirun
  const int n = world.size(), rank = world.rank();
  // Parameters of several sizes (buckets of 64 bytes hold one to a few), one of them unused by the loss.
  const std::vector<int64_t> sizes = {3, 17, 1, 40, 8, 5, 16};
  std::vector<Tensor> params;
  for (size_t k = 0; k < sizes.size(); ++k) {
    std::vector<float> v((size_t)sizes[k]);
    for (size_t i = 0; i < v.size(); ++i) v[i] = 0.1f * (float)(k + 1) - 0.01f * (float)i;
    params.push_back(from_vector(v, Shape{sizes[k]}, device).requires_grad_());
  }
  const size_t unused = 4;
  // loss = sum_k sum_i w_k[i] * x_k[i] * (rank + 1) * c_k[i]: the gradient of w_k is x-independent,
  // (rank + 1) * c_k[i], so its sum over the ranks is n (n + 1) / 2 * c_k[i].
  auto coef = [](size_t k, int64_t i) { return 0.5 + 0.25 * (double)k + 0.125 * (double)(i % 3); };
  auto make_loss = [&] {
    Tensor loss;
    for (size_t k = 0; k < params.size(); ++k) {
      if (k == unused) continue;
      std::vector<float> c((size_t)sizes[k]);
      for (int64_t i = 0; i < sizes[k]; ++i) c[(size_t)i] = (float)(coef(k, i) * (rank + 1));
      Tensor term = sum(mul(params[k], from_vector(c, Shape{sizes[k]}, device)));
      loss = loss.defined() ? add(loss, term) : term;
    }
    return loss;
  };

  // The reference: this rank's gradients, flattened, summed in one all-reduce.
  make_loss().backward();
  std::vector<float> all;
  for (size_t k = 0; k < params.size(); ++k) {
    const Tensor g = params[k].grad().defined() ? params[k].grad().to(kCPU) : Tensor();
    for (int64_t i = 0; i < sizes[k]; ++i) all.push_back(g.defined() ? g.data<float>()[i] : 0.0f);
    params[k].zero_grad();
  }
  world.sum(all.data(), (int64_t)all.size());

  // scale 1/2: the sums come back through the reducer's buffers even in a world of one (where a sum is
  // the identity and gradients left untouched would pass).
  const double scale = 0.5;
  GradientReducer reducer(world, params, scale, /*bucket_bytes=*/64, transport);
  CHECK(reducer.transport() == transport);
  CHECK(reducer.num_buckets() >= 4);
  CHECK(reducer.bytes_per_step() == 4 * (int64_t)all.size());
  Tensor loss = make_loss();
  for (auto& p : params) p.zero_grad();
  reducer.begin();
  loss.backward();
  // The hooks started every bucket but the one holding only the unused parameter's, and the buckets
  // before that one, during backward.
  CHECK(reducer.started() >= 1);
  reducer.finish();
  size_t at = 0;
  for (size_t k = 0; k < params.size(); ++k) {
    REQUIRE(params[k].grad().defined());  // the unused parameter gets the (zero) sum too
    CHECK(params[k].grad().device() == device);
    const Tensor host = params[k].grad().to(kCPU);
    const float* g = host.data<float>();
    for (int64_t i = 0; i < sizes[k]; ++i, ++at) {
      const double expected = k == unused ? 0.0 : scale * coef(k, i) * n * (n + 1) / 2;
      CHECK(g[i] == doctest::Approx(expected).epsilon(1e-6));
      CHECK(g[i] == doctest::Approx(scale * all[at]).epsilon(1e-6));
    }
  }
  // The same sums on every rank, to the bit: in double the sum over the ranks of n floats is exact, and
  // equals n times this rank's value only if every rank holds the same value.
  std::vector<double> mine;
  for (auto& p : params) {
    const Tensor host = p.grad().to(kCPU);
    for (int64_t i = 0; i < p.numel(); ++i) mine.push_back(host.data<float>()[i]);
  }
  std::vector<double> summed = mine;
  world.sum(summed.data(), (int64_t)summed.size());
  int differing = 0;
  for (size_t i = 0; i < mine.size(); ++i) differing += summed[i] != n * mine[i];
  CHECK(differing == 0);

  // A second step through the same reducer: the buckets start again.
  for (auto& p : params) p.zero_grad();
  reducer.begin();
  make_loss().backward();
  reducer.finish();
  CHECK(params[0].grad().to(kCPU).data<float>()[0] ==
        doctest::Approx(scale * coef(0, 0) * n * (n + 1) / 2).epsilon(1e-6));
}

}  // namespace

TEST_CASE("distributed: bucketed all-reduce gives the sums of one all-reduce of everything") {
  check_bucketed_allreduce(kCPU, GradientTransport::host);
}

TEST_CASE("cuda distributed: bucketed all-reduce of device gradients (staged through the host)") {
  MG_REQUIRE_CUDA();
  check_bucketed_allreduce(kCUDA, GradientTransport::host);
}

// Also run as two ranks under mpirun when the build has NCCL (CMakeLists.txt:
// "cuda distributed.mpirun.nccl_bucketed_allreduce").
TEST_CASE("cuda distributed: bucketed NCCL all-reduce of device gradients gives the sums over the ranks") {
  MG_REQUIRE_CUDA();
  if (!cuda::built_with_nccl()) {
    std::printf("SKIPPED: this build has no NCCL (-DMG_NCCL, with CUDA and MPI)\n");
    return;
  }
  // One GPU per rank: the local rank's (the emulator has one device, which its ranks share).
  int device = 0;
#if !MG_CUDA_EMULATED
  const World& world = World::get();
  if (world.size() > cuda::device_count()) {
    std::printf("SKIPPED: %d ranks need as many GPUs for NCCL, this machine has %d\n", world.size(),
                cuda::device_count());
    return;
  }
  device = launch_from_environment().local_rank;
#endif
  check_bucketed_allreduce(Device(DeviceKind::cuda, device), GradientTransport::nccl);
#if MG_CUDA_EMULATED
  // The emulated ncclCommInitRank checks, as NCCL's bootstrap would by failing or hanging, that every rank
  // got the same id: each rank making its own is refused (with real NCCL this would hang, so not there).
  const World& world = World::get();
  if (world.size() > 1) {
    CHECK_THROWS_WITH(cuda::Communicator(cuda::nccl_unique_id(), world.size(), world.rank(), 0),
                      doctest::Contains("the ranks were given different ids"));
  }
#endif
}

TEST_CASE("distributed: the automatic gradient transport is NCCL exactly for CUDA parameters in a build with NCCL") {
  const World& world = World::get();
  Tensor cpu_param = zeros(Shape{4}).requires_grad_();
  CHECK(GradientReducer(world, {cpu_param}, 1.0).transport() == GradientTransport::host);
  // Asking for NCCL with CPU parameters is refused, naming what would work.
  try {
    GradientReducer r(world, {cpu_param}, 1.0, 4 << 20, GradientTransport::nccl);
    FAIL("the nccl transport took CPU parameters");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("needs every parameter on one CUDA device") != std::string::npos);
  }
  if (!test::cuda_available()) return;
  Tensor cuda_param = zeros(Shape{4}, DType::f32, kCUDA).requires_grad_();
  CHECK(GradientReducer(world, {cuda_param}, 1.0).transport() ==
        (cuda::built_with_nccl() ? GradientTransport::nccl : GradientTransport::host));
  if (!cuda::built_with_nccl()) {
    try {
      GradientReducer r(world, {cuda_param}, 1.0, 4 << 20, GradientTransport::nccl);
      FAIL("the nccl transport was made in a build without NCCL");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("needs a build with NCCL") != std::string::npos);
    }
  }
}

TEST_CASE("distributed: the launcher's environment gives the world size and rank") {
  // Read without MPI: what decides whether to initialise it.
  const LaunchInfo l = launch_from_environment();
  CHECK(l.size >= 1);
  CHECK(l.rank >= 0);
  CHECK(l.rank < l.size);
}

// What a build without MPI does under a launcher (tested end to end below, in such a build): in every build.
TEST_CASE("distributed: the refusal of a build without MPI names the rank, the launcher's variable and the rebuild") {
  LaunchInfo l;
  l.size = 2;
  l.rank = 1;
  l.source = "OMPI_COMM_WORLD_SIZE";
  std::string msg;
  try {
    refuse_launch_without_mpi(l);
  } catch (const std::exception& e) {
    msg = e.what();
  }
  CHECK(msg.find("rank 1 of 2") != std::string::npos);
  CHECK(msg.find("OMPI_COMM_WORLD_SIZE is set") != std::string::npos);
  CHECK(msg.find("built without MPI") != std::string::npos);
  CHECK(msg.find("-DMG_MPI=ON") != std::string::npos);
}

#ifdef MG_MPIEXEC
namespace {

// Runs mpirun with `tail` after its common options. Each mpirun gets a session folder of its own
// (orte_tmpdir_base): two mpiruns started at once under `ctest -j` race to create the shared /tmp/ompi.HOST.UID,
// and the loser fails with "mkdir ...: File exists".
test::CliRun run_mpirun(const std::vector<std::string>& tail, const std::vector<std::string>& env, int kill_after_ms) {
  static int runs = 0;
  const std::filesystem::path session =
      std::filesystem::temp_directory_path() / mg::format("mg-mpirun-{}-{}", ::getpid(), runs++);
  std::filesystem::create_directories(session);
  std::vector<std::string> a = {"--allow-run-as-root", "--oversubscribe", "--mca", "btl", "self,vader", "--mca",
                                "orte_tmpdir_base",    session.string()};
  a.insert(a.end(), tail.begin(), tail.end());
  test::CliRun r = test::run_program(MG_MPIEXEC, a, env, kill_after_ms);
  std::error_code ec;
  std::filesystem::remove_all(session, ec);
  return r;
}

test::CliRun mpirun(int ranks, const std::vector<std::string>& args, const std::vector<std::string>& env = {},
                    int kill_after_ms = 120000) {
  std::vector<std::string> tail = {"-np", std::to_string(ranks), MG_CLI_PATH};
  tail.insert(tail.end(), args.begin(), args.end());
  return run_mpirun(tail, env, kill_after_ms);
}

// A tiny model on the test text: 20 steps of global batch 8, validation and a checkpoint every 10; `extra`
// appended.
std::vector<std::string> tiny_args(const std::string& data, const std::string& out, int steps = 20,
                                   std::vector<std::string> extra = {}) {
  return test::tiny_train(data, out, steps,
                          {.batch = 8, .eval_every = 10, .eval_bytes = 4096, .warmup = 2, .extra = std::move(extra)});
}

std::vector<nlohmann::json> records_with(const std::string& metrics, const char* key) {
  std::vector<nlohmann::json> out;
  for (auto& j : read_jsonl(metrics))
    if (j.contains(key)) out.push_back(j);
  return out;
}

void check_same_losses(const std::string& a, const std::string& b, const char* key, size_t count) {
  auto ra = records_with(a, key), rb = records_with(b, key);
  REQUIRE(ra.size() == count);
  REQUIRE(rb.size() == count);
  for (size_t i = 0; i < count; ++i) {
    CAPTURE(key);
    CAPTURE(i);
    CHECK(ra[i]["step"] == rb[i]["step"]);
    const double x = ra[i][key].get<double>(), y = rb[i][key].get<double>();
    CHECK(std::abs(x - y) <= 1e-5 * std::abs(x));
  }
}

void check_same_weights(const std::string& a, const std::string& b) {
  auto wa = load_safetensors_map(a), wb = load_safetensors_map(b);
  REQUIRE(wa.size() == wb.size());
  REQUIRE(!wa.empty());
  double worst = 0;
  for (auto& [name, ta] : wa) {
    REQUIRE(wb.count(name));
    const Tensor& tb = wb.at(name);
    REQUIRE(ta.shape() == tb.shape());
    const float* x = ta.data<float>();
    const float* y = tb.data<float>();
    for (int64_t i = 0; i < ta.numel(); ++i)
      worst = std::max(worst, (double)std::abs(x[i] - y[i]) / (1e-3 + std::abs(x[i])));
  }
  CHECK(worst < 1e-4);
}

}  // namespace

TEST_CASE("distributed: 2 ranks with global batch 8 follow 1 process with batch 8 (losses, validation, weights)") {
  test::TempDir d("dist_follow");
  const std::string data = test::write_text(d, 60000, true);
  auto one = test::run_cli(tiny_args(data, d / "one"), {}, 120000);
  REQUIRE_MESSAGE(one.exit_code == 0, one.err);
  auto two = mpirun(2, tiny_args(data, d / "two"));
  REQUIRE_MESSAGE(two.exit_code == 0, (two.out + two.err));
  check_same_losses(d / "one/metrics.jsonl", d / "two/metrics.jsonl", "train_loss", 20);
  check_same_losses(d / "one/metrics.jsonl", d / "two/metrics.jsonl", "val_loss", 2);
  check_same_losses(d / "one/metrics.jsonl", d / "two/metrics.jsonl", "test_loss", 1);
  check_same_weights(d / "one/model.safetensors", d / "two/model.safetensors");
  // Rank 0 alone wrote: one line per step (two writers would double them) and one checkpoint.
  CHECK(test::train_losses(d / "two/metrics.jsonl").size() == 20);
  CHECK(find_checkpoint(d / "two")->step == 20);

  // Resumed: stopped after step 10 on 2 ranks, continued on 2 ranks, it ends where the run did.
  auto a = mpirun(2, tiny_args(data, d / "resumed", 20, {"--stop-at", "10"}));
  REQUIRE_MESSAGE(a.exit_code == 0, (a.out + a.err));
  CHECK(find_checkpoint(d / "resumed")->step == 10);
  auto b = mpirun(2, {"train", "--resume", d / "resumed", "--quiet", "--threads", "1"});
  REQUIRE_MESSAGE(b.exit_code == 0, (b.out + b.err));
  check_same_losses(d / "one/metrics.jsonl", d / "resumed/metrics.jsonl", "train_loss", 20);
  check_same_weights(d / "one/model.safetensors", d / "resumed/model.safetensors");
}

// `--device cuda` under mpirun is the local rank's GPU (apps/device_option.h). Under the emulator both
// ranks share its one device; on real GPUs NCCL refuses two ranks on one GPU.
TEST_CASE("cuda distributed: 2 CUDA ranks (NCCL when built) with global batch 8 follow 1 CUDA process") {
  MG_REQUIRE_CUDA();
#if !MG_CUDA_EMULATED
  if (cuda::built_with_nccl() && cuda::device_count() < 2) {
    std::printf("SKIPPED: two NCCL ranks need two GPUs, this machine has %d (or run under the emulator)\n",
                cuda::device_count());
    return;
  }
#endif
  test::TempDir d("dist_cuda_follow");
  const std::string data = test::write_text(d, 60000, true);
  auto args = [&](const std::string& out) { return tiny_args(data, out, 10, {"--device", "cuda"}); };
  auto one = test::run_cli(args(d / "one"), {}, 240000);
  REQUIRE_MESSAGE(one.exit_code == 0, one.err);
  auto two = mpirun(2, args(d / "two"), {}, 240000);
  REQUIRE_MESSAGE(two.exit_code == 0, (two.out + two.err));
  check_same_losses(d / "one/metrics.jsonl", d / "two/metrics.jsonl", "train_loss", 10);
  check_same_losses(d / "one/metrics.jsonl", d / "two/metrics.jsonl", "val_loss", 1);
  check_same_losses(d / "one/metrics.jsonl", d / "two/metrics.jsonl", "test_loss", 1);
  check_same_weights(d / "one/model.safetensors", d / "two/model.safetensors");
}

TEST_CASE("distributed: a killed rank ends the job with a non-zero status and a loadable checkpoint") {
  test::TempDir d("dist_kill");
  const std::string data = test::write_text(d, 60000, true);
  // Rank 1 dies (SIGKILL) after step 15: the checkpoint of step 10 is the last.
  const auto t0 = std::chrono::steady_clock::now();
  auto r = mpirun(2, tiny_args(data, d / "run", 40), {"MG_TEST_CRASH_AT=step:15", "MG_TEST_CRASH_RANK=1"}, 60000);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string output = r.out + r.err;
  CAPTURE(output);
  CHECK((r.exit_code != 0 || r.signal != 0));
  CHECK(r.signal != SIGKILL);  // mpirun ended by itself, not by our 60 s limit
  MESSAGE("the job ended " << seconds << " s after it started");
  auto ckpt = find_checkpoint(d / "run");
  REQUIRE(ckpt);
  CHECK(ckpt->step == 10);
  const LoadedCheckpoint loaded = read_checkpoint(*ckpt);
  CHECK(loaded.step == 10);
  CHECK(!loaded.model.empty());
  // And the run continues from it, here as one process (the global batch is the same).
  auto resumed =
      test::run_cli({"train", "--resume", d / "run", "--steps", "12", "--quiet", "--threads", "1"}, {}, 120000);
  CHECK_MESSAGE(resumed.exit_code == 0, resumed.err);
}

TEST_CASE("distributed: a stop signal on one rank stops every rank after the same step, with a checkpoint of it") {
  test::TempDir d("dist_stop");
  const std::string data = test::write_text(d, 60000, true);
  // Rank 1 alone gets SIGINT (as from Ctrl-C) after step 5; rank 0 learns it in the step's agreement.
  auto r = mpirun(2, tiny_args(data, d / "run", 40), {"MG_TEST_INTERRUPT_AT=step:5", "MG_TEST_CRASH_RANK=1"}, 60000);
  const std::string output = r.out + r.err;
  CAPTURE(output);
  CHECK(r.exit_code != 0);  // the ranks exit with 128 + the signal; mpirun reports a failure
  CHECK(r.signal == 0);
  auto ckpt = find_checkpoint(d / "run");
  REQUIRE(ckpt);
  CHECK(ckpt->step == 5);
  CHECK(test::train_losses(d / "run/metrics.jsonl").size() == 5);
}

TEST_CASE("distributed: a stop signal on one rank during validation or the final test stops every rank there") {
  test::TempDir d("dist_stop_eval");
  const std::string data = test::write_text(d, 60000, true);
  // Rank 1 alone gets SIGINT as the validation of step 10 starts: every rank stops within it (rather than
  // after the whole validation, which mpirun's SIGKILL would not wait for), and step 10 is saved without
  // val_bpc.
  auto v =
      mpirun(2, tiny_args(data, d / "val", 20), {"MG_TEST_INTERRUPT_AT=validation:1", "MG_TEST_CRASH_RANK=1"}, 60000);
  CAPTURE(v.out + v.err);
  CHECK(v.exit_code != 0);
  CHECK(v.signal == 0);
  auto ckpt = find_checkpoint(d / "val");
  REQUIRE(ckpt);
  CHECK(ckpt->step == 10);
  auto lines = read_jsonl(d / "val/metrics.jsonl");
  REQUIRE(!lines.empty());
  CHECK(lines.back()["step"] == 10);
  CHECK(!lines.back().contains("val_bpc"));
  CHECK(records_with(d / "val/metrics.jsonl", "val_bpc").empty());

  // In the final test: the job stops non-zero (it used to finish the test and exit 0), no test line is
  // logged, and the checkpoint of the last step is there.
  auto t = mpirun(2, tiny_args(data, d / "test", 10), {"MG_TEST_INTERRUPT_AT=test", "MG_TEST_CRASH_RANK=1"}, 60000);
  CAPTURE(t.out + t.err);
  CHECK(t.exit_code != 0);
  CHECK(t.signal == 0);
  REQUIRE(find_checkpoint(d / "test"));
  CHECK(find_checkpoint(d / "test")->step == 10);
  CHECK(records_with(d / "test/metrics.jsonl", "test_bpc").empty());
}

TEST_CASE("distributed: a batch not divisible by the ranks, or --carry-state, is refused before any file is written") {
  test::TempDir d("dist_batch");
  const std::string data = test::write_text(d, 60000, true);
  auto args = tiny_args(data, d / "run");
  args[14] = "7";  // --batch
  REQUIRE(args[13] == "--batch");
  auto r = mpirun(2, args);
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("--batch 7 is the global batch") != std::string::npos);
  CHECK(r.err.find("use a multiple of 2 (e.g. 6 or 8)") != std::string::npos);
  CHECK(!fs::exists(d / "run"));

  // --carry-state (each row a stream) is refused with more than one rank, as early.
  auto carry = tiny_args(data, d / "run");
  carry.push_back("--carry-state");
  auto c = mpirun(2, carry);
  CHECK(c.exit_code != 0);
  CHECK(c.err.find("--carry-state is not supported with 2 processes") != std::string::npos);
  CHECK(!fs::exists(d / "run"));
  // Resumed on 2 ranks, a run trained with it as one process: the message says the run has it (the user
  // did not pass --carry-state), and the run is left as it was.
  auto one = test::run_cli(tiny_args(data, d / "carried", 4, {"--carry-state"}), {}, 120000);
  REQUIRE_MESSAGE(one.exit_code == 0, one.err);
  const std::string metrics = mg::read_bytes(d / "carried/metrics.jsonl");
  auto rc = mpirun(2, {"train", "--resume", d / "carried", "--steps", "6", "--quiet", "--threads", "1"});
  CHECK(rc.exit_code != 0);
  CHECK(rc.err.find("[resume] --carry-state is not supported with 2 processes") != std::string::npos);
  CHECK(rc.err.find("was trained with it: resume it as one process") != std::string::npos);
  CHECK(mg::read_bytes(d / "carried/metrics.jsonl") == metrics);
}

namespace {

// `mpirun` with one process per command line (MPMD: "-np 1 A : -np 1 B"), each the mambagrad program.
test::CliRun mpirun_each(const std::vector<std::vector<std::string>>& lines, int kill_after_ms = 120000) {
  std::vector<std::string> tail;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) tail.push_back(":");
    tail.insert(tail.end(), {"-np", "1", MG_CLI_PATH});
    tail.insert(tail.end(), lines[i].begin(), lines[i].end());
  }
  return run_mpirun(tail, {}, kill_after_ms);
}

// The job ended by itself (not by the test's timer) with a failure and `expect` in its output.
void check_job_refused(const test::CliRun& r, const std::string& expect) {
  const std::string output = r.out + r.err;
  CAPTURE(output);
  CHECK(r.signal == 0);
  CHECK(r.exit_code != 0);
  CHECK(output.find(expect) != std::string::npos);
}

}  // namespace

TEST_CASE("distributed: ranks started with different options or data are refused, naming the option and both values") {
  test::TempDir d("dist_disagree");
  const std::string data = test::write_text(d, 60000, true);
  auto with = [&](std::vector<std::string> change, const std::string& data_path) {
    auto a = tiny_args(data_path, d / "run", 20);
    if (change.empty()) return a;
    auto at = std::find(a.begin(), a.end(), change[0]);
    if (at == a.end())
      a.insert(a.end(), change.begin(), change.end());
    else
      at[1] = change[1];
    return a;
  };
  const std::string other = d / "other.txt";
  fs::copy_file(data, other);
  { std::ofstream(other, std::ios::app) << "one more line"; }
  struct Case {
    std::vector<std::string> rank1;
    std::string data1, expect;
  };
  const std::vector<Case> cases = {
      {{"--steps", "10"}, data, "rank 1 has --steps 10, rank 0 has --steps 20"},
      {{"--lr", "0.002"}, data, "rank 1 has --lr 0.002, rank 0 has --lr 0.001"},
      {{"--eval-every", "5"}, data, "rank 1 has --eval-every 5, rank 0 has --eval-every 10"},
      {{}, other, "rank 1 has --data 60013 bytes with CRC-32"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.expect);
    auto r = mpirun_each({with({}, data), with(c.rank1, c.data1)}, 60000);
    check_job_refused(r, c.expect);
    CHECK((r.out + r.err).find("every rank must be started with the same options and data") == std::string::npos);
    CHECK((r.out + r.err).find("Every rank must be started with the same options and data") != std::string::npos);
    CHECK((r.out + r.err).find("MPI_ERR") == std::string::npos);
    CHECK(!fs::exists(d / "run/model.safetensors"));
  }
}

TEST_CASE("distributed: a rank that fails alone, before MPI or in its options, ends the job instead of hanging it") {
  test::TempDir d("dist_alone");
  const std::string data = test::write_text(d, 60000, true);
  // Rank 1's command line does not parse: it exits before MPI starts.
  check_job_refused(
      mpirun_each({tiny_args(data, d / "run"), tiny_args(data, d / "run", 20, {"--profile-steps", "abc"})}, 60000),
      "--profile-steps");
  // Rank 1's options are out of range: refused after MPI started, and agreed with rank 0.
  check_job_refused(
      mpirun_each({tiny_args(data, d / "run"), tiny_args(data, d / "run", 20, {"--stop-at", "99"})}, 60000),
      "--stop-at must be between 1 and --steps");
  CHECK(!fs::exists(d / "run/model.safetensors"));
}

TEST_CASE("distributed: resuming on a number of ranks that does not divide the run's batch names the ones that do") {
  test::TempDir d("dist_resume_ranks");
  const std::string data = test::write_text(d, 60000, true);
  REQUIRE(mpirun(2, tiny_args(data, d / "run", 20, {"--stop-at", "10"})).exit_code == 0);
  auto r = mpirun(3, {"train", "--resume", d / "run", "--quiet", "--threads", "1"}, {}, 60000);
  check_job_refused(r,
                    "has a global batch of 8, fixed by the run, which 3 processes cannot split evenly: resume it on "
                    "a number of processes that divides 8 (1, 2, 4 or 8)");
  CHECK((r.out + r.err).find("use a multiple of 3") == std::string::npos);
  CHECK(find_checkpoint(d / "run")->step == 10);
}

#else
TEST_CASE("distributed: mpirun runs of the trainer") {
  std::printf("SKIPPED: this build has no MPI (-DMG_MPI=OFF or Open MPI not found)\n");
}
#endif

TEST_CASE("distributed: a build without MPI started as one of several processes refuses to train") {
  if (mpi_built()) {
    // With MPI the variable alone would make the program initialise MPI without a launcher.
    std::printf("SKIPPED: this build has MPI; mpirun itself is tested above\n");
    return;
  }
  test::TempDir d("dist_nompi");
  const std::string data = test::write_text(d, 20000);
  auto r = test::run_cli({"train", "--data", data, "--out", d / "run", "--preset", "tiny", "--steps", "2", "--quiet"},
                         {"OMPI_COMM_WORLD_SIZE=2", "OMPI_COMM_WORLD_RANK=1"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("rank 1 of 2") != std::string::npos);
  CHECK(r.err.find("built without MPI") != std::string::npos);
  CHECK(r.err.find("-DMG_MPI=ON") != std::string::npos);
  CHECK(!fs::exists(d / "run"));
}
