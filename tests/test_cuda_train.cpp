// Training on CUDA: AdamW and gradient clipping on the GPU against the CPU optimizer, the whole model
// on the GPU against the PyTorch fixture, the tiny preset trained on CUDA tracking the CPU run,
// checkpoints moving between devices. Every case that needs a GPU starts with MG_REQUIRE_CUDA() and
// shows as skipped on a machine without one. The CPU-only cases at the end check the device plumbing
// that runs everywhere: Module::to, the --device check, the composed recurrent step CUDA uses, and
// the optimizer's chunk tables.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/optim.h"
#include "data/bytes.h"
#include "data/dataset.h"
#include "cuda/runtime.h"
#include "models/mamba.h"
#include "ops/ops.h"
#include "tests/temp_dir.h"
#include "tests/trainer_fixture.h"
#include "tests/check.h"
#include "tests/devices.h"
#include "tests/mamba_fixture.h"
#include "train/metrics.h"
#include "train/optim.h"
#include "io/safetensors.h"
#include "train/train_step.h"
#include "train/trainer.h"

using namespace mg;
using test::TempDir;
using test::tiny_options;
using test::train_losses;
namespace fs = std::filesystem;

namespace {

bool bit_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  Tensor ca = contiguous(a.detach().to(kCPU)), cb = contiguous(b.detach().to(kCPU));
  return std::memcmp(ca.raw_data(), cb.raw_data(), ca.nbytes()) == 0;
}

// Parameters of awkward sizes: one crossing several kernel chunks (cuda::kOptimChunk = 32768), odd
// sizes, a single element. Values and gradients are fresh random numbers (never zeros).
const std::vector<Shape> kParamShapes = {{3, 5}, {1}, {70001}, {256, 130}, {7}, {33, 1025}};

std::vector<ParamGroup> make_groups(Device device, DType dtype, uint64_t seed, double decay) {
  Generator gen(seed);
  std::vector<ParamGroup> groups(2);
  groups[0].weight_decay = decay;
  for (size_t i = 0; i < kParamShapes.size(); ++i) {
    Tensor p = randn(kParamShapes[i], dtype, &gen).to(device);
    p.requires_grad_();
    groups[i % 2].params.push_back({mg::format("p{}", i), p});
  }
  return groups;
}

std::vector<Tensor> params_of(const std::vector<ParamGroup>& groups) {
  std::vector<Tensor> ps;
  for (auto& g : groups)
    for (auto& [name, p] : g.params) ps.push_back(p);
  return ps;
}

// `after` holds the parameters of `before`, in order: the same names and tensors, still leaves that
// require grad.
void check_same_parameters(const std::vector<NamedParam>& before, const std::vector<NamedParam>& after) {
  REQUIRE(after.size() == before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    INFO(before[i].name);
    CHECK(after[i].name == before[i].name);
    CHECK(after[i].tensor.is_same(before[i].tensor));
    CHECK(after[i].tensor.requires_grad());
    CHECK(after[i].tensor.is_leaf());
  }
}

TrainOptions tiny_run(const std::string& data, const std::string& out, Device device) {
  return tiny_options(data, out,
                      {.steps = 300,
                       .batch = 8,
                       .seq = 64,
                       .warmup = 30,
                       .eval_every = 0,
                       .eval_bytes = 8192,
                       .preset_sizes = true,
                       .device = device});
}

}  // namespace

// ---------------------------------------------------------------- CUDA: optimizer

