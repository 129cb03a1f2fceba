// Scalar reference forward-mode (JVP) kernels of BatchNorm / LayerNorm training forward and
// backward (formulas in norm.h at NormJvpParams), templated over float and double. Two passes per
// group: the group sums in double, then the elementwise write; float and double run these.
#include <omp.h>

#include <vector>

#include "norm/norm.h"

namespace deepcalc {
namespace {

// A tangent element; a null tangent is zero.
template <typename T>
inline double at(const T* a, int64_t i) {
  return a ? double(a[i]) : 0.0;
}

// Per-group sums of the backward JVP over its M values (h = gamma dy, th = gamma t_dy + t_gamma dy)
// turned into the averages both passes need.
struct BackwardJvpSums {
  double st = 0, sxt = 0, sh = 0, shx = 0, sth = 0, sthx = 0, sht = 0;
  void add(double xh, double t, double h, double th) {
    st += t, sxt += xh * t, sh += h, shx += h * xh, sth += th, sthx += th * xh, sht += h * t;
  }
  // mt = avg(t_x), r = avg(xhat t_x), mh = avg(h), m1 = avg(h xhat), mth = avg(th), and
  // k = avg(th xhat) + avg(h t_xhat) with avg(h t_xhat) = invstd (avg(h t_x) - mh mt - r m1).
  double mt, r, mh, m1, mth, k;
  void finish(double m, double is) {
    mt = st / m, r = sxt / m, mh = sh / m, m1 = shx / m, mth = sth / m;
    k = sthx / m + is * (sht / m - mh * mt - r * m1);
  }
  // t_dx for one element with tangent t_xhat (dx = invstd (h - mh - xhat m1), invstd' = -invstd r)
  double t_dx(double is, double xh, double h, double th, double txh) const {
    const double dx = is * (h - mh - xh * m1);
    return -is * r * dx + is * (th - mth - txh * m1 - xh * k);
  }
};

}  // namespace

// x, t_x, t_y are (N, C, L); mean/invstd, gamma, t_gamma/t_beta are (C)
template <typename T>
void batchnorm_forward_jvp_ref(const NormJvpParams<T>& p, int threads) {
  const T *x = p.x, *mean = p.mean, *invstd = p.invstd, *gamma = p.gamma, *tx = p.t_x;
  T* ty = p.t_y;
  const int64_t N = p.N, C = p.C, L = p.L;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    const double mu = mean[c], is = invstd[c], m = double(N * L);
    double st = 0, sxt = 0;  // sum(t_x), sum(xhat t_x); zero without t_x
    if (tx)
      for (int64_t n = 0; n < N; ++n)
        for (int64_t l = 0; l < L; ++l) {
          const int64_t i = (n * C + c) * L + l;
          st += double(tx[i]);
          sxt += (double(x[i]) - mu) * is * double(tx[i]);
        }
    const double mt = st / m, r = sxt / m;
    const double g = gamma ? double(gamma[c]) : 1.0, tg = at(p.t_gamma, c), tb = at(p.t_beta, c);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t l = 0; l < L; ++l) {
        const int64_t i = (n * C + c) * L + l;
        const double xh = (double(x[i]) - mu) * is;
        ty[i] = T(g * is * (at(tx, i) - mt - xh * r) + xh * tg + tb);
      }
  }
}

// dy, x, t_dy, t_x, t_dx are (N, C, L); mean/invstd, gamma, t_gamma, t_dgamma/t_dbeta are (C)
template <typename T>
void batchnorm_backward_jvp_ref(const NormJvpParams<T>& p, int threads) {
  const T *dy = p.dy, *x = p.x, *mean = p.mean, *invstd = p.invstd, *gamma = p.gamma;
  const T *tdy = p.t_dy, *tx = p.t_x;
  T *tdx = p.t_dx, *tdgamma = p.t_dgamma, *tdbeta = p.t_dbeta;
  const int64_t N = p.N, C = p.C, L = p.L;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    const double mu = mean[c], is = invstd[c], m = double(N * L);
    const double g = gamma ? double(gamma[c]) : 1.0, tg = at(p.t_gamma, c);
    BackwardJvpSums s;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t l = 0; l < L; ++l) {
        const int64_t i = (n * C + c) * L + l;
        const double d = double(dy[i]);
        s.add((double(x[i]) - mu) * is, at(tx, i), g * d, g * at(tdy, i) + tg * d);
      }
    s.finish(m, is);
    double sg = 0, sb = 0;  // sum(t_dy xhat + dy t_xhat), sum(t_dy)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t l = 0; l < L; ++l) {
        const int64_t i = (n * C + c) * L + l;
        const double xh = (double(x[i]) - mu) * is, d = double(dy[i]), td = at(tdy, i);
        const double txh = is * (at(tx, i) - s.mt - xh * s.r);
        tdx[i] = T(s.t_dx(is, xh, g * d, g * td + tg * d, txh));
        sg += td * xh + d * txh;
        sb += td;
      }
    if (tdgamma) tdgamma[c] = T(sg);
    if (tdbeta) tdbeta[c] = T(sb);
  }
}

