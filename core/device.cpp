#include "core/device.h"

#include <charconv>

#include "core/error.h"

namespace mg {

Device Device::parse(std::string_view s) {
  if (s == "cpu") return kCPU;
  if (s == "cuda") return kCUDA;
  if (s.substr(0, 5) == "cuda:") {
    int idx = -1;
    auto r = std::from_chars(s.data() + 5, s.data() + s.size(), idx);
    if (r.ec == std::errc() && r.ptr == s.data() + s.size() && idx >= 0) return Device(DeviceKind::cuda, idx);
  }
  MG_THROW("[device] '{}' is not a device (valid: cpu, cuda, cuda:N)", s);
}

std::string Device::str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }

}  // namespace mg
