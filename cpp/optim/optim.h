// Fused optimizer steps: one in-place pass over a contiguous parameter and its state, with the
// exact arithmetic order of torch.optim.Adam / AdamW / SGD (single-tensor path), so results
// match torch to rounding. Scalars are prepared once per call by adam_scalars / sgd_scalars.
#pragma once
#include <cmath>
#include <cstdint>

namespace deepcalc {

// Per-step scalars of Adam/AdamW in the parameter's precision T (torch casts its Python-float
// scalars to the tensor's type before the element-wise ops).
template <typename T>
struct AdamScalars {
  T decay;           // AdamW: param *= 1 - lr*wd (1 when not decoupled or wd == 0)
  T wd;              // Adam: grad += wd*param (0 when decoupled)
  T lerp_w;          // exp_avg.lerp_(grad, 1 - beta1)
  T beta2, one_minus_beta2;
  T bc2_sqrt;        // sqrt(1 - beta2^step)
  T eps;
  T neg_step_size;   // -lr / (1 - beta1^step)
};

template <typename T>
AdamScalars<T> adam_scalars(double lr, double beta1, double beta2, double eps, double weight_decay,
                            int64_t step, bool decoupled) {
  const double bc1 = 1.0 - std::pow(beta1, double(step)), bc2 = 1.0 - std::pow(beta2, double(step));
  return {T(decoupled ? 1.0 - lr * weight_decay : 1.0), T(decoupled ? 0.0 : weight_decay), T(1.0 - beta1),
          T(beta2), T(1.0 - beta2), T(std::sqrt(bc2)), T(eps), T(-lr / bc1)};
}

// Per-step scalars of SGD in precision T.
template <typename T>
struct SgdScalars {
  T wd, momentum, one_minus_dampening, neg_lr;
  bool use_momentum, nesterov, first_step;
};

// One Adam/AdamW step in place: param, grad, exp_avg, exp_avg_sq (and max_exp_avg_sq, amsgrad
// only; else null) are contiguous (n).
template <typename T>
struct AdamParams {
  T* param = nullptr;
  const T* grad = nullptr;
  T* exp_avg = nullptr;
  T* exp_avg_sq = nullptr;
  T* max_exp_avg_sq = nullptr;
  int64_t n = 0;
  AdamScalars<T> s{};
};

// One SGD step in place: param, grad, momentum_buffer (null when momentum == 0) are contiguous (n).
template <typename T>
struct SgdParams {
  T* param = nullptr;
  const T* grad = nullptr;
  T* momentum_buffer = nullptr;
  int64_t n = 0;
  SgdScalars<T> s{};
};

template <typename T>
using adam_step_fn = void (*)(const AdamParams<T>& p, int threads);
template <typename T>
using sgd_step_fn = void (*)(const SgdParams<T>& p, int threads);

// Scalar reference kernels (always built; define correctness); float64 uses only these.
template <typename T>
void adam_step_ref(const AdamParams<T>& p, int threads);
template <typename T>
void sgd_step_ref(const SgdParams<T>& p, int threads);

void adam_step_f32_avx2(const AdamParams<float>& p, int threads);
void adam_step_f32_avx512(const AdamParams<float>& p, int threads);
void sgd_step_f32_avx2(const SgdParams<float>& p, int threads);
void sgd_step_f32_avx512(const SgdParams<float>& p, int threads);

// Chosen once from cpu_capability() (optim_dispatch.cpp).
adam_step_fn<float> adam_step_f32();
adam_step_fn<double> adam_step_f64();
sgd_step_fn<float> sgd_step_f32();
sgd_step_fn<double> sgd_step_f64();

}  // namespace deepcalc