TEST_CASE(
    "cuda adamw: several steps match the CPU AdamW (float32 and float64, with and without decay, with clipping)") {
  MG_REQUIRE_CUDA();
  for (DType dtype : {DType::f32, DType::f64})
    for (double decay : {0.0, 0.1})
      for (bool clip : {false, true}) {
        INFO(dtype_name(dtype) << ", weight decay " << decay << (clip ? ", clipped at 1.0" : ", no clipping"));
        auto cpu_groups = make_groups(kCPU, dtype, 11, decay), gpu_groups = make_groups(kCUDA, dtype, 11, decay);
        AdamW cpu_opt(cpu_groups, 1e-2), gpu_opt(gpu_groups, 1e-2);
        auto cpu_ps = params_of(cpu_groups), gpu_ps = params_of(gpu_groups);
        Generator gg(99);
        for (int step = 0; step < 6; ++step) {
          for (size_t i = 0; i < cpu_ps.size(); ++i) {
            if (step == 2 && i == 1) {  // a parameter without a gradient this step is left alone on both
              cpu_ps[i].zero_grad();
              gpu_ps[i].zero_grad();
              continue;
            }
            Tensor g = randn(cpu_ps[i].shape(), dtype, &gg, 0.0, 0.05);  // global norm ~ 8: clipping scales it
            cpu_ps[i].set_grad(g);
            gpu_ps[i].set_grad(g.to(kCUDA));
          }
          if (clip) {
            const double n_cpu = clip_grad_norm(cpu_groups, 1.0), n_gpu = clip_grad_norm(gpu_groups, 1.0);
            INFO("step " << step << ": norm " << n_cpu << " (cpu) vs " << n_gpu << " (cuda)");
            CHECK(n_cpu > 1.0);
            CHECK(std::abs(n_cpu - n_gpu) <= 1e-12 * n_cpu);
            for (size_t i = 0; i < cpu_ps.size(); ++i)
              if (cpu_ps[i].grad().defined())
                CHECK(check_close(gpu_ps[i].grad().to(kCPU), cpu_ps[i].grad(), 0, dtype == DType::f32 ? 1e-6 : 1e-14,
                                  mg::format("clipped grad {}", i)));
          }
          const double lr = 1e-2 * (1.0 + step) / 6.0;
          cpu_opt.set_lr(lr), gpu_opt.set_lr(lr);
          cpu_opt.step();
          gpu_opt.step();
        }
        // float32: the same expressions in the same order, up to contraction into FMAs and 1-ulp
        // differences; after 6 steps of size ~1e-2 that is ~1e-7 of each value. A wrong formula
        // (bias correction, decay, eps placement) is off by 1e-4 or more.
        const double atol = dtype == DType::f32 ? 2e-6 : 1e-12, rtol = dtype == DType::f32 ? 1e-5 : 1e-10;
        auto cpu_state = cpu_opt.state_tensors(), gpu_state = gpu_opt.state_tensors();
        for (size_t i = 0; i < cpu_ps.size(); ++i)
          CHECK(check_close(gpu_ps[i].to(kCPU), cpu_ps[i].detach(), atol, rtol, mg::format("param {}", i)));
        for (size_t i = 0; i < cpu_state.size(); ++i)
          CHECK(check_close(gpu_state[i].second.to(kCPU), cpu_state[i].second, atol, rtol, cpu_state[i].first));
        CHECK(gpu_state[0].second.device() == kCUDA);  // the state lives beside the parameters
        // and the update did something: the parameters moved away from their initial values
        auto init = make_groups(kCPU, dtype, 11, decay);
        CHECK(!bit_equal(gpu_ps[0], params_of(init)[0]));
      }
}

TEST_CASE("cuda clip_grad_norm: deterministic, exact against a float64 host sum, no scaling under the limit") {
  MG_REQUIRE_CUDA();
  auto groups = make_groups(kCUDA, DType::f32, 5, 0.0);
  auto ps = params_of(groups);
  Generator gg(3);
  double want = 0;
  std::vector<Tensor> host_grads;
  for (auto& p : ps) {
    Tensor g = randn(p.shape(), DType::f32, &gg);
    for (float v : g.to_vector<float>()) want += (double)v * (double)v;
    host_grads.push_back(g);
    p.set_grad(g.to(kCUDA));
  }
  want = std::sqrt(want);
  // Under the limit: the norm comes back and nothing is scaled.
  const double n1 = clip_grad_norm(groups, 1e9), n2 = clip_grad_norm(groups, 1e9);
  CHECK(n1 == n2);  // bit-identical, run to run
  CHECK(std::abs(n1 - want) <= 1e-12 * want);
  for (size_t i = 0; i < ps.size(); ++i) CHECK(bit_equal(ps[i].grad(), host_grads[i]));
  // Over the limit: every gradient scaled by max / (norm + 1e-6).
  const double n3 = clip_grad_norm(groups, 0.5);
  CHECK(n3 == n1);
  const double coef = 0.5 / (n1 + 1e-6);
  for (size_t i = 0; i < ps.size(); ++i)
    CHECK(check_close(ps[i].grad().to(kCPU), host_grads[i] * coef, 0, 1e-6, mg::format("scaled grad {}", i)));
  CHECK(std::abs(clip_grad_norm(groups, 1e9) - 0.5) < 1e-6);
}

