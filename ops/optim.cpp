#include "ops/optim.h"

#include <algorithm>
#include <utility>

#include "autograd/grad_mode.h"
#include "cuda/optim.h"
#include "ops/cpu/optim.h"
#include "ops/ops.h"

namespace mg {

namespace {

// The CUDA devices the tensors live on, in order of first appearance.
std::vector<int> cuda_devices(const std::vector<Tensor>& ts) {
  std::vector<int> devices;
  for (const Tensor& t : ts)
    if (t.device().is_cuda() && std::find(devices.begin(), devices.end(), t.device().index) == devices.end())
      devices.push_back(t.device().index);
  return devices;
}

// The contiguous tensors on one CUDA device, as the kernels in cuda/optim.h take them.
std::vector<cuda::GradTensor> cuda_tensors(const std::vector<Tensor>& ts, int device) {
  std::vector<cuda::GradTensor> out;
  for (const Tensor& t : ts)
    if (t.device() == Device(DeviceKind::cuda, device) && t.is_contiguous())
      out.push_back({t.raw_data(), t.numel(), t.dtype() == DType::f64});
  return out;
}

void check_all_floating(const std::vector<Tensor>& ts, const char* op) {
  for (const Tensor& t : ts) {
    MG_CHECK(t.defined(), "[{}] a tensor is undefined", op);
    MG_CHECK(is_floating(t.dtype()), "[{}] tensors must be float32 or float64, got {}", op, t.dtype());
  }
}

template <class T>
void adamw_cpu(const AdamWParam& a, const Tensor& g, const AdamWStep& s) {
  cpu::adamw_update<T>(a.param.data<T>(), g.data<T>(), a.exp_avg.data<T>(), a.exp_avg_sq.data<T>(), a.param.numel(),
                       a.decay, s.beta1, s.beta2, s.step_size, s.bc2_sqrt, s.eps);
}

void check_adamw_param(const AdamWParam& a) {
  MG_CHECK(a.param.defined() && a.grad.defined() && a.exp_avg.defined() && a.exp_avg_sq.defined(),
           "[adamw_step_] a parameter, gradient or moment is undefined");
  MG_CHECK(is_floating(a.param.dtype()), "[adamw_step_] parameters must be float32 or float64, got {}",
           a.param.dtype());
  for (const Tensor* t : {&a.grad, &a.exp_avg, &a.exp_avg_sq}) {
    MG_CHECK(t->dtype() == a.param.dtype() && t->shape() == a.param.shape() && t->device() == a.param.device(),
             "[adamw_step_] the parameter is {} {} on {}, but its gradient or a moment is {} {} on {}", a.param.dtype(),
             a.param.shape(), a.param.device(), t->dtype(), t->shape(), t->device());
  }
  MG_CHECK(a.param.is_contiguous() && a.exp_avg.is_contiguous() && a.exp_avg_sq.is_contiguous(),
           "[adamw_step_] the parameter {} and its moments must be contiguous", a.param.shape());
}

}  // namespace

void adamw_step_(const std::vector<AdamWParam>& params, const AdamWStep& step) {
  for (const AdamWParam& a : params) check_adamw_param(a);
  NoGradGuard guard;
  // Host parameters are updated one by one; CUDA parameters are gathered per device and updated by
  // one multi-tensor launch per dtype (cuda/optim.cu).
  std::vector<std::pair<int, std::vector<cuda::AdamWTensor>>> on_cuda;
  std::vector<Tensor> copies;  // contiguous copies of non-contiguous CUDA gradients, alive until launched
  for (const AdamWParam& a : params) {
    Tensor g = a.grad.is_contiguous() ? a.grad : contiguous(a.grad);
    if (a.param.device().is_cuda()) {
      const int dev = a.param.device().index;
      auto it = std::find_if(on_cuda.begin(), on_cuda.end(), [&](const auto& e) { return e.first == dev; });
      if (it == on_cuda.end()) it = on_cuda.insert(on_cuda.end(), {dev, {}});
      it->second.push_back({a.param.raw_data(), g.raw_data(), a.exp_avg.raw_data(), a.exp_avg_sq.raw_data(),
                            a.param.numel(), a.decay, a.param.dtype() == DType::f64});
      if (!g.is_same(a.grad)) copies.push_back(g);
    } else if (a.param.dtype() == DType::f32) {
      adamw_cpu<float>(a, g, step);
    } else {
      adamw_cpu<double>(a, g, step);
    }
    a.param.storage()->bump_version();
    a.exp_avg.storage()->bump_version();
    a.exp_avg_sq.storage()->bump_version();
  }
  const cuda::AdamWScalars sc{step.beta1, step.beta2, step.step_size, step.bc2_sqrt, step.eps};
  for (auto& [dev, ts] : on_cuda) cuda::adamw_step(ts, sc, dev);
}

double sum_squares(const std::vector<Tensor>& ts) {
  check_all_floating(ts, "sum_squares");
  // Host tensors are summed here, contiguous tensors of each CUDA device by one kernel pass over all
  // of them (cuda/optim.cu), others (non-contiguous CUDA views) through a contiguous host copy.
  double total = 0.0;
  for (const Tensor& t : ts) {
    if (t.device().is_cuda() && t.is_contiguous()) continue;
    Tensor c = to_device(contiguous(t), kCPU);
    total += c.dtype() == DType::f32 ? cpu::sum_squares(c.data<float>(), c.numel())
                                     : cpu::sum_squares(c.data<double>(), c.numel());
  }
  for (int d : cuda_devices(ts)) total += cuda::grad_sum_squares(cuda_tensors(ts, d), d, "sum_squares");
  return total;
}

void mul_each_(const std::vector<Tensor>& ts, double coef) {
  check_all_floating(ts, "mul_each_");
  NoGradGuard guard;
  for (int d : cuda_devices(ts)) cuda::scale_grads(cuda_tensors(ts, d), coef, d, "mul_each_");
  for (const Tensor& t : ts) {
    if (t.device().is_cpu() || !t.is_contiguous())
      t.mul_(coef);
    else
      t.storage()->bump_version();  // scaled by scale_grads above
  }
}

}  // namespace mg
