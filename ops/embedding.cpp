// embedding: rows of a weight table picked by int64 ids. The vjp scatter-adds the output gradient
// into the rows; repeated ids accumulate. Deterministic on both devices: on the cpu threads split the
// embedding dim, so every row is summed in id order by one thread; on CUDA the positions are grouped
// by id on the host (a counting sort, positions ascending within an id) and one thread per column of
// a row sums its group in that order (cuda/embedding.cu): the same order, and bits, as the cpu.
// On CUDA the ids are copied to the host once per forward, to check them and to group them.
#include "ops/gradcheck.h"
#include "autograd/node.h"
#include "autograd/observer.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "ops/cpu/loops.h"
#include "ops/ops.h"

namespace mg {

namespace {
// The positions 0..n-1 grouped by id for cuda::embedding_backward: [pos (n) | seg_start (nseg + 1) |
// seg_id (nseg)], one segment per id that occurs, ids ascending, positions ascending within one.
std::vector<int64_t> group_by_id(const int64_t* ids, int64_t n, int64_t V, int64_t& nseg) {
  std::vector<int64_t> count(V, 0);
  for (int64_t i = 0; i < n; ++i) ++count[ids[i]];
  nseg = 0;
  for (int64_t v = 0; v < V; ++v) nseg += count[v] > 0;
  std::vector<int64_t> out(n + 2 * nseg + 1);
  int64_t* pos = out.data();
  int64_t* seg_start = pos + n;
  int64_t* seg_id = seg_start + nseg + 1;
  std::vector<int64_t> cursor(V, 0);
  int64_t at = 0, s = 0;
  for (int64_t v = 0; v < V; ++v) {
    if (!count[v]) continue;
    cursor[v] = at;
    seg_start[s] = at;
    seg_id[s++] = v;
    at += count[v];
  }
  seg_start[nseg] = n;
  for (int64_t i = 0; i < n; ++i) pos[cursor[ids[i]]++] = i;
  return out;
}
}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  OpScope scope(OpId::embedding, {&weight, &ids});
  MG_CHECK(weight.defined() && ids.defined(), "[embedding] got an undefined tensor");
  MG_CHECK(weight.dim() == 2, "[embedding] weight must be (num_embeddings, dim), got {}", weight.shape());
  MG_CHECK(is_floating(weight.dtype()), "[embedding] weight must be floating, got {}", weight.dtype());
  MG_CHECK(ids.dtype() == DType::i64, "[embedding] ids must be int64, got {} of shape {}", ids.dtype(), ids.shape());
  MG_CHECK(weight.device() == ids.device(), "[embedding] weight is on {} but ids are on {}", weight.device(),
           ids.device());
  const Device dev = weight.device();
  const int64_t V = weight.size(0), D = weight.size(1);
  Tensor idc = contiguous(ids);
  Tensor ids_host = dev.is_cpu() ? idc : to_device(idc, kCPU);
  const int64_t* pi = ids_host.data<int64_t>();
  const int64_t n = idc.numel();
  for (int64_t i = 0; i < n; ++i)
    MG_CHECK(pi[i] >= 0 && pi[i] < V,
             "[embedding] id {} at position {} is out of range for a table of {} rows (valid: 0 to {})", pi[i], i, V,
             V - 1);
  Shape out_shape = ids.shape();
  out_shape.push_back(D);
  Tensor out = Tensor::empty(out_shape, weight.dtype(), dev, "embedding");
  Tensor w = contiguous(weight.detach());
  if (dev.is_cuda()) {
    cuda::embedding_forward(w.dtype(), w.raw_data(), idc.data<int64_t>(), out.raw_data(), n, D, dev.index);
  } else {
    MG_DISPATCH_FLOAT(w.dtype(), "embedding", [&] {
      const scalar_t* pw = w.data<scalar_t>();
      scalar_t* po = out.data<scalar_t>();
      parallel_for(n, D, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) std::copy(pw + pi[i] * D, pw + (pi[i] + 1) * D, po + i * D);
      });
    });
  }
  // The caller's ids are version-checked (as PyTorch does): on the cpu ids_host is their storage when
  // they are contiguous, and the vjp scatters where it points. On CUDA it is the host copy, which the vjp
  // groups; the check refuses a backward after the ids changed in place there too.
  record(OpId::embedding, {weight, ids}, {&out},
         [sids = SavedTensor(ids, OpId::embedding), ids_host, V, D](const VjpArgs& g) {
           sids.get();
           Tensor gc = contiguous(g[0]);
           Tensor dw = zeros({V, D}, gc.dtype(), gc.device());
           const int64_t* pi = ids_host.data<int64_t>();
           const int64_t n = ids_host.numel();
           if (gc.device().is_cuda()) {
             int64_t nseg = 0;
             std::vector<int64_t> groups = group_by_id(pi, n, V, nseg);
             Tensor groups_dev = from_vector<int64_t>(groups, {(int64_t)groups.size()}, gc.device());
             cuda::embedding_backward(gc.dtype(), gc.raw_data(), groups_dev.data<int64_t>(), n, nseg, dw.raw_data(), D,
                                      gc.device().index);
             return std::vector<Tensor>{dw, Tensor()};
           }
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
