// The `--device cpu|cuda|cuda:N` option of train, eval, generate, logits and bench train. The value is
// checked before any work: in a build without CUDA `--device cuda` fails at once with
// "[cmd] this build has no CUDA support ...", and on a machine without that GPU with its count.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "core/device.h"
#include "train/trainer.h"

namespace mg::app {

inline CLI::Option* add_device_option(CLI::App* cmd, std::string& device, const std::string& what) {
  return cmd->add_option("--device", device, what + " (cpu, cuda or cuda:N)")->capture_default_str();
}

// Parses the option's value and checks that the device is usable now; throws mg::Error naming `op`.
inline Device resolve_device(const std::string& value, const char* op) {
  const Device d = Device::parse(value);
  require_device(d, op);
  return d;
}

}  // namespace mg::app
