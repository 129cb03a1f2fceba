// Scalar reference BatchNorm / LayerNorm kernels, templated over float and double. Statistics are
// accumulated in double around a pivot (see norm_pivot), so the reference is the accurate side of
// every comparison; float64 inputs always run these.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "norm/norm.h"

namespace deepcalc {

// x, y are (N, C, L); gamma/beta, mean/invstd are (C)
template <typename T>
void batchnorm_forward_train_ref(const NormForwardParams<T>& p, int threads) {
  const T *x = p.x, *gamma = p.gamma, *beta = p.beta;
  T *y = p.y, *mean = p.mean, *invstd = p.invstd;
  const int64_t N = p.N, C = p.C, L = p.L;
  const double eps = p.eps;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    const double p = norm_pivot(x + c * L, N, C * L);
    double s1 = 0, s2 = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t l = 0; l < L; ++l) {
        const double d = double(x[(n * C + c) * L + l]) - p;
        s1 += d;
        s2 += d * d;
      }
    double mu, is;
    finish_stats(p, s1, s2, double(N * L), eps, mu, is);
    mean[c] = T(mu);
    invstd[c] = T(is);
    const double scale = is * (gamma ? double(gamma[c]) : 1.0), shift = beta ? double(beta[c]) : 0.0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t l = 0; l < L; ++l) {
        const int64_t i = (n * C + c) * L + l;
        y[i] = T((double(x[i]) - mu) * scale + shift);
      }
  }
}

// x, y are (N, C, L); running_mean/var, gamma/beta are (C)
template <typename T>
void batchnorm_forward_eval_ref(const NormForwardParams<T>& p, int threads) {
  const T *x = p.x, *running_mean = p.running_mean, *running_var = p.running_var, *gamma = p.gamma,
          *beta = p.beta;
  T* y = p.y;
  const int64_t N = p.N, C = p.C, L = p.L;
  const double eps = p.eps;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t nc = 0; nc < N * C; ++nc) {
    const int64_t c = nc % C;
    const double scale = (gamma ? double(gamma[c]) : 1.0) / std::sqrt(double(running_var[c]) + eps);
    const double shift = beta ? double(beta[c]) : 0.0;
    for (int64_t l = 0; l < L; ++l)
      y[nc * L + l] = T((double(x[nc * L + l]) - double(running_mean[c])) * scale + shift);
  }
}

// dy, x, dx are (N, C, L); mean/invstd/gamma, dgamma/dbeta are (C)
template <typename T>
void batchnorm_backward_ref(const NormBackwardParams<T>& p, int threads) {
  const T *dy = p.dy, *x = p.x, *mean = p.mean, *invstd = p.invstd, *gamma = p.gamma;
  T *dx = p.dx, *dgamma = p.dgamma, *dbeta = p.dbeta;
  const int64_t N = p.N, C = p.C, L = p.L;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    const double mu = mean[c], is = invstd[c], m = double(N * L);
    double sdy = 0, sdyx = 0;  // sum(dy), sum(dy * (x - mean))
    for (int64_t n = 0; n < N; ++n)
      for (int64_t l = 0; l < L; ++l) {
        const int64_t i = (n * C + c) * L + l;
        sdy += double(dy[i]);
        sdyx += double(dy[i]) * (double(x[i]) - mu);
      }
    if (dgamma) dgamma[c] = T(sdyx * is);
    if (dbeta) dbeta[c] = T(sdy);
    // dx = k*(dy - sdy/m - xhat * sum(dy*xhat)/m), k = gamma*invstd, sum(dy*xhat) = sdyx*invstd
    const double k = (gamma ? double(gamma[c]) : 1.0) * is;
    const double mdy = sdy / m, mdyxh = sdyx * is / m;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t l = 0; l < L; ++l) {
        const int64_t i = (n * C + c) * L + l;
        const double xh = (double(x[i]) - mu) * is;
        dx[i] = T(k * (double(dy[i]) - mdy - xh * mdyxh));
      }
  }
}

