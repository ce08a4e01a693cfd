// Basic modules with PyTorch's default initialisation.
#pragma once
#include "core/rng.h"
#include "models/module.h"
#include "ops/ops.h"

namespace mg {

// y = x W^T (+ b); W (out, in) ~ U(-1/sqrt(in), 1/sqrt(in)) as PyTorch's kaiming_uniform(a=sqrt(5)).
class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool bias, Generator& gen);
  Tensor forward(const Tensor& x) const { return linear(x, weight, bias); }
  Tensor weight, bias;
};

// rows of weight (num, dim) ~ N(0, std).
class Embedding : public Module {
 public:
  Embedding(int64_t num, int64_t dim, double std, Generator& gen);
  Tensor forward(const Tensor& ids) const;
  Tensor weight;
};

// x * rsqrt(mean(x^2) + eps) * weight, weight = 1.
class RMSNorm : public Module {
 public:
  RMSNorm(int64_t dim, double eps);
  Tensor forward(const Tensor& x) const;
  Tensor weight;
  double eps;
};

}  // namespace mg
