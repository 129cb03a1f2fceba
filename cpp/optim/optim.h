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

// param, grad, exp_avg, exp_avg_sq (and max_exp_avg_sq, amsgrad only; else null) are (n).
template <typename T>
using adam_step_fn = void (*)(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq,
                              int64_t n, const AdamScalars<T>& s, int threads);
// param, grad, momentum_buffer (null when momentum == 0) are (n).
template <typename T>
using sgd_step_fn = void (*)(T* param, const T* grad, T* momentum_buffer, int64_t n,
                             const SgdScalars<T>& s, int threads);

// Scalar reference kernels (always built; define correctness); float64 uses only these.
template <typename T>
void adam_step_ref(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, int64_t n,
                   const AdamScalars<T>& s, int threads);
template <typename T>
void sgd_step_ref(T* param, const T* grad, T* momentum_buffer, int64_t n, const SgdScalars<T>& s,
                  int threads);

void adam_step_f32_avx2(float*, const float*, float*, float*, float*, int64_t, const AdamScalars<float>&, int);
void adam_step_f32_avx512(float*, const float*, float*, float*, float*, int64_t, const AdamScalars<float>&, int);
void sgd_step_f32_avx2(float*, const float*, float*, int64_t, const SgdScalars<float>&, int);
void sgd_step_f32_avx512(float*, const float*, float*, int64_t, const SgdScalars<float>&, int);

// Chosen once from cpu_capability().
adam_step_fn<float> adam_step_f32();
sgd_step_fn<float> sgd_step_f32();

// Below this many elements a step runs on one thread (a parallel region costs more than it saves).
constexpr int64_t kOptimParallelMin = 1 << 16;

}  // namespace deepcalc
