// embedding: rows of a weight table picked by int64 ids. The vjp scatter-adds the output gradient
// into the rows; repeated ids accumulate. Threads split the embedding dim, so every row is summed in
// id order by one thread: deterministic.
#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "cuda/runtime.h"
#include "ops/cpu/loops.h"
#include "ops/ops.h"

namespace mg {

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  MG_CHECK(weight.defined() && ids.defined(), "[embedding] got an undefined tensor");
  MG_CHECK(weight.dim() == 2, "[embedding] weight must be (num_embeddings, dim), got {}", weight.shape());
  MG_CHECK(is_floating(weight.dtype()), "[embedding] weight must be floating, got {}", weight.dtype());
  MG_CHECK(ids.dtype() == DType::i64, "[embedding] ids must be int64, got {} of shape {}", ids.dtype(), ids.shape());
  MG_CHECK(weight.device() == ids.device(), "[embedding] weight is on {} but ids are on {}", weight.device(),
           ids.device());
  if (!weight.device().is_cpu()) cuda::unsupported("embedding");
  const int64_t V = weight.size(0), D = weight.size(1);
  Tensor idc = contiguous(ids);
  const int64_t* pi = idc.data<int64_t>();
  const int64_t n = idc.numel();
  for (int64_t i = 0; i < n; ++i)
    MG_CHECK(pi[i] >= 0 && pi[i] < V, "[embedding] id {} at position {} is out of range for a table of {} rows (valid: 0 to {})",
             pi[i], i, V, V - 1);
  Shape out_shape = ids.shape();
  out_shape.push_back(D);
  Tensor out = Tensor::empty(out_shape, weight.dtype());
  Tensor w = contiguous(weight.detach());
  MG_DISPATCH_FLOAT(w.dtype(), "embedding", [&] {
    const scalar_t* pw = w.data<scalar_t>();
    scalar_t* po = out.data<scalar_t>();
    parallel_for(n, D, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) std::copy(pw + pi[i] * D, pw + (pi[i] + 1) * D, po + i * D);
    });
  });
  record(OpId::embedding, {weight, ids}, {&out}, [idc, V, D](const VjpArgs& g) {
    Tensor gc = contiguous(g[0]);
    Tensor dw = zeros({V, D}, gc.dtype());
    const int64_t* pi = idc.data<int64_t>();
    const int64_t n = idc.numel();
    MG_DISPATCH_FLOAT(gc.dtype(), "embedding", [&] {
      const scalar_t* pg = gc.data<scalar_t>();
      scalar_t* pd = dw.data<scalar_t>();
      parallel_for(D, n, [&](int64_t b, int64_t e) {
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = b; j < e; ++j) pd[pi[i] * D + j] += pg[i * D + j];
      });
    });
    return std::vector<Tensor>{dw, Tensor()};
  });
  return out;
}

void register_embedding_gradchecks(GradcheckRegistry& r) {
  r.add({OpId::embedding, "repeated ids accumulate",
         [](Generator& g, Device d) {
           return std::vector<Tensor>{gc_randn({5, 3}, g, d), from_vector<int64_t>({0, 2, 2, 4, 2, 0}, {2, 3}, d)};
         },
         [](const std::vector<Tensor>& in) { return embedding(in[0], in[1]); }});
}

}  // namespace mg
