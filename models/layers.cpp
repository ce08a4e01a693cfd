#include "models/layers.h"

#include <cmath>

#include "ops/ops.h"

namespace mg {

Linear::Linear(int64_t in, int64_t out, bool has_bias, Generator& gen) {
  double bound = 1.0 / std::sqrt((double)in);
  weight = register_parameter("weight", rand({out, in}, DType::f32, &gen, -bound, bound), true);
  if (has_bias) bias = register_parameter("bias", rand({out}, DType::f32, &gen, -bound, bound), false);
}

Embedding::Embedding(int64_t num, int64_t dim, double std, Generator& gen) {
  weight = register_parameter("weight", randn({num, dim}, DType::f32, &gen, 0.0, std), false);
}

Tensor Embedding::forward(const Tensor& ids) const { return embedding(weight, ids); }

RMSNorm::RMSNorm(int64_t dim, double eps_) : eps(eps_) { weight = register_parameter("weight", ones({dim}), false); }

Tensor RMSNorm::forward(const Tensor& x) const { return rms_norm(x, weight, eps); }

}  // namespace mg