// x, t_x, t_y are (R, C); mean/invstd are (R); gamma, t_gamma/t_beta are (C)
template <typename T>
void layernorm_forward_jvp_ref(const NormJvpParams<T>& p, int threads) {
  const T *x = p.x, *mean = p.mean, *invstd = p.invstd, *gamma = p.gamma, *tx = p.t_x;
  T* ty = p.t_y;
  const int64_t R = p.N, C = p.C;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    const T* xr = x + r * C;
    const T* tr = tx ? tx + r * C : nullptr;
    const double mu = mean[r], is = invstd[r];
    double st = 0, sxt = 0;  // sum(t_x), sum(xhat t_x); zero without t_x
    if (tr)
      for (int64_t j = 0; j < C; ++j) {
        st += double(tr[j]);
        sxt += (double(xr[j]) - mu) * is * double(tr[j]);
      }
    const double mt = st / double(C), rr = sxt / double(C);
    for (int64_t j = 0; j < C; ++j) {
      const double xh = (double(xr[j]) - mu) * is, g = gamma ? double(gamma[j]) : 1.0;
      ty[r * C + j] = T(g * is * (at(tr, j) - mt - xh * rr) + xh * at(p.t_gamma, j) + at(p.t_beta, j));
    }
  }
}

// dy, x, t_dy, t_x, t_dx are (R, C); mean/invstd are (R); gamma, t_gamma, t_dgamma/t_dbeta are (C)
template <typename T>
void layernorm_backward_jvp_ref(const NormJvpParams<T>& p, int threads) {
  const T *dy = p.dy, *x = p.x, *mean = p.mean, *invstd = p.invstd, *gamma = p.gamma;
  const T *tdy = p.t_dy, *tx = p.t_x, *tgamma = p.t_gamma;
  T *tdx = p.t_dx, *tdgamma = p.t_dgamma, *tdbeta = p.t_dbeta;
  const int64_t R = p.N, C = p.C;
  // t_dgamma/t_dbeta: one partial row per thread, summed after the parallel region (no atomics).
  const bool params = tdgamma != nullptr;
  std::vector<double> partial(params ? size_t(threads) * 2 * C : 0, 0.0);
#pragma omp parallel num_threads(threads)
  {
    double* pg = params ? partial.data() + size_t(omp_get_thread_num()) * 2 * C : nullptr;
    double* pb = params ? pg + C : nullptr;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; ++r) {
      const int64_t o = r * C;
      const double mu = mean[r], is = invstd[r];
      BackwardJvpSums s;
      for (int64_t j = 0; j < C; ++j) {
        const double d = double(dy[o + j]), g = gamma ? double(gamma[j]) : 1.0;
        s.add((double(x[o + j]) - mu) * is, at(tx, o + j), g * d, g * at(tdy, o + j) + at(tgamma, j) * d);
      }
      s.finish(double(C), is);
      for (int64_t j = 0; j < C; ++j) {
        const double xh = (double(x[o + j]) - mu) * is, d = double(dy[o + j]), td = at(tdy, o + j);
        const double g = gamma ? double(gamma[j]) : 1.0;
        const double txh = is * (at(tx, o + j) - s.mt - xh * s.r);
        tdx[o + j] = T(s.t_dx(is, xh, g * d, g * td + at(tgamma, j) * d, txh));
        if (params) {
          pg[j] += td * xh + d * txh;
          pb[j] += td;
        }
      }
    }
  }
  if (!params) return;
  for (int64_t j = 0; j < C; ++j) {
    double sg = 0, sb = 0;
    for (int t = 0; t < threads; ++t) {
      sg += partial[size_t(t) * 2 * C + j];
      sb += partial[size_t(t) * 2 * C + C + j];
    }
    tdgamma[j] = T(sg);
    tdbeta[j] = T(sb);
  }
}

#define DEEPCALC_NORM_JVP_INSTANTIATE(T)                                       \
  template void batchnorm_forward_jvp_ref<T>(const NormJvpParams<T>&, int);  \
  template void batchnorm_backward_jvp_ref<T>(const NormJvpParams<T>&, int); \
  template void layernorm_forward_jvp_ref<T>(const NormJvpParams<T>&, int);  \
  template void layernorm_backward_jvp_ref<T>(const NormJvpParams<T>&, int);
DEEPCALC_NORM_JVP_INSTANTIATE(float)
DEEPCALC_NORM_JVP_INSTANTIATE(double)
#undef DEEPCALC_NORM_JVP_INSTANTIATE

}  // namespace deepcalc