// ---------------------------------------------------------------- CUDA: the model

TEST_CASE("cuda model: logits, loss and every gradient match the PyTorch fixture") {
  MG_REQUIRE_CUDA();
  test::MambaFixture fx;
  auto m = fx.model();
  m->to(kCUDA);
  CHECK(m->device() == kCUDA);
  Tensor tokens = fx.tokens.to(kCUDA), targets = fx.targets.to(kCUDA);
  {
    Tensor logits = m->forward(tokens);
    CHECK(logits.device() == kCUDA);
    const test::FixtureErr e = test::compare_to_fixture(logits, fx.at("logits"));
    const double normwise = e.normwise(), worst = e.worst_rel;
    MESSAGE("cuda logits: normwise error " << normwise << ", worst elementwise " << worst);
    CHECK(normwise < 1e-5);  // the CPU test's bounds (docs/design.md#tolerances: float32 forward 1e-5)
    CHECK(worst < 5e-4);
  }
  Tensor loss = m->loss(tokens, targets);
  const double want = fx.at("loss").item();
  CHECK(std::abs(loss.item() - want) <= 1e-5 * want);
  loss.backward();
  int checked = 0;
  for (auto& [name, p] : m->state_dict()) {
    INFO("gradient of " << name);
    REQUIRE(p.grad().defined());
    CHECK(p.grad().device() == kCUDA);
    const test::FixtureErr e = test::compare_to_fixture(p.grad(), fx.at("grad." + name));
    const double normwise = e.normwise(), worst = e.worst_rel;
    MESSAGE(name << ": normwise " << normwise << ", worst elementwise " << worst);
    CHECK(normwise < 1e-4);  // docs/design.md#tolerances: float32 gradients 1e-4
    CHECK(worst < 1e-3);
    ++checked;
  }
  CHECK(checked == 2 + 10 * fx.cfg.n_layer);
}

TEST_CASE("cuda model: the recurrent step (composed from ops) reproduces the fixture's logits") {
  MG_REQUIRE_CUDA();
  test::MambaFixture fx;
  auto m = fx.model();
  m->to(kCUDA);
  const int64_t b = fx.tokens.size(0), l = fx.tokens.size(1), V = fx.cfg.vocab_size;
  auto want = fx.at("logits").to_vector<double>();
  auto state = m->initial_state(b);
  CHECK(state[0].ssm.device() == kCUDA);
  double max_err = 0, max_ref = 0;
  for (int64_t t = 0; t < l; ++t) {
    Tensor tok = contiguous(narrow(fx.tokens, 1, t, 1).reshape({b})).to(kCUDA);
    auto got = m->step(tok, state).to_vector<float>();
    for (int64_t i = 0; i < b; ++i)
      for (int64_t v = 0; v < V; ++v) {
        const double ref = want[(i * l + t) * V + v];
        max_err = std::max(max_err, std::abs(got[i * V + v] - ref));
        max_ref = std::max(max_ref, std::abs(ref));
      }
  }
  MESSAGE("cuda step logits: max abs error " << max_err << " over values up to " << max_ref);
  CHECK(max_err / max_ref < 1e-5);
}

// ---------------------------------------------------------------- CUDA: training

