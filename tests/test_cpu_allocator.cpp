// The CPU caching allocator (core/cpu_allocator.h): size classes, reuse, alignment, counters.
#include <doctest/doctest.h>

#include <cstdint>

#include "core/cpu_allocator.h"
#include "core/storage.h"
#include "models/mamba.h"
#include "ops/ops.h"
#include "train/optim.h"

using namespace mg;

TEST_CASE("cpu allocator: size classes round up by at most 12.5% (64 B below 64 KiB, 2 MiB pages above 2 MiB)") {
  CHECK(cpu_size_class(0) == 64);
  CHECK(cpu_size_class(1) == 64);
  CHECK(cpu_size_class(65) == 128);
  CHECK(cpu_size_class(64 << 10) == (64 << 10));
  CHECK(cpu_size_class((64 << 10) + 1) == (72 << 10));
  CHECK(cpu_size_class((1 << 20) + 1) == (1 << 20) + (128 << 10));
  CHECK(cpu_size_class((2 << 20) - 1) == (2 << 20));
  CHECK(cpu_size_class((2 << 20) + 1) == (4 << 20));
  for (size_t n = 1; n < (size_t(64) << 20); n = n * 3 / 2 + 7) {
    const size_t c = cpu_size_class(n);
    CHECK(c >= n);
    if (n >= (64 << 10) && n < (2 << 20)) CHECK(c - n <= n / 8);
  }
}

TEST_CASE("cpu allocator: a freed large block is reused for the next request of its class, aligned") {
  const size_t before = cpu_system_allocations();
  void* a = cpu_alloc(3 << 20, "test");
  REQUIRE(a != nullptr);
  CHECK(reinterpret_cast<uintptr_t>(a) % 64 == 0);
  CHECK(cpu_system_allocations() == before + 1);
  cpu_free(a, 3 << 20);
  CHECK(cpu_cached_bytes() >= (4 << 20));
  void* b = cpu_alloc((3 << 20) + 100, "test");  // same 4 MiB class
  CHECK(b == a);
  CHECK(cpu_system_allocations() == before + 1);
  cpu_free(b, (3 << 20) + 100);
  cpu_empty_cache();
  CHECK(cpu_cached_bytes() == 0);
}

TEST_CASE("cpu allocator: repeating a step of tensor allocations asks the system for nothing new") {
  auto step = [] {
    Tensor x = randn({64, 1024}, DType::f32);  // 256 KiB
    Tensor y = x * x + 1.0;
    return sum(y).item();
  };
  step();
  const size_t after_first = cpu_system_allocations();
  for (int i = 0; i < 3; ++i) step();
  CHECK(cpu_system_allocations() == after_first);
}

TEST_CASE("cpu allocator: after the first, a training step of the small model asks the system for no memory") {
  MambaLM model(MambaConfig::preset("small"), 1);
  std::vector<ParamGroup> groups(1);
  for (auto& p : model.named_parameters()) groups[0].params.push_back({p.name, p.tensor});
  AdamW opt(groups, 1e-3);
  Generator g(2);
  Tensor tokens = randint(0, 256, {2, 64}, &g), targets = randint(0, 256, {2, 64}, &g);
  auto step = [&] {
    opt.zero_grad();
    Tensor loss = model.loss(tokens, targets);
    loss.backward();
    clip_grad_norm(groups[0].params, 1.0);
    opt.step();
  };
  step();
  step();
  const size_t after_warmup = cpu_system_allocations();
  for (int i = 0; i < 3; ++i) step();
  CHECK(cpu_system_allocations() == after_warmup);
}