// x, y are (R, C); gamma/beta are (C); mean/invstd are (R)
template <typename T>
void layernorm_forward_ref(const NormForwardParams<T>& p, int threads) {
  const T *x = p.x, *gamma = p.gamma, *beta = p.beta;
  T *y = p.y, *mean = p.mean, *invstd = p.invstd;
  const int64_t R = p.N, C = p.C;
  const double eps = p.eps;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    const T* xr = x + r * C;
    const double p = norm_pivot(xr, C, 1);
    double s1 = 0, s2 = 0;
    for (int64_t j = 0; j < C; ++j) {
      const double d = double(xr[j]) - p;
      s1 += d;
      s2 += d * d;
    }
    double mu, is;
    finish_stats(p, s1, s2, double(C), eps, mu, is);
    mean[r] = T(mu);
    invstd[r] = T(is);
    for (int64_t j = 0; j < C; ++j)
      y[r * C + j] = T((double(xr[j]) - mu) * is * (gamma ? double(gamma[j]) : 1.0) +
                       (beta ? double(beta[j]) : 0.0));
  }
}

// dy, x, dx are (R, C); mean/invstd are (R); gamma, dgamma/dbeta are (C)
template <typename T>
void layernorm_backward_ref(const NormBackwardParams<T>& p, int threads) {
  const T *dy = p.dy, *x = p.x, *mean = p.mean, *invstd = p.invstd, *gamma = p.gamma;
  T *dx = p.dx, *dgamma = p.dgamma, *dbeta = p.dbeta;
  const int64_t R = p.N, C = p.C;
  // dgamma/dbeta: one partial row per thread, summed after the parallel region (no atomics).
  std::vector<double> partial(size_t(threads) * 2 * C, 0.0);
#pragma omp parallel num_threads(threads)
  {
    double* pg = partial.data() + size_t(omp_get_thread_num()) * 2 * C;
    double* pb = pg + C;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; ++r) {
      const T* xr = x + r * C;
      const T* gr = dy + r * C;
      const double mu = mean[r], is = invstd[r];
      double sg = 0, sgx = 0;  // sum(g), sum(g * xhat) with g = gamma * dy
      for (int64_t j = 0; j < C; ++j) {
        const double xh = (double(xr[j]) - mu) * is, g = double(gr[j]) * (gamma ? double(gamma[j]) : 1.0);
        sg += g;
        sgx += g * xh;
        pg[j] += double(gr[j]) * xh;
        pb[j] += double(gr[j]);
      }
      for (int64_t j = 0; j < C; ++j) {
        const double xh = (double(xr[j]) - mu) * is, g = double(gr[j]) * (gamma ? double(gamma[j]) : 1.0);
        dx[r * C + j] = T(is * (g - sg / double(C) - xh * sgx / double(C)));
      }
    }
  }
  for (int64_t j = 0; j < C; ++j) {
    double sg = 0, sb = 0;
    for (int t = 0; t < threads; ++t) {
      sg += partial[size_t(t) * 2 * C + j];
      sb += partial[size_t(t) * 2 * C + C + j];
    }
    if (dgamma) dgamma[j] = T(sg);
    if (dbeta) dbeta[j] = T(sb);
  }
}

#define DEEPCALC_NORM_REF_INSTANTIATE(T)                                             \
  template void batchnorm_forward_train_ref<T>(const NormForwardParams<T>&, int); \
  template void batchnorm_forward_eval_ref<T>(const NormForwardParams<T>&, int);  \
  template void batchnorm_backward_ref<T>(const NormBackwardParams<T>&, int);     \
  template void layernorm_forward_ref<T>(const NormForwardParams<T>&, int);       \
  template void layernorm_backward_ref<T>(const NormBackwardParams<T>&, int);
DEEPCALC_NORM_REF_INSTANTIATE(float)
DEEPCALC_NORM_REF_INSTANTIATE(double)
#undef DEEPCALC_NORM_REF_INSTANTIATE

}  // namespace deepcalc
