// Batch normalization and layer normalization kernels (forward with batch statistics, eval
// forward with running statistics, backward through the statistics, and the forward-mode
// tangents of the training forward and of the backward) on contiguous arrays.
// Layouts: BatchNorm x is (N, C, L) (L = 1 for a 2-D input); LayerNorm x is (R, C), one row each.
#pragma once
#include <cmath>
#include <cstdint>

namespace deepcalc {

// Forward. BatchNorm: x, y are (N, C, L); gamma/beta (C) or null (treated as 1 / 0).
//   train: mean/invstd (C) receive the batch mean and 1/sqrt(biased var + eps) over N and L.
//   eval:  y = (x - running_mean) / sqrt(running_var + eps) * gamma + beta (mean/invstd unused).
// LayerNorm: x, y are (N, C), each of the N rows normalized over its C values (L unused);
//   gamma/beta (C) or null; mean/invstd (N).
template <typename T>
struct NormForwardParams {
  const T* x = nullptr;
  const T* gamma = nullptr;
  const T* beta = nullptr;
  T* y = nullptr;
  T* mean = nullptr;
  T* invstd = nullptr;
  const T* running_mean = nullptr;
  const T* running_var = nullptr;
  int64_t N = 0, C = 0, L = 1;
  double eps = 0;
};

// Backward through the statistics; dgamma/dbeta may be null.
// BatchNorm (N, C, L), per channel over N and L, with k = gamma*invstd:
//   dx = k*(dy - mean(dy) - xhat*mean(dy*xhat)), dgamma = sum(dy*xhat), dbeta = sum(dy).
// LayerNorm (N, C), per row with g = gamma*dy, mean/invstd (N):
//   dx = invstd*(g - mean(g) - xhat*mean(g*xhat)); dgamma, dbeta summed over rows as above.
template <typename T>
struct NormBackwardParams {
  const T* dy = nullptr;
  const T* x = nullptr;
  const T* mean = nullptr;
  const T* invstd = nullptr;
  const T* gamma = nullptr;
  T* dx = nullptr;
  T* dgamma = nullptr;
  T* dbeta = nullptr;
  int64_t N = 0, C = 0, L = 1;
};

// Forward-mode (tangent) kernels of the training forward and of the backward, mean/invstd from
// the forward kernel. Per statistic group of M values (BatchNorm (N, C, L): channel c over N and
// L, gamma per group; LayerNorm (N, C): one row, gamma per column), xhat = (x - mean) invstd,
// avg over the group, sumP over gamma's other axes (BatchNorm: the group; LayerNorm: the rows):
//   r = avg(xhat t_x),  t_xhat = invstd (t_x - avg(t_x) - xhat r)   (invstd' = -invstd r)
//   forward:  t_y = gamma t_xhat + xhat t_gamma + t_beta
//   backward of dx = invstd (h - avg(h) - xhat m1), h = gamma dy, m1 = avg(h xhat):
//     th = t_dy gamma + dy t_gamma,
//     t_dx = -invstd r dx + invstd (th - avg(th) - t_xhat m1 - xhat (avg(th xhat) + avg(h t_xhat)))
//     t_dgamma = sumP(t_dy xhat + dy t_xhat),  t_dbeta = sumP(t_dy).
// gamma null means 1 (then t_gamma is null too); a null tangent is zero. t_y is the forward's
// output, t_dx/t_dgamma/t_dbeta the backward's (t_dgamma/t_dbeta null when gamma is null).
template <typename T>
struct NormJvpParams {
  const T* x = nullptr;
  const T* mean = nullptr;
  const T* invstd = nullptr;
  const T* gamma = nullptr;
  const T* dy = nullptr;
  const T* t_x = nullptr;
  const T* t_gamma = nullptr;
  const T* t_beta = nullptr;
  const T* t_dy = nullptr;
  T* t_y = nullptr;
  T* t_dx = nullptr;
  T* t_dgamma = nullptr;
  T* t_dbeta = nullptr;
  int64_t N = 0, C = 0, L = 1;
};

template <typename T>
using norm_forward_fn = void (*)(const NormForwardParams<T>& p, int threads);
template <typename T>
using norm_backward_fn = void (*)(const NormBackwardParams<T>& p, int threads);
template <typename T>
using norm_jvp_fn = void (*)(const NormJvpParams<T>& p, int threads);

// Scalar reference kernels (always built; define correctness); float64 uses only these.
template <typename T> void batchnorm_forward_train_ref(const NormForwardParams<T>& p, int threads);
template <typename T> void batchnorm_forward_eval_ref(const NormForwardParams<T>& p, int threads);
template <typename T> void batchnorm_backward_ref(const NormBackwardParams<T>& p, int threads);
template <typename T> void layernorm_forward_ref(const NormForwardParams<T>& p, int threads);
template <typename T> void layernorm_backward_ref(const NormBackwardParams<T>& p, int threads);
template <typename T> void batchnorm_forward_jvp_ref(const NormJvpParams<T>& p, int threads);
template <typename T> void batchnorm_backward_jvp_ref(const NormJvpParams<T>& p, int threads);
template <typename T> void layernorm_forward_jvp_ref(const NormJvpParams<T>& p, int threads);
template <typename T> void layernorm_backward_jvp_ref(const NormJvpParams<T>& p, int threads);

// float32 kernels per instruction set (norm_simd.h).
#define DEEPCALC_NORM_DECLARE(isa)                                                       \
  void batchnorm_forward_train_f32_##isa(const NormForwardParams<float>& p, int threads); \
  void batchnorm_forward_eval_f32_##isa(const NormForwardParams<float>& p, int threads);  \
  void batchnorm_backward_f32_##isa(const NormBackwardParams<float>& p, int threads);     \
  void layernorm_forward_f32_##isa(const NormForwardParams<float>& p, int threads);       \
  void layernorm_backward_f32_##isa(const NormBackwardParams<float>& p, int threads);
DEEPCALC_NORM_DECLARE(avx2)
DEEPCALC_NORM_DECLARE(avx512)
#undef DEEPCALC_NORM_DECLARE

// float32 JVP kernels per instruction set (norm_jvp_simd.h).
#define DEEPCALC_NORM_JVP_DECLARE(isa)                                                   \
  void batchnorm_forward_jvp_f32_##isa(const NormJvpParams<float>& p, int threads);     \
  void batchnorm_backward_jvp_f32_##isa(const NormJvpParams<float>& p, int threads);    \
  void layernorm_forward_jvp_f32_##isa(const NormJvpParams<float>& p, int threads);     \
  void layernorm_backward_jvp_f32_##isa(const NormJvpParams<float>& p, int threads);
DEEPCALC_NORM_JVP_DECLARE(avx2)
DEEPCALC_NORM_JVP_DECLARE(avx512)
#undef DEEPCALC_NORM_JVP_DECLARE

// Chosen once from cpu_capability() (norm_dispatch.cpp).
norm_forward_fn<float> batchnorm_forward_train_f32();
norm_forward_fn<float> batchnorm_forward_eval_f32();
norm_backward_fn<float> batchnorm_backward_f32();
norm_forward_fn<float> layernorm_forward_f32();
norm_backward_fn<float> layernorm_backward_f32();
norm_forward_fn<double> batchnorm_forward_train_f64();
norm_forward_fn<double> batchnorm_forward_eval_f64();
norm_backward_fn<double> batchnorm_backward_f64();
norm_forward_fn<double> layernorm_forward_f64();
norm_backward_fn<double> layernorm_backward_f64();
// The JVP kernels: float32 per instruction set, float64 the reference.
norm_jvp_fn<float> batchnorm_forward_jvp_f32();
norm_jvp_fn<float> batchnorm_backward_jvp_f32();
norm_jvp_fn<float> layernorm_forward_jvp_f32();
norm_jvp_fn<float> layernorm_backward_jvp_f32();
norm_jvp_fn<double> batchnorm_forward_jvp_f64();
norm_jvp_fn<double> batchnorm_backward_jvp_f64();
norm_jvp_fn<double> layernorm_forward_jvp_f64();
norm_jvp_fn<double> layernorm_backward_jvp_f64();

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