// The same run (initial weights, batches, schedule) on both devices. Their losses differ only through
// float32 rounding in a different order (cuBLAS vs our gemm, the GPU scan's chunking, reductions):
// about 1e-6 of the loss per op. Does training amplify such differences? Calibrated on the CPU by
// scaling every initial weight by (1 + 1e-6 r), r ~ N(0, 1) (a stand-in for rounding differences),
// this run's losses (from 5.49 down to 0.15 nats) stayed within 1.5e-6 relative of the unperturbed
// run over all 300 steps, for two draws of r: the dynamics damp such differences. The bounds below
// leave a margin of 100x to 3000x over that and are still far tighter than what a broken kernel gives
// (a wrong gradient or update moves the loss by tenths of a nat within tens of steps).
TEST_CASE("cuda training: the tiny preset on CUDA tracks the CPU run step by step (300 steps, 100 emulated)") {
  MG_REQUIRE_CUDA();
  TempDir d("cuda_track");
  const std::string data = test::write_text(d, 400000, /*rich=*/true);
#if MG_CUDA_EMULATED
  const int64_t steps = 100;  // the emulator runs a step in over a second; the GPU run keeps 300
#else
  const int64_t steps = 300;
#endif
  TrainOptions oc = tiny_run(data, d / "cpu", kCPU), og = tiny_run(data, d / "cuda", kCUDA);
  oc.steps = og.steps = steps;
  EvalResult cpu_test = train(oc, false).test;
  EvalResult gpu_test = train(og, false).test;
  auto lc = train_losses(d / "cpu/metrics.jsonl"), lg = train_losses(d / "cuda/metrics.jsonl");
  REQUIRE((int64_t)lc.size() == steps);
  REQUIRE((int64_t)lg.size() == steps);
  double worst = 0, tail_c = 0, tail_g = 0;
  for (size_t i = 0; i < lc.size(); ++i) {
    const double rel = std::abs(lg[i] - lc[i]) / lc[i];
    worst = std::max(worst, rel);
    if (i < 20) CHECK_MESSAGE(rel < 1e-4, "step " << i + 1 << ": cpu " << lc[i] << ", cuda " << lg[i]);
    CHECK_MESSAGE(rel < 5e-3, "step " << i + 1 << ": cpu " << lc[i] << ", cuda " << lg[i]);
    if ((int64_t)i >= steps - 50) tail_c += lc[i], tail_g += lg[i];
  }
  MESSAGE("worst per-step relative loss difference " << worst << "; last-50 mean cpu " << tail_c / 50 << ", cuda "
                                                     << tail_g / 50 << "; test loss cpu " << cpu_test.loss << ", cuda "
                                                     << gpu_test.loss);
  CHECK(std::abs(tail_g - tail_c) / tail_c < 1e-3);
  CHECK(std::abs(gpu_test.loss - cpu_test.loss) / cpu_test.loss < 2e-3);
  CHECK(lg.back() < lg.front() - 1.0);  // both learned: from ~ln 256 = 5.5 nats to well below
  CHECK(lc.back() < lc.front() - 1.0);
  // The progress records carry the allocator's counters on CUDA.
  auto recs = read_jsonl(d / "cuda/metrics.jsonl");
  CHECK(recs.front().contains("device_peak_mb"));
}

TEST_CASE("cuda checkpoints: a CUDA model and optimizer state load on the CPU with identical values, and back") {
  MG_REQUIRE_CUDA();
  TempDir d("cuda_ckpt");
  MambaConfig cfg = MambaConfig::preset("tiny");
  for (Device from : {kCUDA, kCPU}) {
    const Device to = from.is_cuda() ? kCPU : kCUDA;
    INFO("saved on " << from.str() << ", loaded on " << to.str());
    MambaLM m(cfg, 7);
    m.to(from);
    AdamW opt(make_param_groups(m, 0.1), 1e-3);
    Generator gen(1);
    for (int s = 0; s < 3; ++s) {  // a few real steps, so moments and weights are not their initial values
      Tensor tok = randint(0, 256, {2, 17}, &gen).to(from);
      opt.zero_grad();
      m.loss(narrow(tok, 1, 0, 16), narrow(tok, 1, 1, 16)).backward();
      clip_grad_norm(opt.groups(), 1.0);
      opt.step();
    }
    const std::string dir = d / from.str();
    fs::create_directories(dir);
    std::ofstream(dir + "/config.json") << cfg.to_json();
    save_safetensors(dir + "/model.safetensors", m.state_dict());
    save_safetensors(dir + "/opt.safetensors", opt.state_tensors());

    auto loaded = load_model(dir, to);
    CHECK(loaded->device() == to);
    auto mine = m.state_dict(), theirs = loaded->state_dict();
    REQUIRE(mine.size() == theirs.size());
    for (size_t i = 0; i < mine.size(); ++i) {
      INFO(mine[i].first);
      CHECK(theirs[i].second.device() == to);
      CHECK(bit_equal(theirs[i].second, mine[i].second));
    }
    // The optimizer state restores onto the other device bit for bit.
    std::vector<ParamGroup> g2(2);
    g2[0].weight_decay = 0.1;
    for (auto& p : loaded->named_parameters()) g2[p.decay ? 0 : 1].params.push_back({p.name, p.tensor});
    AdamW opt2(g2, 1e-3);
    opt2.load_state(load_safetensors(dir + "/opt.safetensors"), opt.step_count());
    auto s1 = opt.state_tensors(), s2 = opt2.state_tensors();
    for (size_t i = 0; i < s1.size(); ++i) {
      INFO(s1[i].first);
      CHECK(s2[i].second.device() == to);
      CHECK(bit_equal(s2[i].second, s1[i].second));
    }
    // and the same next step follows from either device (float32 rounding apart)
    Tensor tok = randint(0, 256, {2, 17}, &gen);
    const double l1 = m.loss(narrow(tok, 1, 0, 16).to(from), narrow(tok, 1, 1, 16).to(from)).item();
    const double l2 = loaded->loss(narrow(tok, 1, 0, 16).to(to), narrow(tok, 1, 1, 16).to(to)).item();
    CHECK(std::abs(l1 - l2) <= 1e-5 * l1);
  }
}

