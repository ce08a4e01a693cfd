// Tensors, views, factories, the generator and printing.
#include <doctest/doctest.h>
#include <algorithm>
#include <cmath>
#include <limits>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "core/parallel.h"
#include "ops/ops.h"
#include "tests/check.h"
#include "tests/devices.h"

using namespace mg;

TEST_CASE("core: factories fill and report shape, dtype and device") {
  Tensor z = zeros({2, 3});
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.dtype() == DType::f32);
  CHECK(z.device() == kCPU);
  CHECK(z.numel() == 6);
  for (float v : z.to_vector<float>()) CHECK(v == 0.0f);
  for (double v : ones({4}, DType::f64).to_vector<double>()) CHECK(v == 1.0);
  for (float v : full({2, 2}, 2.5).to_vector<float>()) CHECK(v == 2.5f);
  CHECK(arange(5).to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4});
  CHECK(arange(2, 11, 3).to_vector<int64_t>() == std::vector<int64_t>{2, 5, 8});
  CHECK(arange(5, 0, -2).to_vector<int64_t>() == std::vector<int64_t>{5, 3, 1});
  Tensor v = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(v.to_vector<double>() == std::vector<double>{1, 2, 3, 4, 5, 6});
  CHECK(scalar_tensor(3.0).dim() == 0);
  CHECK(scalar_tensor(3.0).item() == 3.0);
}

TEST_CASE("core: rand and randn are reproducible and independent of the thread count") {
  int saved = num_threads();
  set_num_threads(1);
  Generator g1(42);
  auto a = randn({1000, 70}, DType::f32, &g1).to_vector<float>();
  auto ua = rand({5000}, DType::f64, &g1).to_vector<double>();
  set_num_threads(2);
  Generator g2(42);
  auto b = randn({1000, 70}, DType::f32, &g2).to_vector<float>();
  auto ub = rand({5000}, DType::f64, &g2).to_vector<double>();
  set_num_threads(saved);
  CHECK(a == b);
  CHECK(ua == ub);
  Generator g3(43);
  CHECK(randn({1000, 70}, DType::f32, &g3).to_vector<float>() != a);
  // Sanity of the distributions: mean and variance of 70,000 normal draws, range of uniforms.
  double m = 0, s = 0;
  for (float x : a) m += x;
  m /= a.size();
  for (float x : a) s += (x - m) * (x - m);
  s /= a.size();
  CHECK(std::abs(m) < 0.02);
  CHECK(std::abs(s - 1.0) < 0.03);
  for (double u : ua) CHECK((u >= 0.0 && u < 1.0));
  auto ri = randint(3, 7, {1000}, &g1).to_vector<int64_t>();
  for (auto r : ri) CHECK((r >= 3 && r < 7));
}

TEST_CASE("core: the generator's state restores the same stream") {
  Generator g(7);
  randn({10}, DType::f32, &g);
  uint64_t seed = g.seed(), off = g.offset();
  auto x = randn({10}, DType::f32, &g).to_vector<float>();
  Generator h;
  h.set_state(seed, off);
  CHECK(randn({10}, DType::f32, &h).to_vector<float>() == x);
}

TEST_CASE("core: views share storage and see in-place writes") {
  Tensor x = arange(0, 12, 1, DType::f32).reshape({3, 4});
  CHECK(x.is_contiguous());
  Tensor t = x.transpose(0, 1);
  CHECK(t.shape() == Shape{4, 3});
  CHECK(t.strides() == Strides{1, 4});
  CHECK(!t.is_contiguous());
  CHECK(t.storage() == x.storage());
  CHECK(t.contiguous().to_vector<float>() == std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11});
  Tensor row = x.narrow(0, 1, 1);
  CHECK(row.offset() == 4);
  row.fill_(-1);
  CHECK(x.to_vector<float>()[4] == -1);
  CHECK(x.to_vector<float>()[7] == -1);
  CHECK(x.to_vector<float>()[8] == 8);
  Tensor col = x.narrow(1, 2, 1);
  CHECK(col.contiguous().to_vector<float>() == std::vector<float>{2, -1, 10});
  Tensor p = arange(0, 24, 1, DType::f32).reshape({2, 3, 4}).permute({2, 0, 1});
  CHECK(p.shape() == Shape{4, 2, 3});
  CHECK(p.contiguous().to_vector<float>()[1] == 4);   // p[0,0,1] = x[0,1,0]
  CHECK(p.contiguous().to_vector<float>()[3] == 12);  // p[0,1,0] = x[1,0,0]
}

