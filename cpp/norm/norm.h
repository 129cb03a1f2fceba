// Batch normalization and layer normalization kernels (forward with batch statistics, eval
// forward with running statistics, backward through the statistics) on contiguous arrays.
// Layouts: BatchNorm x is (N, C, L) (L = 1 for a 2-D input); LayerNorm x is (R, C), one row each.
#pragma once
#include <cmath>
#include <cstdint>

namespace deepcalc {

// Forward, training mode. x, y are (N, C, L); gamma/beta (C) or null (treated as 1 / 0);
// mean/invstd (C) receive the batch mean and 1/sqrt(biased var + eps) over N and L.
template <typename T>
using batchnorm_forward_train_fn = void (*)(const T* x, const T* gamma, const T* beta, T* y, T* mean,
                                            T* invstd, int64_t N, int64_t C, int64_t L, double eps,
                                            int threads);
// Forward, eval mode: y = (x - running_mean) / sqrt(running_var + eps) * gamma + beta.
template <typename T>
using batchnorm_forward_eval_fn = void (*)(const T* x, const T* running_mean, const T* running_var,
                                           const T* gamma, const T* beta, T* y, int64_t N, int64_t C,
                                           int64_t L, double eps, int threads);
// Backward through the batch statistics. dx = gamma*invstd*(dy - mean(dy) - xhat*mean(dy*xhat)),
// dgamma = sum(dy*xhat), dbeta = sum(dy) (per channel over N and L). dgamma/dbeta may be null.
template <typename T>
using batchnorm_backward_fn = void (*)(const T* dy, const T* x, const T* mean, const T* invstd,
                                       const T* gamma, T* dx, T* dgamma, T* dbeta, int64_t N,
                                       int64_t C, int64_t L, int threads);
// LayerNorm over the last axis: x, y are (R, C); gamma/beta (C) or null; mean/invstd (R).
template <typename T>
using layernorm_forward_fn = void (*)(const T* x, const T* gamma, const T* beta, T* y, T* mean,
                                      T* invstd, int64_t R, int64_t C, double eps, int threads);
// dx = invstd*(g - mean(g) - xhat*mean(g*xhat)) with g = gamma*dy (means over the row);
// dgamma = sum over rows of dy*xhat, dbeta = sum over rows of dy. dgamma/dbeta may be null.
template <typename T>
using layernorm_backward_fn = void (*)(const T* dy, const T* x, const T* mean, const T* invstd,
                                       const T* gamma, T* dx, T* dgamma, T* dbeta, int64_t R,
                                       int64_t C, int threads);

// Scalar reference kernels (always built; define correctness); float64 uses only these.
template <typename T> void batchnorm_forward_train_ref(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, int64_t, double, int);
template <typename T> void batchnorm_forward_eval_ref(const T*, const T*, const T*, const T*, const T*, T*, int64_t, int64_t, int64_t, double, int);
template <typename T> void batchnorm_backward_ref(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, int64_t, int);
template <typename T> void layernorm_forward_ref(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, double, int);
template <typename T> void layernorm_backward_ref(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, int);

// float32 kernels per instruction set, chosen once by the accessors below.
#define DEEPCALC_NORM_DECLARE(isa)                                                                 \
  void batchnorm_forward_train_f32_##isa(const float*, const float*, const float*, float*, float*, \
                                         float*, int64_t, int64_t, int64_t, double, int);         \
  void batchnorm_forward_eval_f32_##isa(const float*, const float*, const float*, const float*,    \
                                        const float*, float*, int64_t, int64_t, int64_t, double,  \
                                        int);                                                      \
  void batchnorm_backward_f32_##isa(const float*, const float*, const float*, const float*,        \
                                    const float*, float*, float*, float*, int64_t, int64_t,        \
                                    int64_t, int);                                                 \
  void layernorm_forward_f32_##isa(const float*, const float*, const float*, float*, float*,       \
                                   float*, int64_t, int64_t, double, int);                         \
  void layernorm_backward_f32_##isa(const float*, const float*, const float*, const float*,        \
                                    const float*, float*, float*, float*, int64_t, int64_t, int);
DEEPCALC_NORM_DECLARE(avx2)
DEEPCALC_NORM_DECLARE(avx512)
#undef DEEPCALC_NORM_DECLARE

batchnorm_forward_train_fn<float> batchnorm_forward_train_f32();
batchnorm_forward_eval_fn<float> batchnorm_forward_eval_f32();
batchnorm_backward_fn<float> batchnorm_backward_f32();
layernorm_forward_fn<float> layernorm_forward_f32();
layernorm_backward_fn<float> layernorm_backward_f32();

// Running statistics after a training-mode forward, torch's rule, in place: with M values per
// channel and the biased batch variance var = 1/invstd^2 - eps,
//   running_mean = (1 - momentum) running_mean + momentum mean,
//   running_var  = (1 - momentum) running_var  + momentum var M / (M - 1)   (unbiased; M > 1).
// O(C) and computed in double; it runs once per step after the forward kernel.
template <typename T>
void batchnorm_update_running(T* running_mean, T* running_var, const T* mean, const T* invstd,
                              int64_t C, int64_t M, double momentum, double eps) {
  const double keep = 1.0 - momentum, unbias = double(M) / double(M - 1);
  for (int64_t c = 0; c < C; ++c) {
    const double is = double(invstd[c]);
    const double var = (1.0 / (is * is) - eps) * unbias;
    running_mean[c] = T(keep * double(running_mean[c]) + momentum * double(mean[c]));
    running_var[c] = T(keep * double(running_var[c]) + momentum * var);
  }
}

// Helpers shared by the reference and SIMD kernels.
// Shifted sums: with d = x - p, mean = p + S1/M and var = S2/M - (S1/M)^2. The subtraction
// cancels only by a factor (mean - p)^2 / var, so p is taken near the mean: the average of the
// first (up to) 16 values. All kernels, scalar or SIMD, use this pivot.
template <typename T>
inline double norm_pivot(const T* x, int64_t count, int64_t stride) {
  const int64_t k = count < 16 ? count : 16;
  double s = 0;
  for (int64_t i = 0; i < k; ++i) s += x[i * stride];
  return k ? s / double(k) : 0.0;
}

// Mean and 1/sqrt(var + eps) from shifted sums over m values. Rounding can make the variance
// slightly negative, which is clamped to 0; a NaN variance (NaN or inf in x) must stay NaN, so
// the test is `< 0`, false for NaN.
inline void finish_stats(double pivot, double s1, double s2, double m, double eps, double& mean,
                         double& invstd) {
  const double dm = s1 / m;
  const double var = s2 / m - dm * dm < 0 ? 0.0 : s2 / m - dm * dm;
  mean = pivot + dm;
  invstd = 1.0 / std::sqrt(var + eps);
}

}  // namespace deepcalc