TEST_CASE("cuda trainer: a run stopped on CUDA resumes on the CPU and the other way round, eval and generate on CUDA") {
  MG_REQUIRE_CUDA();
  TempDir d("cuda_resume");
  const std::string data = test::write_text(d, 200000, /*rich=*/true);
  auto opts = [&](const std::string& name, Device dev) {
    TrainOptions o = tiny_run(data, d / name, dev);
    o.steps = 12;
    o.warmup = 2;
    return o;
  };
  train(opts("ref", kCPU), false);
  const auto ref = train_losses(d / "ref/metrics.jsonl");
  for (Device first : {kCUDA, kCPU}) {
    const Device second = first.is_cuda() ? kCPU : kCUDA;
    INFO("first half on " << first.str() << ", second on " << second.str());
    const std::string name = "run_" + first.str().substr(0, 3);
    TrainOptions a = opts(name, first);
    a.stop_at = 6;
    train(a, false);
    TrainOptions b = load_run_options(d / name);
    b.progress = false;
    b.device = second;
    train(b, true);
    auto l = train_losses(d / name + "/metrics.jsonl");
    REQUIRE(l.size() == ref.size());
    for (size_t i = 0; i < l.size(); ++i)  // the CPU-only run, up to float32 rounding across devices
      CHECK_MESSAGE(std::abs(l[i] - ref[i]) <= 1e-3 * ref[i], "step " << i + 1 << ": " << l[i] << " vs " << ref[i]);
  }
  auto cpu_model = load_model(d / "ref", kCPU), gpu_model = load_model(d / "ref", kCUDA);
  ByteDataset val(split_bytes(read_byte_file(data)).val, "validation");
  EvalResult ec = evaluate(*cpu_model, val, 4, 64, 4096), eg = evaluate(*gpu_model, val, 4, 64, 4096);
  CHECK(ec.targets == eg.targets);
  CHECK(std::abs(ec.loss - eg.loss) <= 1e-5 * ec.loss);
  std::string text = generate(*gpu_model, "the cat", SampleOptions{50, 0.8, 40, 3});
  CHECK(text.size() == 50);
}

TEST_CASE(
    "cuda trainer: --carry-state on CUDA carries the state through a checkpoint to the CPU, eval --stream agrees") {
  MG_REQUIRE_CUDA();
  TempDir d("cuda_carry");
  const std::string data = test::write_text(d, 60000, /*rich=*/true);
  auto opts = [&](const std::string& name, Device dev) {
    TrainOptions o = tiny_run(data, d / name, dev);
    o.steps = 6, o.warmup = 2, o.batch = 4, o.seq = 32, o.carry_state = true;
    o.eval_bytes = o.test_bytes = 2048;
    return o;
  };
  train(opts("ref", kCPU), false);
  TrainOptions a = opts("run", kCUDA);
  a.stop_at = 3;  // the state carried into step 4 was made on the device
  train(a, false);
  TrainOptions b = load_run_options(d / "run");
  b.progress = false, b.device = kCPU;
  train(b, true);
  auto ref = train_losses(d / "ref/metrics.jsonl"), l = train_losses(d / "run/metrics.jsonl");
  REQUIRE(l.size() == ref.size());
  for (size_t i = 0; i < l.size(); ++i)
    CHECK_MESSAGE(std::abs(l[i] - ref[i]) <= 1e-3 * ref[i], "step " << i + 1 << ": " << l[i] << " vs " << ref[i]);
  auto cpu_model = load_model(d / "ref", kCPU), gpu_model = load_model(d / "ref", kCUDA);
  ByteDataset val(split_bytes(read_byte_file(data)).val, "validation");
  EvalResult ec = evaluate_stream(*cpu_model, val, 3, 40, 1500), eg = evaluate_stream(*gpu_model, val, 3, 40, 1500);
  CHECK(ec.targets == 1499);
  CHECK(eg.targets == 1499);
  CHECK(std::abs(ec.loss - eg.loss) <= 1e-5 * ec.loss);
}

