// `mambagrad gradcheck [--op NAME] [--device cpu|cuda|cuda:N] [--seed S]`: every registered case, a
// table, and a non-zero exit on any failure (run_gradcheck, ops/gradcheck.h, which a user's program
// can call on cases of its own).
#include "apps/commands.h"
#include "apps/option_checks.h"
#include "core/device.h"
#include "ops/gradcheck.h"

namespace mg::app {

void add_gradcheck_command(CLI::App& app, Run& run) {
  struct Opts {
    std::string op, device = "cpu";
    uint64_t seed = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("gradcheck", "check every op's gradients against finite differences (float64)");
  cmd->add_option("--op", o->op, "only this op (e.g. matmul)")->check(non_empty("an op"));
  cmd->add_option("--device", o->device, "cpu, cuda or cuda:N")->capture_default_str();
  add_checked(cmd, "--seed", o->seed, "seed of the random inputs", unsigned_integer());
  cmd->callback([o, &run] {
    run = [o] {
      Device dev = Device::parse(o->device);
      require_device(dev, "gradcheck");
      return run_gradcheck({.op = o->op, .device = dev, .seed = o->seed}).exit_code();
    };
  });
}

}  // namespace mg::app
