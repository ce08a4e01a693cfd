// The op set. Every function here checks its arguments (throwing mg::Error naming the op), runs on
// the tensors' device and, when an input requires grad, records its vjp. One file in ops/ per family.
#pragma once
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "core/rng.h"
#include "core/tensor.h"

namespace mg {

// ---- factories (ops/factory.cpp) ----
Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = kCPU);
Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = kCPU);
Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = kCPU);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor arange(int64_t start, int64_t end, int64_t step = 1, DType dtype = DType::i64, Device device = kCPU);
Tensor arange(int64_t end, DType dtype = DType::i64);
template <class T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device = kCPU);
Tensor scalar_tensor(double v, DType dtype = DType::f32, Device device = kCPU);
// Uniform in [lo, hi) and standard normal, from `gen` (default: the global generator). Element i
// depends only on the seed and the generator's position, never on the thread count.
Tensor rand(const Shape& shape, DType dtype = DType::f32, Generator* gen = nullptr, double lo = 0.0, double hi = 1.0);
Tensor randn(const Shape& shape, DType dtype = DType::f32, Generator* gen = nullptr, double mean = 0.0,
             double std = 1.0);
// Uniform integers in [lo, hi), int64.
Tensor randint(int64_t lo, int64_t hi, const Shape& shape, Generator* gen = nullptr);

// ---- elementwise (ops/elementwise.cpp); binary ops broadcast ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor log1p(const Tensor& x);  // log(1 + x), exact near 0
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor pow(const Tensor& x, double p);
Tensor sigmoid(const Tensor& x);
Tensor silu(const Tensor& x);
Tensor softplus(const Tensor& x);  // log1p(exp(x)), and x where x > 20
Tensor tanh(const Tensor& x);
Tensor add_scalar(const Tensor& x, double s);
Tensor mul_scalar(const Tensor& x, double s);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
inline Tensor operator+(const Tensor& a, double s) { return add_scalar(a, s); }
inline Tensor operator+(double s, const Tensor& a) { return add_scalar(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return add_scalar(a, -s); }
inline Tensor operator-(double s, const Tensor& a) { return add_scalar(neg(a), s); }
inline Tensor operator*(const Tensor& a, double s) { return mul_scalar(a, s); }
inline Tensor operator*(double s, const Tensor& a) { return mul_scalar(a, s); }
inline Tensor operator/(const Tensor& a, double s) { return mul_scalar(a, 1.0 / s); }

// ---- reductions (ops/reduce.cpp) ----
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor sum(const Tensor& x);  // all elements, 0-dim result
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x);
// Largest value along `dim` and its index (int64, the first one on ties).
std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim = false);
// Sums `x` down to `shape` (the inverse of broadcasting); used by broadcasting vjps.
Tensor sum_to(const Tensor& x, const Shape& shape);

// ---- matmul (ops/matmul.cpp) ----
// (..., m, k) @ (..., k, n) with broadcast batch dims; 1-D operands as in NumPy are not supported.
Tensor matmul(const Tensor& a, const Tensor& b);
// x (..., in) W^T (out, in) + b (out), b optional.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());
// Whether a product with `rows` rows of the left operand (not transposed) computes each row of the
// result on its own on `device`, so that splitting the rows across calls changes no bit. True on the
// CPU up to the gemm's small-M bound (ops/cpu/gemm.cpp, "Small M"); false elsewhere.
bool matmul_rows_independent(Device device, int64_t rows);

// ---- shapes and views (ops/shape.cpp) ----
Tensor reshape(const Tensor& x, Shape shape);  // a view where the strides allow, else a copy
Tensor view(const Tensor& x, Shape shape);     // always a view; throws if the strides do not allow
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1);
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
Tensor expand(const Tensor& x, const Shape& shape);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor flatten(const Tensor& x, int64_t start_dim = 0, int64_t end_dim = -1);
Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
std::vector<Tensor> split(const Tensor& x, int64_t size, int64_t dim);  // chunks of `size`, last smaller
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim);
Tensor contiguous(const Tensor& x);
Tensor clone(const Tensor& x);
Tensor to_dtype(const Tensor& x, DType dtype);
Tensor to_device(const Tensor& x, Device device);

// ---- neural-network ops ----
// weight (V, D), ids int64 of any shape -> (*ids.shape, D). ops/embedding.cpp
Tensor embedding(const Tensor& weight, const Tensor& ids);
// ops/softmax.cpp
Tensor log_softmax(const Tensor& x, int64_t dim = -1);
// logits (N, C) and int64 targets (N); mean over targets != ignore_index. Fused.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100);
// The same from primitives: the test oracle.
Tensor cross_entropy_reference(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100);
// x * rsqrt(mean(x^2, -1) + eps) * weight, fused forward and vjp. ops/rms_norm.cpp
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-5);
Tensor rms_norm_reference(const Tensor& x, const Tensor& weight, double eps = 1e-5);

// ---- sampling (ops/sample.cpp); not differentiable ----
// One token per row of logits (b, V), from its first `vocab` entries: the largest when temperature is
// 0 (the first on ties), else a draw from softmax(logits / temperature) over the top_k largest (0: all),
// cut to the smallest set holding top_p of the probability (1: no cut), using uniforms[r] in [0, 1) for
// row r (the rule is stated in ops/sample.cpp; the same on every device). int64 (b) on the logits'
// device; -1 for a row that holds NaN, or (when sampling) whose entries are all -inf; a +inf entry is
// picked (the first one).
Tensor sample_tokens(const Tensor& logits, int64_t vocab, double temperature, int64_t top_k,
                     const std::vector<double>& uniforms = {}, double top_p = 1.0);

}  // namespace mg
#include "ops/scan.h"
