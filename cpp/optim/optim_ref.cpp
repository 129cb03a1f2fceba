// Scalar reference Adam/AdamW and SGD steps, templated over float and double. Each line mirrors
// one torch op of the single-tensor implementation, in torch's order, in the parameter's precision.
#include <cmath>

#include "common/hw.h"
#include "optim/optim.h"

namespace deepcalc {

// param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq are (n)
template <typename T>
void adam_step_ref(const AdamParams<T>& a, int threads) {
  T *param = a.param, *exp_avg = a.exp_avg, *exp_avg_sq = a.exp_avg_sq, *max_exp_avg_sq = a.max_exp_avg_sq;
  const T* grad = a.grad;
  const int64_t n = a.n;
  const AdamScalars<T>& s = a.s;
#pragma omp parallel for num_threads(threads) schedule(static) if (n >= hw::kOptimParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    T p = param[i] * s.decay;                     // AdamW: param.mul_(1 - lr*wd)
    const T g = s.wd != T(0) ? grad[i] + s.wd * p : grad[i];  // Adam: grad.add(param, alpha=wd)
    T m = exp_avg[i];
    m = s.lerp_w < T(0.5) ? m + s.lerp_w * (g - m) : g - (g - m) * (T(1) - s.lerp_w);  // lerp_
    T v = exp_avg_sq[i] * s.beta2;                // mul_(beta2)
    v = v + s.one_minus_beta2 * g * g;            // addcmul_(g, g, value=1-beta2)
    T vhat = v;
    if (max_exp_avg_sq) {  // torch.maximum: NaN in either argument gives NaN
      const T vm = max_exp_avg_sq[i];
      vhat = max_exp_avg_sq[i] = vm > v || vm != vm ? vm : v;
    }
    const T denom = std::sqrt(vhat) / s.bc2_sqrt + s.eps;
    param[i] = p + s.neg_step_size * m / denom;   // addcdiv_(m, denom, value=-step_size)
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
  }
}

// param, grad, momentum_buffer are (n)
template <typename T>
void sgd_step_ref(const SgdParams<T>& a, int threads) {
  T *param = a.param, *momentum_buffer = a.momentum_buffer;
  const T* grad = a.grad;
  const int64_t n = a.n;
  const SgdScalars<T>& s = a.s;
#pragma omp parallel for num_threads(threads) schedule(static) if (n >= hw::kOptimParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    T g = s.wd != T(0) ? grad[i] + s.wd * param[i] : grad[i];  // grad.add(param, alpha=wd)
    if (s.use_momentum) {
      T b = s.first_step ? g : momentum_buffer[i] * s.momentum + s.one_minus_dampening * g;
      momentum_buffer[i] = b;
      g = s.nesterov ? g + s.momentum * b : b;
    }
    param[i] = param[i] + s.neg_lr * g;           // param.add_(g, alpha=-lr)
  }
}

template void adam_step_ref<float>(const AdamParams<float>&, int);
template void adam_step_ref<double>(const AdamParams<double>&, int);
template void sgd_step_ref<float>(const SgdParams<float>&, int);
template void sgd_step_ref<double>(const SgdParams<double>&, int);

}  // namespace deepcalc
