#include "core/device.h"

#include <charconv>

#include "core/device_backend.h"
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

void require_device(Device device, const char* op) {
  if (device.is_cpu()) return;
  const DeviceBackend* backend = device_backend();
  if (!backend) throw_no_cuda(op);
  const int n = backend->device_count();
  MG_CHECK(device.index < n, "[{}] {} is not present: this machine has {} CUDA device{}{}", op, device.str(), n,
           n == 1 ? "" : "s", n == 0 ? " (use --device cpu)" : "");
}

std::string Device::str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }

}  // namespace mg
