#include "core/cpu_allocator.h"

#include <bit>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>

#include "core/error.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace mg {

namespace {

constexpr size_t kSmall = 64 << 10;             // below: plain aligned_alloc, not cached
constexpr size_t kHugePage = 2 << 20;           // from here: 2 MiB aligned, huge pages asked for
constexpr size_t kMaxCached = size_t(8) << 30;  // the cache gives blocks back beyond this

struct Cache {
  std::mutex mu;
  std::multimap<size_t, void*> free_blocks;  // size class -> block
  size_t cached = 0, system_allocs = 0;
};
Cache& cache() {
  static Cache* c = new Cache;  // never destroyed: tensors may be freed during static destruction
  return *c;
}

void* system_alloc(size_t cls) {
  const size_t align = cls >= kHugePage ? kHugePage : 64;
  void* p = std::aligned_alloc(align, cls);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (p && cls >= kHugePage) madvise(p, cls, MADV_HUGEPAGE);  // a hint: ignored where THP is off
#endif
  return p;
}

}  // namespace

size_t cpu_size_class(size_t nbytes) {
  if (nbytes == 0) return 64;
  if (nbytes < kSmall) return (nbytes + 63) / 64 * 64;
  if (nbytes >= kHugePage) return (nbytes + kHugePage - 1) / kHugePage * kHugePage;
  // Eight steps per octave: at most 12.5% rounding.
  const size_t octave = std::bit_floor(nbytes), step = octave / 8;
  return (nbytes + step - 1) / step * step;
}

void* cpu_alloc(size_t nbytes, const char* op) {
  // Rounding up to the size class must not wrap around to a small block.
  MG_CHECK(nbytes <= std::numeric_limits<size_t>::max() / 2,
           "[{}] cannot allocate {} bytes on the cpu: more than any machine's memory", op, nbytes);
  const size_t cls = cpu_size_class(nbytes);
  Cache& c = cache();
  if (cls >= kSmall) {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.free_blocks.find(cls);
    if (it != c.free_blocks.end()) {
      void* p = it->second;
      c.free_blocks.erase(it);
      c.cached -= cls;
      return p;
    }
  }
  void* p = system_alloc(cls);
  if (!p) {  // give the cache back and try once more
    cpu_empty_cache();
    p = system_alloc(cls);
  }
  MG_CHECK(p != nullptr, "[{}] cannot allocate {} bytes on the cpu: out of memory", op, nbytes);
  if (cls >= kSmall) {
    std::lock_guard<std::mutex> lock(c.mu);
    ++c.system_allocs;
  }
  return p;
}

void cpu_free(void* p, size_t nbytes) noexcept {
  if (!p) return;
  const size_t cls = cpu_size_class(nbytes);
  if (cls < kSmall) return std::free(p);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    if (c.cached + cls <= kMaxCached) {
      c.free_blocks.emplace(cls, p);
      c.cached += cls;
      return;
    }
  }
  std::free(p);
}

size_t cpu_cached_bytes() {
  std::lock_guard<std::mutex> lock(cache().mu);
  return cache().cached;
}

size_t cpu_system_allocations() {
  std::lock_guard<std::mutex> lock(cache().mu);
  return cache().system_allocs;
}

void cpu_empty_cache() {
  Cache& c = cache();
  std::multimap<size_t, void*> blocks;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    blocks.swap(c.free_blocks);
    c.cached = 0;
  }
  for (auto& [cls, p] : blocks) std::free(p);
}

}  // namespace mg