TEST_CASE("core: reshape views when it can and copies when it must") {
  Tensor x = arange(0, 24, 1, DType::f32).reshape({2, 3, 4});
  Tensor v = x.reshape({6, 4});
  CHECK(v.storage() == x.storage());
  CHECK(x.reshape({-1}).shape() == Shape{24});
  CHECK(x.reshape({4, -1}).shape() == Shape{4, 6});
  Tensor t = x.transpose(1, 2);                        // (2, 4, 3), not viewable as (8, 3)? it is: dims 0 and 1 merge
  CHECK(t.reshape({2, 12}).storage() != x.storage());  // (4, 3) transposed cannot flatten without a copy
  CHECK(t.reshape({2, 12}).to_vector<float>()[1] == 4);
  // Merging an outer dim with a transposed pair keeps the view when strides allow.
  Tensor u = x.reshape({2, 12}).narrow(1, 0, 12);
  CHECK(u.view({24}).storage() == x.storage());
  CHECK(unsqueeze(x, 1).shape() == Shape{2, 1, 3, 4});
  CHECK(squeeze(unsqueeze(x, -1), -1).shape() == Shape{2, 3, 4});
  CHECK(flatten(x, 1).shape() == Shape{2, 12});
}

TEST_CASE("core: expand uses stride 0 and contiguous() materialises it") {
  Tensor x = from_vector<float>({1, 2, 3}, {3, 1});
  Tensor e = x.expand({2, 3, 4});
  CHECK(e.strides() == Strides{0, 1, 0});
  auto v = e.contiguous().to_vector<float>();
  CHECK(v.size() == 24);
  CHECK(v[0] == 1);
  CHECK(v[4] == 2);
  CHECK(v[12 + 11] == 3);
}

TEST_CASE("core: cat, split and chunk") {
  Tensor a = from_vector<float>({1, 2, 3, 4}, {2, 2});
  Tensor b = from_vector<float>({5, 6}, {2, 1});
  Tensor c = cat({a, b}, 1);
  CHECK(c.to_vector<float>() == std::vector<float>{1, 2, 5, 3, 4, 6});
  auto parts = split(c, {1, 2}, 1);
  CHECK(parts.size() == 2);
  CHECK(parts[1].contiguous().to_vector<float>() == std::vector<float>{2, 5, 4, 6});
  auto ch = chunk(arange(0, 7, 1, DType::f32), 3, 0);
  REQUIRE(ch.size() == 3);
  CHECK(ch[0].numel() == 3);
  CHECK(ch[2].numel() == 1);
  CHECK(split(arange(0, 5, 1, DType::f32), 2, 0).size() == 3);
}

TEST_CASE("core: to(dtype) converts and item() reads a scalar") {
  Tensor x = from_vector<double>({1.5, -2.25}, {2});
  Tensor f = x.to(DType::f32);
  CHECK(f.dtype() == DType::f32);
  CHECK(f.to_vector<float>() == std::vector<float>{1.5f, -2.25f});
  CHECK(x.to(DType::i64).to_vector<int64_t>() == std::vector<int64_t>{1, -2});
  CHECK(sum(x).item() == doctest::Approx(-0.75));
}

TEST_CASE("core: printing looks like PyTorch's") {
  Tensor x = from_vector<float>({1, 2, 3, 4}, {2, 2});
  CHECK(mg::format("{}", x) == "tensor([[1.0000, 2.0000],\n        [3.0000, 4.0000]], dtype=float32)");
  CHECK(mg::format("{}", arange(3)) == "tensor([0, 1, 2], dtype=int64)");
  CHECK(mg::format("{}", scalar_tensor(2.0, DType::f64)) == "tensor(2.0000, dtype=float64)");
  Tensor w = ones({2}).requires_grad_();
  CHECK(mg::format("{}", w) == "tensor([1.0000, 1.0000], dtype=float32, requires_grad)");
  CHECK(mg::format("{}", w * 2.0).find("grad_fn=mul_scalar") != std::string::npos);
  std::string big = mg::format("{}", zeros({40, 40}));
  CHECK(big.find("...") != std::string::npos);
  CHECK(big.size() < 2000);
}

TEST_CASE("core: devices parse and cuda requests fail clearly without CUDA") {
  CHECK(Device::parse("cpu") == kCPU);
  CHECK(Device::parse("cuda:1") == Device(DeviceKind::cuda, 1));
  CHECK_THROWS_WITH_AS(Device::parse("gpu"), "[device] 'gpu' is not a device (valid: cpu, cuda, cuda:N)", Error);
#ifndef MG_HAVE_CUDA
  CHECK_THROWS_WITH_AS(zeros({2}, DType::f32, kCUDA), doctest::Contains("this build has no CUDA support"), Error);
#endif
}

