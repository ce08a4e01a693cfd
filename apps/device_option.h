// The `--device cpu|cuda|cuda:N` option of train, eval, generate, logits and bench train (under
// mpirun `cuda` is the local rank's GPU). The value is checked before any work: in a build without
// CUDA `--device cuda` fails at once with "[cmd] this build has no CUDA support ...", and on a machine
// without that GPU with its count.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "core/device.h"
#include "cuda/runtime.h"
#include "train/distributed.h"
#include "train/trainer.h"

namespace mg::app {

inline CLI::Option* add_device_option(CLI::App* cmd, std::string& device, const std::string& what) {
  return cmd->add_option("--device", device, what + " (cpu, cuda or cuda:N)")->capture_default_str();
}

// Parses the option's value and checks that the device is usable now; throws mg::Error naming `op`.
// Started as one of several processes (mpirun), plain `cuda` means one GPU per rank: the local rank's,
// cuda:(local rank mod the GPUs present). More ranks than GPUs then share them, which only the
// host-staged gradient all-reduce allows (NCCL refuses two ranks on one GPU). `cuda:N` is taken as given.
inline Device resolve_device(const std::string& value, const char* op) {
  Device d = Device::parse(value);
  if (value == "cuda") {
    const LaunchInfo launch = launch_from_environment();
    const int gpus = cuda::device_count();
    if (launch.size > 1 && gpus > 0) d.index = launch.local_rank % gpus;
  }
  require_device(d, op);
  return d;
}

}  // namespace mg::app
