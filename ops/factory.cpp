// Tensor factories. full/zeros/ones and arange are filled in place on a CUDA device (cuda/copy.cu);
// from_vector copies the host values over. The random ones draw on the host, so a Generator gives
// the same numbers whatever device the tensor then goes to (move them with to_device).
#include <cmath>
#include <cstring>
#include <limits>

#include "cuda/kernels.h"
#include "cuda/tensor_iter.h"
#include "ops/cpu/loops.h"
#include "ops/input_checks.h"
#include "ops/ops.h"

namespace mg {

Generator& default_generator() {
  static Generator g(0);
  return g;
}
void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

namespace {
Tensor on_device(Tensor t, Device d) { return d.is_cpu() ? t : to_device(t, d); }
}  // namespace

Tensor full(const Shape& shape, double value, DType dtype, Device device) {
  check_int64_value(dtype, value, "full");
  if (device.is_cuda()) {
    Tensor t = Tensor::empty(shape, dtype, device, "full");
    cuda::fill(dtype, t.raw_data(), value, cuda::iter<1>("full", shape, {t.strides()}), device.index);
    return t;
  }
  Tensor t = Tensor::empty(shape, dtype);
  MG_DISPATCH_ALL(dtype, "full", [&] {
    scalar_t* p = t.data<scalar_t>();
    scalar_t v = (scalar_t)value;
    parallel_for(t.numel(), 1, [&](int64_t b, int64_t e) { std::fill(p + b, p + e, v); });
  });
  return on_device(t, device);
}

Tensor zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype(), t.device()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype(), t.device()); }
Tensor scalar_tensor(double v, DType dtype, Device device) { return full(Shape{}, v, dtype, device); }

Tensor arange(int64_t start, int64_t end, int64_t step, DType dtype, Device device) {
  MG_CHECK(step != 0, "[arange] step must be non-zero");
  // ceil((end - start) / step) in 128 bits: end - start may not fit in int64.
  const __int128 span = (__int128)end - start, count = (span + step - (step > 0 ? 1 : -1)) / step;
  MG_CHECK(count <= std::numeric_limits<int64_t>::max(),
           "[arange] [{}, {}) in steps of {} has more elements than int64 can count", start, end, step);
  const int64_t n = count > 0 ? (int64_t)count : 0;
  if (device.is_cuda()) {
    Tensor t = Tensor::empty({n}, dtype, device, "arange");
    cuda::arange(dtype, t.raw_data(), start, step, n, device.index);
    return t;
  }
  Tensor t = Tensor::empty({n}, dtype);
  MG_DISPATCH_ALL(dtype, "arange", [&] {
    scalar_t* p = t.data<scalar_t>();
    for (int64_t i = 0; i < n; ++i) p[i] = (scalar_t)(start + i * step);
  });
  return on_device(t, device);
}
Tensor arange(int64_t end, DType dtype) { return arange(0, end, 1, dtype); }

template <class T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  MG_CHECK((int64_t)values.size() == shape.numel(), "[from_vector] {} values cannot fill shape {} ({} elements)",
           values.size(), shape, shape.numel());
  Tensor t = Tensor::empty(shape, dtype_of<T>());
  if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(T));
  return on_device(t, device);
}
template Tensor from_vector<float>(const std::vector<float>&, const Shape&, Device);
template Tensor from_vector<double>(const std::vector<double>&, const Shape&, Device);
template Tensor from_vector<int64_t>(const std::vector<int64_t>&, const Shape&, Device);

Tensor rand(const Shape& shape, DType dtype, Generator* gen, double lo, double hi) {
  Generator& g = gen ? *gen : default_generator();
  Tensor t = Tensor::empty(shape, dtype);
  uint64_t base = g.advance((uint64_t)t.numel());
  MG_DISPATCH_FLOAT(dtype, "rand", [&] {
    scalar_t* p = t.data<scalar_t>();
    parallel_for(t.numel(), 8, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) p[i] = (scalar_t)(lo + (hi - lo) * g.uniform(base + i));
    });
  });
  return t;
}

Tensor randn(const Shape& shape, DType dtype, Generator* gen, double mean, double std) {
  Generator& g = gen ? *gen : default_generator();
  Tensor t = Tensor::empty(shape, dtype);
  uint64_t base = g.advance(2 * (uint64_t)t.numel());
  MG_DISPATCH_FLOAT(dtype, "randn", [&] {
    scalar_t* p = t.data<scalar_t>();
    parallel_for(t.numel(), 32, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {  // Box-Muller on two uniforms of this element's own counters
        double u1 = 1.0 - g.uniform(base + 2 * i), u2 = g.uniform(base + 2 * i + 1);
        p[i] = (scalar_t)(mean + std * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
      }
    });
  });
  return t;
}

Tensor randint(int64_t lo, int64_t hi, const Shape& shape, Generator* gen) {
  MG_CHECK(hi > lo, "[randint] empty range [{}, {})", lo, hi);
  Generator& g = gen ? *gen : default_generator();
  Tensor t = Tensor::empty(shape, DType::i64);
  uint64_t base = g.advance((uint64_t)t.numel());
  int64_t* p = t.data<int64_t>();
  // In uint64 arithmetic: hi - lo overflows int64 when the range is wider than INT64_MAX (e.g. from
  // INT64_MIN); the sum wraps back into [lo, hi), and the conversion to int64 is modular (C++20).
  const uint64_t range = (uint64_t)hi - (uint64_t)lo;
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = (int64_t)((uint64_t)lo + g.bits(base + i) % range);
  return t;
}

}  // namespace mg