TEST_CASE(
    "SplitChooser: probes both ways, keeps the faster, backs off while one thread wins, leaves a stalling split") {
  SplitChooser c;
  // Feeds n runs taking `serial` or `split` seconds as the chooser asks; returns how many it split.
  auto feed = [&](int n, double serial, double split) {
    int splits = 0;
    for (int i = 0; i < n; ++i) {
      const bool s = c.next();
      splits += s;
      c.record(s, s ? split : serial);
    }
    return splits;
  };
  CHECK(feed(8, 1.0, 0.5) == 4);    // the probe: one thread and split in turn
  CHECK(feed(64, 1.0, 0.5) == 64);  // split is 2x faster: kept for 64 runs
  CHECK(feed(8, 1.0, 0.5) == 4);    // probed again, confirmed: kept for 128
  CHECK(feed(128, 1.0, 0.5) == 128);
  CHECK(feed(8, 1.0, 0.95) == 4);  // less than 10% faster: one thread, for 64 runs
  CHECK(feed(64, 1.0, 0.5) == 0);
  CHECK(feed(8, 1.0, 0.95) == 4);  // one thread again: for 4 x 64 runs
  CHECK(feed(256, 1.0, 0.5) == 0);
  CHECK(feed(8, 1.0, 0.5) == 4);     // split (64 runs), then a busy machine: split runs take 5x
  CHECK(feed(2, 1.0, 5.0) == 2);     // 2 stalls end the run: the next probe starts at once,
  CHECK(feed(4, 1.0, 5.0) == 2);     // and ends at its first slow split after the warm-up pair:
  CHECK(feed(1024, 1.0, 0.5) == 0);  // one thread for 4 x 256 runs; a faster split is not seen
  CHECK(feed(8, 1.0, 0.5) == 4);     // until the next probe
  CHECK(c.split_runs() == 4 + 64 + 4 + 128 + 4 + 4 + 4 + 2 + 2 + 4);
  // A split probe that stalls once keeps one thread, even with a faster median.
  SplitChooser d;
  const double times[8] = {1.0, 0.5, 1.0, 0.5, 1.0, 3.0, 1.0, 0.5};  // warm-up pair, then S P S P S P
  for (double t : times) d.record(d.next(), t);
  CHECK(!d.next());
  c.set_mode(SplitChooser::Mode::kSerial);
  CHECK(feed(5, 1.0, 0.1) == 0);
  c.set_mode(SplitChooser::Mode::kSplit);
  CHECK(feed(5, 0.1, 1.0) == 5);
}

