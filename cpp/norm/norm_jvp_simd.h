// Vectorized float32 forward-mode (JVP) kernels of BatchNorm / LayerNorm (formulas in norm.h at
// NormJvpParams), instantiated per instruction set in norm_avx2.cpp and norm_avx512.cpp: the
// loops are written for the compiler to vectorize under that file's -m flags (omp simd), with the
// reference's double arithmetic. The reference walks BatchNorm's channel c down the rows (stride
// C); here (N, C) BatchNorm streams whole rows and keeps per-channel sums in arrays, so every
// access is contiguous. (N, C, L) BatchNorm with L > 1 uses the reference.
#pragma once
#include <omp.h>

#include <cstdint>
#include <vector>

#include "norm/norm.h"

namespace deepcalc::norm_jvp_simd {

// A per-channel (or per-element) input, or `fill` where the pointer is null (a null tangent is
// zero, a null gamma one), widened to double once.
inline std::vector<double> widen(const float* a, int64_t n, double fill) {
  std::vector<double> out(size_t(n), fill);
  if (a)
    for (int64_t i = 0; i < n; ++i) out[size_t(i)] = a[i];
  return out;
}

// Channels [c0, c1) of this thread.
inline void channel_slice(int64_t C, int64_t& c0, int64_t& c1) {
  const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
  c0 = C * t / nt;
  c1 = C * (t + 1) / nt;
}

// A null (N, C) tangent as zeros, so the loops below need no branch per element.
inline const float* or_zeros(const float* t, int64_t n, std::vector<float>& zeros) {
  if (t) return t;
  zeros.assign(size_t(n), 0.0f);
  return zeros.data();
}

// x, t_x, t_y are (N, C); mean/invstd, gamma, t_gamma/t_beta are (C)
inline void batchnorm_forward_jvp(const NormJvpParams<float>& p, int threads) {
  const int64_t N = p.N, C = p.C;
  std::vector<float> zeros;
  const float *__restrict x = p.x, *__restrict tx = or_zeros(p.t_x, N * C, zeros);
  float* __restrict ty = p.t_y;
  const std::vector<double> mu = widen(p.mean, C, 0), is = widen(p.invstd, C, 0),
                            g = widen(p.gamma, C, 1), tg = widen(p.t_gamma, C, 0),
                            tb = widen(p.t_beta, C, 0);
  std::vector<double> mt(size_t(C), 0.0), r(size_t(C), 0.0);  // avg(t_x), avg(xhat t_x)
  const double m = double(N);
#pragma omp parallel num_threads(threads)
  {
    int64_t c0, c1;
    channel_slice(C, c0, c1);
    double *__restrict st = mt.data(), *__restrict sxt = r.data();
    for (int64_t n = 0; n < N; ++n) {
      const float *xr = x + n * C, *tr = tx + n * C;
#pragma omp simd
      for (int64_t c = c0; c < c1; ++c) {
        const double t = tr[c];
        st[c] += t;
        sxt[c] += (double(xr[c]) - mu[c]) * is[c] * t;
      }
    }
#pragma omp simd
    for (int64_t c = c0; c < c1; ++c) st[c] /= m, sxt[c] /= m;
    for (int64_t n = 0; n < N; ++n) {
      const float *xr = x + n * C, *tr = tx + n * C;
      float* yr = ty + n * C;
#pragma omp simd
      for (int64_t c = c0; c < c1; ++c) {
        const double xh = (double(xr[c]) - mu[c]) * is[c];
        yr[c] = float(g[c] * is[c] * (double(tr[c]) - st[c] - xh * sxt[c]) + xh * tg[c] + tb[c]);
      }
    }
  }
}

// dy, x, t_dy, t_x, t_dx are (N, C); mean/invstd, gamma, t_gamma, t_dgamma/t_dbeta are (C).
// Per channel, with h = gamma dy and th = gamma t_dy + t_gamma dy: the seven sums of the
// reference's BackwardJvpSums, then t_dx per element and t_dgamma / t_dbeta.
inline void batchnorm_backward_jvp(const NormJvpParams<float>& p, int threads) {
  const int64_t N = p.N, C = p.C;
  std::vector<float> zx, zdy;
  const float *__restrict dy = p.dy, *__restrict x = p.x;
  const float *__restrict tx = or_zeros(p.t_x, N * C, zx), *__restrict tdy = or_zeros(p.t_dy, N * C, zdy);
  float* __restrict tdx = p.t_dx;
  const std::vector<double> mu = widen(p.mean, C, 0), is = widen(p.invstd, C, 0),
                            g = widen(p.gamma, C, 1), tg = widen(p.t_gamma, C, 0);
  // the sums, then (after finish) mt, r, mh, m1, mth, k in the same arrays; sht is scratch
  std::vector<double> buf(size_t(C) * 9, 0.0);
  double *__restrict st = buf.data(), *__restrict sxt = st + C, *__restrict sh = sxt + C,
                     *__restrict shx = sh + C, *__restrict sth = shx + C, *__restrict sthx = sth + C,
                     *__restrict sht = sthx + C, *__restrict sg = sht + C, *__restrict sb = sg + C;
  const double m = double(N);
#pragma omp parallel num_threads(threads)
  {
    int64_t c0, c1;
    channel_slice(C, c0, c1);
    for (int64_t n = 0; n < N; ++n) {
      const int64_t o = n * C;
#pragma omp simd
      for (int64_t c = c0; c < c1; ++c) {
        const double xh = (double(x[o + c]) - mu[c]) * is[c], t = tx[o + c], d = dy[o + c];
        const double h = g[c] * d, th = g[c] * double(tdy[o + c]) + tg[c] * d;
        st[c] += t, sxt[c] += xh * t, sh[c] += h, shx[c] += h * xh;
        sth[c] += th, sthx[c] += th * xh, sht[c] += h * t;
      }
    }
#pragma omp simd
    for (int64_t c = c0; c < c1; ++c) {
      st[c] /= m, sxt[c] /= m, sh[c] /= m, shx[c] /= m, sth[c] /= m;  // mt, r, mh, m1, mth
      sthx[c] = sthx[c] / m + is[c] * (sht[c] / m - sh[c] * st[c] - sxt[c] * shx[c]);  // k
    }
    for (int64_t n = 0; n < N; ++n) {
      const int64_t o = n * C;
#pragma omp simd
      for (int64_t c = c0; c < c1; ++c) {
        const double xh = (double(x[o + c]) - mu[c]) * is[c], d = dy[o + c], td = tdy[o + c];
        const double h = g[c] * d, th = g[c] * td + tg[c] * d;
        const double txh = is[c] * (double(tx[o + c]) - st[c] - xh * sxt[c]);
        const double dx = is[c] * (h - sh[c] - xh * shx[c]);
        tdx[o + c] = float(-is[c] * sxt[c] * dx + is[c] * (th - sth[c] - txh * shx[c] - xh * sthx[c]));
        sg[c] += td * xh + d * txh;
        sb[c] += td;
      }
    }
  }
  for (int64_t c = 0; c < C; ++c) {
    if (p.t_dgamma) p.t_dgamma[c] = float(sg[c]);
    if (p.t_dbeta) p.t_dbeta[c] = float(sb[c]);
  }
}

// x, t_x, t_y are (R, C); mean/invstd are (R); gamma, t_gamma/t_beta are (C)
inline void layernorm_forward_jvp(const NormJvpParams<float>& p, int threads) {
  const int64_t R = p.N, C = p.C;
  std::vector<float> zeros;
  const float *__restrict x = p.x, *__restrict tx = or_zeros(p.t_x, R * C, zeros);
  float* __restrict ty = p.t_y;
  const std::vector<double> g = widen(p.gamma, C, 1), tg = widen(p.t_gamma, C, 0),
                            tb = widen(p.t_beta, C, 0);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    const float *xr = x + r * C, *tr = tx + r * C;
    const double mu = p.mean[r], is = p.invstd[r];
    double st = 0, sxt = 0;
#pragma omp simd reduction(+ : st, sxt)
    for (int64_t j = 0; j < C; ++j) {
      const double t = tr[j];
      st += t;
      sxt += (double(xr[j]) - mu) * is * t;
    }
    const double mt = st / double(C), rr = sxt / double(C);
    float* yr = ty + r * C;
#pragma omp simd
    for (int64_t j = 0; j < C; ++j) {
      const double xh = (double(xr[j]) - mu) * is;
      yr[j] = float(g[j] * is * (double(tr[j]) - mt - xh * rr) + xh * tg[j] + tb[j]);
    }
  }
}

