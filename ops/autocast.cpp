#include "ops/autocast.h"

namespace mg {

namespace {
thread_local Precision t_precision = Precision::f32;
}

Precision autocast_precision() { return t_precision; }
void set_autocast_precision(Precision p) { t_precision = p; }

std::string_view precision_name(Precision p) { return p == Precision::bf16 ? "bf16" : "fp32"; }

std::optional<Precision> parse_precision(std::string_view name) {
  if (name == "fp32") return Precision::f32;
  if (name == "bf16") return Precision::bf16;
  return std::nullopt;
}

}  // namespace mg
