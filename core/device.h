// Where a tensor's storage lives: the host, or CUDA device N.
#pragma once
#include <string>
#include <string_view>

namespace mg {

enum class DeviceKind : uint8_t { cpu, cuda };

struct Device {
  DeviceKind kind = DeviceKind::cpu;
  int index = 0;

  constexpr Device() = default;
  constexpr Device(DeviceKind k, int i = 0) : kind(k), index(i) {}
  // Parses "cpu", "cuda" or "cuda:N"; throws mg::Error otherwise.
  static Device parse(std::string_view s);

  bool is_cpu() const { return kind == DeviceKind::cpu; }
  bool is_cuda() const { return kind == DeviceKind::cuda; }
  std::string str() const;
  friend bool operator==(const Device&, const Device&) = default;
};

inline constexpr Device kCPU{DeviceKind::cpu, 0};
inline constexpr Device kCUDA{DeviceKind::cuda, 0};

// The one check that a device is usable now: the CPU always is; a CUDA device needs a build with CUDA
// ("[op] this build has no CUDA support ...") and that device present ("[op] cuda:N is not present:
// this machine has M CUDA devices"). Throws mg::Error naming `op`. Commands and Module::to call it
// before any work, so that a bad --device fails at once.
void require_device(Device device, const char* op);

}  // namespace mg