// dy, x, t_dy, t_x, t_dx are (R, C); mean/invstd are (R); gamma, t_gamma, t_dgamma/t_dbeta are (C).
// t_dgamma / t_dbeta: one partial row per thread, summed in thread order after the region.
inline void layernorm_backward_jvp(const NormJvpParams<float>& p, int threads) {
  const int64_t R = p.N, C = p.C;
  std::vector<float> zx, zdy;
  const float *__restrict dy = p.dy, *__restrict x = p.x;
  const float *__restrict tx = or_zeros(p.t_x, R * C, zx), *__restrict tdy = or_zeros(p.t_dy, R * C, zdy);
  const std::vector<double> g = widen(p.gamma, C, 1), tg = widen(p.t_gamma, C, 0);
  std::vector<double> partial(size_t(threads) * 2 * C, 0.0);
#pragma omp parallel num_threads(threads)
  {
    double* __restrict pg = partial.data() + size_t(omp_get_thread_num()) * 2 * C;
    double* __restrict pb = pg + C;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; ++r) {
      const int64_t o = r * C;
      const double mu = p.mean[r], is = p.invstd[r];
      double st = 0, sxt = 0, sh = 0, shx = 0, sth = 0, sthx = 0, sht = 0;
#pragma omp simd reduction(+ : st, sxt, sh, shx, sth, sthx, sht)
      for (int64_t j = 0; j < C; ++j) {
        const double xh = (double(x[o + j]) - mu) * is, t = tx[o + j], d = dy[o + j];
        const double h = g[j] * d, th = g[j] * double(tdy[o + j]) + tg[j] * d;
        st += t, sxt += xh * t, sh += h, shx += h * xh, sth += th, sthx += th * xh, sht += h * t;
      }
      const double m = double(C), mt = st / m, rr = sxt / m, mh = sh / m, m1 = shx / m, mth = sth / m;
      const double k = sthx / m + is * (sht / m - mh * mt - rr * m1);
#pragma omp simd
      for (int64_t j = 0; j < C; ++j) {
        const double xh = (double(x[o + j]) - mu) * is, d = dy[o + j], td = tdy[o + j];
        const double h = g[j] * d, th = g[j] * td + tg[j] * d;
        const double txh = is * (double(tx[o + j]) - mt - xh * rr);
        const double dx = is * (h - mh - xh * m1);
        p.t_dx[o + j] = float(-is * rr * dx + is * (th - mth - txh * m1 - xh * k));
        pg[j] += td * xh + d * txh;
        pb[j] += td;
      }
    }
  }
  if (!p.t_dgamma) return;
  for (int64_t j = 0; j < C; ++j) {
    double sg = 0, sb = 0;
    for (int t = 0; t < threads; ++t) sg += partial[size_t(t) * 2 * C + j], sb += partial[size_t(t) * 2 * C + C + j];
    p.t_dgamma[j] = float(sg);
    if (p.t_dbeta) p.t_dbeta[j] = float(sb);
  }
}

}  // namespace deepcalc::norm_jvp_simd

// Defines the float32 JVP entry points declared in norm.h for one instruction set; BatchNorm with
// L > 1 goes to the reference.
#define DEEPCALC_NORM_JVP_DEFINE(isa)                                                         \
  void batchnorm_forward_jvp_f32_##isa(const NormJvpParams<float>& p, int threads) {          \
    if (p.L != 1) return batchnorm_forward_jvp_ref<float>(p, threads);                        \
    norm_jvp_simd::batchnorm_forward_jvp(p, threads);                                         \
  }                                                                                           \
  void batchnorm_backward_jvp_f32_##isa(const NormJvpParams<float>& p, int threads) {         \
    if (p.L != 1) return batchnorm_backward_jvp_ref<float>(p, threads);                       \
    norm_jvp_simd::batchnorm_backward_jvp(p, threads);                                        \
  }                                                                                           \
  void layernorm_forward_jvp_f32_##isa(const NormJvpParams<float>& p, int threads) {          \
    norm_jvp_simd::layernorm_forward_jvp(p, threads);                                         \
  }                                                                                           \
  void layernorm_backward_jvp_f32_##isa(const NormJvpParams<float>& p, int threads) {         \
    norm_jvp_simd::layernorm_backward_jvp(p, threads);                                        \
  }
