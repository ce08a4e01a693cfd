// `mambagrad gradcheck [--op NAME] [--device cpu|cuda] [--seed S]`: every registered case, a table,
// and a non-zero exit on any failure.
#include "core/format.h"

#include "apps/commands.h"
#include "ops/gradcheck.h"
#include "core/device.h"
#include "core/error.h"

namespace mg::app {

void add_gradcheck_command(CLI::App& app, Run& run) {
  struct Opts {
    std::string op, device = "cpu";
    uint64_t seed = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("gradcheck", "check every op's gradients against finite differences (float64)");
  cmd->add_option("--op", o->op, "only this op (e.g. matmul)");
  cmd->add_option("--device", o->device, "cpu or cuda")->capture_default_str();
  cmd->add_option("--seed", o->seed, "seed of the random inputs")->capture_default_str();
  cmd->callback([o, &run] {
    run = [o] {
      Device dev = Device::parse(o->device);
      require_device(dev, "gradcheck");
      const auto& cases = GradcheckRegistry::get().cases();
      bool known = o->op.empty();
      for (auto& c : cases) known = known || op_name(c.op) == o->op;
      if (!known) {
        std::string names;
        for (auto n : kAllOpNames) names += std::string(names.empty() ? "" : ", ") + std::string(n);
        MG_THROW("[gradcheck] unknown op '{}' (valid: {})", o->op, names);
      }
      // On cuda the inputs live on the device and are perturbed there (ops/gradcheck.cpp).
      mg::print("gradcheck on {}: float64, central differences\n", dev.str());
      mg::print("{:<14} {:<40} {:<34} {:>10} {:>10}  {}\n", "op", "case", "inputs", "max abs", "max rel", "result");
      int failed = 0, total = 0;
      for (size_t i = 0; i < cases.size(); ++i) {
        const auto& c = cases[i];
        if (!o->op.empty() && op_name(c.op) != o->op) continue;
        Generator g(o->seed * 7919 + i);
        std::vector<Tensor> inputs = c.make_inputs(g, dev);
        GradcheckResult r = gradcheck(c.fn, inputs, c.atol, c.rtol, 1e-6, o->seed + i);
        ++total;
        failed += !r.pass;
        mg::print("{:<14} {:<40} {:<34} {:>10.2e} {:>10.2e}  {}\n", op_name(c.op), c.label.substr(0, 40),
                   describe_inputs(inputs).substr(0, 34), r.max_abs_err, r.max_rel_err, r.pass ? "PASS" : "FAIL");
        if (!r.pass) mg::print("    {}\n", r.message);
      }
      mg::print("\n{} passed, {} failed\n", total - failed, failed);
      return failed ? 1 : 0;
    };
  });
}

}  // namespace mg::app
