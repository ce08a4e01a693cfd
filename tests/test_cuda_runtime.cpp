// CUDA runtime: host <-> device copies (skipped, visibly, without a GPU), and the caching
// allocator's policy (cuda/block_cache.h), which is plain C++ and is tested here on any machine
// against a fake driver with a fixed capacity.
#include <doctest/doctest.h>

#include <cstdlib>
#include <map>

#include "cuda/block_cache.h"
#include "ops/ops.h"
#include "tests/devices.h"

using namespace mg;

TEST_CASE("cuda: a tensor survives the round trip host -> device -> host") {
  MG_REQUIRE_CUDA();
  Tensor x = from_vector<float>({1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -0.5f}, {2, 3});
  Tensor d = x.to(kCUDA);
  CHECK(d.device() == kCUDA);
  CHECK(d.to(kCPU).to_vector<float>() == x.to_vector<float>());
}

namespace {
// A pretend device: hands out host memory up to `capacity` bytes and counts the calls.
struct FakeDriver {
  size_t capacity, used = 0;
  int mallocs = 0, frees = 0, syncs = 0;
  std::map<void*, size_t> live;
  explicit FakeDriver(size_t cap) : capacity(cap) {}
  ~FakeDriver() {
    for (auto& [p, n] : live) std::free(p);
  }
  cuda::BlockCache cache() {
    return cuda::BlockCache(
        [this](size_t n) -> void* {
          if (used + n > capacity) return nullptr;
          void* p = std::malloc(n);
          used += n, ++mallocs;
          live[p] = n;
          return p;
        },
        [this](void* p) {
          used -= live.at(p);
          live.erase(p);
          std::free(p);
          ++frees;
        },
        [this] { ++syncs; });
  }
};
}  // namespace

TEST_CASE("cuda allocator: size classes round up to 512 B, powers of two, then 1 MiB steps") {
  using cuda::round_block_size;
  CHECK(round_block_size(0) == 512);
  CHECK(round_block_size(1) == 512);
  CHECK(round_block_size(512) == 512);
  CHECK(round_block_size(513) == 1024);
  CHECK(round_block_size(1000) == 1024);
  CHECK(round_block_size(4097) == 8192);
  CHECK(round_block_size((1 << 20) - 1) == (1 << 20));
  CHECK(round_block_size(1 << 20) == (1 << 20));
  CHECK(round_block_size((1 << 20) + 1) == (2 << 20));
  CHECK(round_block_size((size_t(100) << 20) + 12345) == (size_t(101) << 20));
  for (size_t n : {size_t(1), size_t(700), size_t(65537), size_t(3) << 20, (size_t(7) << 30) + 1}) {
    const size_t r = round_block_size(n);
    CHECK(r >= n);
    CHECK(r - n < std::max<size_t>(n, 1 << 20));  // less than 100% below 1 MiB, under 1 MiB above
  }
}

TEST_CASE("cuda allocator: freed blocks are reused by size class and the counters follow") {
  FakeDriver drv(size_t(1) << 30);
  cuda::BlockCache cache = drv.cache();
  void* a = cache.allocate(1000);  // class 1024
  void* b = cache.allocate(3 << 20);
  REQUIRE(a != nullptr);
  REQUIRE(b != nullptr);
  CHECK(drv.mallocs == 2);
  CHECK(cache.stats().in_use == 1024 + (3 << 20));
  CHECK(cache.stats().peak == cache.stats().in_use);
  cache.release(a);
  CHECK(cache.stats().in_use == 3 << 20);
  CHECK(cache.stats().cached == 1024);
  // Same class: the same block, no driver call. Another class: a new block.
  void* a2 = cache.allocate(900);
  CHECK(a2 == a);
  CHECK(drv.mallocs == 2);
  CHECK(cache.stats().cached == 0);
  void* c = cache.allocate(2000);  // class 2048
  CHECK(c != a);
  CHECK(drv.mallocs == 3);
  // A "training step" that frees and re-asks the same sizes makes no driver call after the first.
  for (int step = 0; step < 3; ++step) {
    std::vector<void*> ps;
    for (size_t n : {size_t(100), size_t(5000), size_t(5000), size_t(2) << 20, size_t(70000)})
      ps.push_back(cache.allocate(n));
    for (void* p : ps) cache.release(p);
  }
  CHECK(drv.mallocs == 3 + 5);
  CHECK(cache.stats().driver_mallocs == 8);
  const size_t peak = cache.stats().peak;
  CHECK(peak >= cache.stats().in_use);
  cache.reset_peak();
  CHECK(cache.stats().peak == cache.stats().in_use);
  // Unknown pointers and nullptr are ignored; empty() hands every cached block back after a sync.
  int x = 0;
  cache.release(&x);
  cache.release(nullptr);
  const size_t cached = cache.stats().cached;
  CHECK(cached > 0);
  cache.empty();
  CHECK(drv.syncs == 1);
  CHECK(cache.stats().cached == 0);
  CHECK(drv.frees == 5);
  for (void* p : {a2, b, c}) cache.release(p);
}

TEST_CASE("cuda allocator: out of memory empties the cache and retries once, then reports failure") {
  FakeDriver drv(4 << 20);  // 4 MiB device
  cuda::BlockCache cache = drv.cache();
  void* a = cache.allocate(2 << 20);
  void* b = cache.allocate(1 << 20);
  REQUIRE(a != nullptr);
  REQUIRE(b != nullptr);
  cache.release(a);  // 2 MiB cached, 1 MiB in use, 1 MiB free on the device
  // 3 MiB fits only once the cached 2 MiB go back to the driver.
  void* c = cache.allocate(3 << 20);
  CHECK(c != nullptr);
  CHECK(drv.syncs == 1);
  CHECK(cache.stats().cached == 0);
  CHECK(cache.stats().in_use == 4 << 20);
  // Nothing cached and nothing free: nullptr, and the counters are unchanged.
  CHECK(cache.allocate(1) == nullptr);
  CHECK(cache.stats().in_use == 4 << 20);
  cache.release(b);
  cache.release(c);
}