TEST_CASE("cuda: Module::to moves every parameter and back, keeping names, identity, requires_grad and leaves") {
  MG_REQUIRE_CUDA();
  MambaLM m(MambaConfig::preset("tiny"), 3);
  auto before = m.named_parameters();
  std::vector<Tensor> values;
  for (auto& p : before) values.push_back(p.tensor.detach().clone());
  before[0].tensor.set_grad(ones_like(before[0].tensor));
  m.to(kCUDA);
  auto after = m.named_parameters();
  check_same_parameters(before, after);  // the same tensors, now on the GPU
  for (size_t i = 0; i < after.size(); ++i) {
    INFO(after[i].name);
    CHECK(after[i].tensor.device() == kCUDA);
    CHECK(bit_equal(after[i].tensor, values[i]));
  }
  CHECK(m.layers[0]->mixer->A_log.device() == kCUDA);  // the modules' own fields see the move
  CHECK(before[0].tensor.grad().device() == kCUDA);    // gradients move with their parameters
  m.to(kCPU);
  for (size_t i = 0; i < after.size(); ++i) CHECK(bit_equal(after[i].tensor, values[i]));
  CHECK(m.device() == kCPU);
}

TEST_CASE("cuda: the README's CUDA example runs") {
  MG_REQUIRE_CUDA();
  // README-CUDA-EXAMPLE-BEGIN
  MambaLM model(MambaConfig::preset("tiny"));
  model.to(kCUDA);                                     // every parameter, in place: handles stay valid
  AdamW opt(make_param_groups(model, 0.1), 1e-3);      // decay on matrices only; state beside the parameters
  Tensor window = randint(0, 256, {4, 65}).to(kCUDA);  // (batch, seq + 1) bytes, on the GPU
  Tensor loss = model.loss(narrow(window, 1, 0, 64), narrow(window, 1, 1, 64));
  loss.backward();
  double norm = clip_grad_norm(opt.groups(), 1.0);  // the step's one read-back
  opt.step();
  // README-CUDA-EXAMPLE-END
  CHECK(std::isfinite(loss.item()));
  CHECK(norm > 0);
  CHECK(opt.step_count() == 1);
}

// ---------------------------------------------------------------- everywhere (CPU)

TEST_CASE("devices: Module::to(kCPU) of a CPU model is a no-op that keeps every parameter") {
  MambaLM m(MambaConfig::preset("tiny"), 1);
  auto before = m.named_parameters();
  std::vector<const void*> data;
  for (auto& p : before) data.push_back(p.tensor.raw_data());
  m.to(kCPU);
  auto after = m.named_parameters();
  check_same_parameters(before, after);
  for (size_t i = 0; i < after.size(); ++i) CHECK(after[i].tensor.raw_data() == data[i]);  // not even copied
  CHECK(m.device() == kCPU);
}

TEST_CASE("devices: moving to a CUDA device that is not there throws and leaves the model on the CPU") {
  const Device missing(DeviceKind::cuda, cuda::device_count());  // cuda:0 without a GPU, cuda:N past the last
  MambaLM m(MambaConfig::preset("tiny"), 1);
  auto before = m.named_parameters();
  const std::string expect = cuda::built_with_cuda() ? "is not present" : "this build has no CUDA support";
  CHECK_THROWS_WITH_AS(m.to(missing), doctest::Contains(expect.c_str()), Error);
  for (auto& p : m.named_parameters()) CHECK(p.tensor.device() == kCPU);
  CHECK(m.device() == kCPU);
}

TEST_CASE("devices: train --device cuda without a usable GPU fails at once, before reading data or writing") {
  TempDir d("cuda_nodev");
  const Device missing(DeviceKind::cuda, cuda::device_count());
  TrainOptions o = tiny_run(d / "does-not-exist.zip", d / "run", missing);
  // Without CUDA in the build the message is the one every CUDA request gives; with CUDA but no such
  // device it names the device and the count. Either way the data file (missing) is never opened.
  const std::string expect = cuda::built_with_cuda() ? "[train] " + missing.str() + " is not present"
                                                     : "[train] this build has no CUDA support";
  CHECK_THROWS_WITH_AS(train(o, false), doctest::Contains(expect.c_str()), Error);
  CHECK(!fs::exists(d / "run"));
  CHECK_THROWS_WITH_AS(require_device(missing, "eval"), doctest::Contains("[eval] "), Error);
  CHECK_THROWS_WITH_AS(load_model(d / "run", missing), doctest::Contains("[load_model] "), Error);
  CHECK_NOTHROW(require_device(kCPU, "train"));
}