TEST_CASE(
    "parallel_for: every index once, in contiguous pieces that hold enough work, taken by whichever thread is free") {
  const int before = num_threads();
  set_num_threads(2);
  // How many pieces: up to kPiecesPerThread per thread while each holds kParallelGrain work.
  CHECK(parallel_pieces(1000, 1000, 2) == 2 * kPiecesPerThread);
  CHECK(parallel_pieces(100, 1000, 2) == 3);            // 100,000 work: 3 pieces of at least kParallelGrain
  CHECK(parallel_pieces(40, 1000, 2) == 2);             // never fewer than the threads
  CHECK(parallel_pieces(3, int64_t(1) << 40, 2) == 3);  // never more than the items; no overflow
  CHECK(parallel_pieces(int64_t(1) << 40, int64_t(1) << 40, 2) == 2 * kPiecesPerThread);
  // With a minimum of items per piece (the gemm's 512 rows): fewer, a multiple of the threads, at least nt.
  CHECK(parallel_pieces(43, int64_t(1) << 30, 2, 85) == 2);   // 256 rows: one piece per thread
  CHECK(parallel_pieces(341, int64_t(1) << 30, 2, 85) == 4);  // 2048 rows: 4 pieces of 512
  CHECK(parallel_pieces(683, int64_t(1) << 30, 2, 85) == 8);  // 4096 rows: as without the minimum
  CHECK(parallel_pieces(600, int64_t(1) << 30, 3, 85) == 6);  // 7 would fit: 6, two rounds of 3 threads
  CHECK(parallel_pieces(100, 1000, 2, 10) == 3);              // the work bound still applies

  std::mutex mu;
  std::vector<std::pair<int64_t, int64_t>> ranges;
  std::vector<int> seen(1000, 0);
  parallel_for(1000, 1000, [&](int64_t b, int64_t e) {
    std::lock_guard<std::mutex> lock(mu);
    ranges.emplace_back(b, e);
    for (int64_t i = b; i < e; ++i) ++seen[i];
  });
  CHECK(std::all_of(seen.begin(), seen.end(), [](int c) { return c == 1; }));
  CHECK(ranges.size() == size_t(2 * kPiecesPerThread));
  std::sort(ranges.begin(), ranges.end());
  for (size_t p = 0; p < ranges.size(); ++p) CHECK(ranges[p].first == int64_t(1000 * p / ranges.size()));

  // Too little work: one call on the calling thread.
  ranges.clear();
  parallel_for(10, 10, [&](int64_t b, int64_t e) { ranges.emplace_back(b, e); });
  REQUIRE(ranges.size() == 1);
  CHECK(ranges[0] == std::make_pair(int64_t(0), int64_t(10)));

  // A thread held up in its first piece (as by another process on its core) takes no other: the free
  // thread takes the rest, instead of each thread getting half of the pieces up front. Piece 0 waits
  // until every other piece is done (no timing: a split made up front would leave pieces to its thread,
  // which never finish while it waits, and the wait gives up after 20 s).
  const int pieces = 2 * kPiecesPerThread;
  std::vector<int> owner(pieces, -1);
  std::atomic<int> done{0};
  std::atomic<bool> gave_up{false};
  parallel_for(1000, 1000, [&](int64_t b, int64_t) {
    const int64_t piece = b * pieces / 1000;
    owner[piece] = omp_get_thread_num();
    if (piece != 0) {
      ++done;
      return;
    }
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (done.load() < pieces - 1 && !gave_up)
      if (std::chrono::steady_clock::now() > until)
        gave_up = true;
      else
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  CHECK(!gave_up);
  CHECK(std::count(owner.begin(), owner.end(), owner[0]) == 1);
  set_num_threads(before);
}

TEST_CASE(
    "core: randint over a range wider than INT64_MAX (from INT64_MIN) stays in range, computed without overflow") {
  const int64_t lo_min = std::numeric_limits<int64_t>::min(), hi_max = std::numeric_limits<int64_t>::max();
  for (auto [lo, hi] : {std::pair<int64_t, int64_t>{lo_min, 1}, {lo_min, hi_max}, {-5, hi_max}, {3, 7}}) {
    CAPTURE(lo);
    CAPTURE(hi);
    Generator g(17), ref(17);
    auto v = randint(lo, hi, {4000}, &g).to_vector<int64_t>();
    // The reference in 128-bit integers: lo + bits mod (hi - lo) for the same counters.
    const uint64_t base = ref.advance(4000);
    const __int128 range = (__int128)hi - lo;
    bool below_zero = false, above_zero = false;
    for (int64_t i = 0; i < 4000; ++i) {
      const __int128 want = lo + (__int128)(ref.bits(base + i) % (unsigned __int128)range);
      REQUIRE(v[i] == (int64_t)want);
      REQUIRE((v[i] >= lo && v[i] < hi));
      below_zero |= v[i]<0, above_zero |= v[i]> 0;
    }
    if (lo == lo_min && hi == hi_max) CHECK((below_zero && above_zero));
  }
}

namespace {
void check_float_to_int64(Device dev) {
  CHECK(
      from_vector<double>({-3.9, 2.5, -0x1p63, 0x1p63 - 1024}, {4}, dev).to(DType::i64).to(kCPU).to_vector<int64_t>() ==
      std::vector<int64_t>{-3, 2, std::numeric_limits<int64_t>::min(), (int64_t)(0x1p63 - 1024)});
  for (double bad : {std::nan(""), (double)INFINITY, -(double)INFINITY, 0x1p63, -0x1p63 - 2048})
    for (DType t : {DType::f32, DType::f64}) {
      if (t == DType::f32 && bad == -0x1p63 - 2048) continue;  // rounds to -2^63 in float32: in range
      CAPTURE(bad);
      Tensor x = to_dtype(from_vector<double>({1, bad}, {2}, dev), t);
      check_error([&] { x.to(DType::i64); },
                  {mg::format("[to_dtype] cannot convert {} to int64: the element at flat index 1 is", t),
                   "(valid: finite values in [-2^63, 2^63))"});
      Tensor dst = zeros({2}, DType::i64, dev);
      check_error([&] { dst.copy_(x); }, {"[to_dtype] cannot convert"});
      CHECK(dst.to(kCPU).to_vector<int64_t>() == std::vector<int64_t>{0, 0});  // untouched
    }
}
}  // namespace

TEST_CASE("core: to_dtype and copy_ refuse NaN, infinite and out-of-range floats into int64, naming the value") {
  check_float_to_int64(kCPU);
}

TEST_CASE("cuda core: to_dtype and copy_ into int64 on the device refuse what the cpu refuses") {
  MG_REQUIRE_CUDA();
  check_float_to_int64(kCUDA);
}
