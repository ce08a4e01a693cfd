#include "core/memory_limit.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>

#include "core/error.h"
#include "core/format.h"

namespace mg {

namespace {

uint64_t physical_memory() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : UINT64_MAX;
}

uint64_t address_space_limit() {
  rlimit r{};
  return ::getrlimit(RLIMIT_AS, &r) == 0 && r.rlim_cur != RLIM_INFINITY ? (uint64_t)r.rlim_cur : UINT64_MAX;
}

uint64_t cgroup_limit() {
  std::ifstream f("/sys/fs/cgroup/memory.max");
  uint64_t v = 0;
  return f >> v ? v : UINT64_MAX;  // "max" (no limit) does not parse
}

uint64_t environment_limit() {
  const char* s = std::getenv("MG_MEMORY_LIMIT");
  if (!s || !*s) return UINT64_MAX;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s, &end, 10);
  return end && *end == 0 && v > 0 ? (uint64_t)v : UINT64_MAX;
}

}  // namespace

uint64_t memory_limit_bytes() {
  return std::min({physical_memory(), address_space_limit(), cgroup_limit(), environment_limit()});
}

std::string format_bytes(double bytes) {
  if (bytes >= 1024.0 * 1024 * 1024) return mg::format("{:.3g} GiB", bytes / (1024.0 * 1024 * 1024));
  if (bytes >= 1024.0 * 1024) return mg::format("{:.3g} MiB", bytes / (1024.0 * 1024));
  if (bytes >= 1024.0) return mg::format("{:.3g} KiB", bytes / 1024.0);
  return mg::format("{:.0f} bytes", bytes);
}

void check_fits_in_memory(double bytes, const std::string& op, const std::string& what, const std::string& hint) {
  const uint64_t limit = memory_limit_bytes();
  MG_CHECK(bytes <= (double)limit, "[{}] {} needs {}, more than this machine's memory ({}){}", op, what,
           format_bytes(bytes), format_bytes((double)limit), hint);
}

}  // namespace mg