TEST_CASE("devices: the fused recurrent step matches the step composed of primitive ops, on every device") {
  MambaConfig cfg = MambaConfig::preset("tiny");
  MambaLM m(cfg, 5);
  std::vector<Device> devices = {kCPU};
  if (test::cuda_available()) devices.push_back(kCUDA);
  for (Device dev : devices) {
    CAPTURE(dev.str());
    m.to(dev);
    Generator gen(2);
    const int64_t b = 3;
    auto s_fused = m.initial_state(b), s_comp = m.initial_state(b);
    double worst = 0;
    for (int t = 0; t < 24; ++t) {
      Tensor tok = randint(0, 256, {b}, &gen).to(dev);
      Tensor h = m.embeddings->forward(tok);  // one layer's input: (b, d_model)
      Tensor want = m.layers[0]->mixer->step_composed(h, s_comp[0]);
      Tensor got = m.layers[0]->mixer->step(h, s_fused[0]);
      CHECK(got.device() == dev);
      worst = std::max(worst, rel_err(got.to(kCPU), want.to(kCPU)));
      CHECK(check_close(s_fused[0].conv.to(kCPU), s_comp[0].conv.to(kCPU), 1e-7, 1e-6, "conv state"));
      CHECK(check_close(s_fused[0].ssm.to(kCPU), s_comp[0].ssm.to(kCPU), 1e-7, 1e-5, "ssm state"));
    }
    MESSAGE(dev.str() << ": fused vs composed step: worst relative error " << worst);
    CHECK(worst < 1e-5);
  }
  m.to(kCPU);
}

TEST_CASE("devices: README.md shows the CUDA example of this file verbatim") {
  auto slurp = [](const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    REQUIRE(f.good());
    return std::string((std::istreambuf_iterator<char>(f)), {});
  };
  const std::string self = slurp(std::string(MG_SOURCE_DIR) + "/tests/test_cuda_train.cpp");
  const std::string readme = slurp(std::string(MG_SOURCE_DIR) + "/README.md");
  // The markers are split so that this line does not match itself.
  const std::string begin = std::string("// README-CUDA-EXAMPLE-") + "BEGIN\n";
  const std::string end = std::string("  // README-CUDA-EXAMPLE-") + "END";
  const auto b = self.find(begin), e = self.find(end);
  REQUIRE(b != std::string::npos);
  REQUIRE(e != std::string::npos);
  // The example as the README shows it: the test body's two-space indent removed from each line.
  std::string example;
  std::istringstream lines(self.substr(b + begin.size(), e - b - begin.size()));
  for (std::string line; std::getline(lines, line);)
    example += (line.rfind("  ", 0) == 0 ? line.substr(2) : line) + "\n";
  CHECK(example.size() > 200);
  CHECK(readme.find("```cpp\n" + example + "```") != std::string::npos);
}

TEST_CASE("devices: the optimizer's chunk tables cover every element exactly once") {
  auto cs = cuda::make_chunks({5, 0, 7}, 3);
  REQUIRE(cs.size() == 5);
  const int64_t want[5][3] = {{0, 0, 3}, {0, 3, 2}, {2, 0, 3}, {2, 3, 3}, {2, 6, 1}};
  for (int i = 0; i < 5; ++i) {
    CHECK(cs[i].index == want[i][0]);
    CHECK(cs[i].begin == want[i][1]);
    CHECK(cs[i].count == want[i][2]);
  }
  std::vector<int64_t> numels = {1, cuda::kOptimChunk, cuda::kOptimChunk + 1, 3 * cuda::kOptimChunk - 5, 0, 70001};
  std::vector<int64_t> covered(numels.size(), 0);
  for (auto& c : cuda::make_chunks(numels)) {
    CHECK(c.count >= 1);
    CHECK(c.count <= cuda::kOptimChunk);
    CHECK(c.begin == covered[c.index]);  // in order, no gap, no overlap
    covered[c.index] += c.count;
  }
  CHECK(covered == numels);
}
