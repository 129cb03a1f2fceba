// The passes of jacobian.h's contract, written once over a GEMM function: the reference
// (jacobian_ref.cpp) runs them on the scalar reference GEMM, the fast path (jacobian.cpp) on
// the dispatched packed GEMM. Element-wise passes are plain OpenMP loops (memory-bound).
#pragma once
#include <cmath>
#include <vector>

#include "gemm/activation.h"
#include "gemm/gemm.h"
#include "jacobian/jacobian.h"

namespace deepcalc::jacobian_detail {

// d act'(z) / dz from the saved operand (y for relu/tanh/sigmoid, z for gelu):
//   tanh: a = 1 - y^2 -> -2 y (1 - y^2);  sigmoid: a = y (1 - y) -> a (1 - 2y);
//   gelu: a = Phi(z) + z phi(z) -> phi(z) (2 - z^2);  relu, none: 0.
template <typename T>
inline T act_second_derivative(T s, Activation act) {
  switch (act) {
    case Activation::Tanh: return T(-2) * s * (T(1) - s * s);
    case Activation::Sigmoid: return s * (T(1) - s) * (T(1) - T(2) * s);
    case Activation::GELU:
      return T(0.39894228040143267794) * std::exp(T(-0.5) * s * s) * (T(2) - s * s);
    default: return T(0);
  }
}

inline bool smooth(Activation a) { return a == Activation::Tanh || a == Activation::Sigmoid || a == Activation::GELU; }

// c = op(a) op(b) (+ c when accumulate): a row-major (m, k) or (k, m) if ta; b (k, n) or (n, k) if tb.
template <typename T>
void mm(gemm_fn<T> gemm, int64_t m, int64_t n, int64_t k, const T* a, bool ta, const T* b, bool tb,
        T* c, bool accumulate, int threads) {
  GemmParams<T> g;
  g.m = m, g.n = n, g.k = k;
  g.a = a, g.lda = ta ? m : k, g.trans_a = ta;
  g.b = b, g.ldb = tb ? k : n, g.trans_b = tb;
  g.c = c, g.ldc = n, g.beta = accumulate ? T(1) : T(0);
  gemm(g, threads);
}

// out[r, j] = in[r, j] * a[r % B, j] over P*B rows of width d.
template <typename T>
void rows_times(const T* in, const T* a, T* out, int64_t P, int64_t B, int64_t d, int threads) {
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
  for (int64_t p = 0; p < P; ++p)
    for (int64_t i = 0; i < B; ++i) {
      const T* src = in + (p * B + i) * d;
      const T* ai = a + i * d;
      T* dst = out + (p * B + i) * d;
      for (int64_t j = 0; j < d; ++j) dst[j] = src[j] * ai[j];
    }
}

template <typename T>
void run(const JacobianPenaltyParams<T>& p, gemm_fn<T> gemm, int threads) {
  const int64_t B = p.B, P = p.P, L = p.L, R = P * B;
  const int64_t* d = p.dims;
  int64_t dmax = 0;
  for (int64_t l = 0; l <= L; ++l) dmax = std::max(dmax, d[l]);
  // forward: h[l] (B, d_l) for l = 1..L; a[l] = act'(z_l), a2[l] = act''(z_l) (smooth layers)
  std::vector<std::vector<T>> h(L + 1), a(L + 1), a2(L + 1);
  for (int64_t l = 1; l <= L; ++l) {
    const Activation act = p.act[l - 1];
    h[l].resize(B * d[l]);
    std::vector<T> z(act == Activation::GELU ? B * d[l] : 0);
    GemmParams<T> g;
    g.m = B, g.n = d[l], g.k = d[l - 1];
    g.a = l == 1 ? p.x : h[l - 1].data(), g.lda = d[l - 1];
    g.b = p.w[l - 1], g.ldb = d[l - 1], g.trans_b = true;
    g.c = h[l].data(), g.ldc = d[l], g.bias = p.b[l - 1], g.act = act;
    if (!z.empty()) g.preact = z.data(), g.ldz = d[l];
    gemm(g, threads);
    const T* s = z.empty() ? h[l].data() : z.data();
    a[l].resize(B * d[l]);
    if (smooth(act)) a2[l].resize(B * d[l]);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t e = 0; e < B * d[l]; ++e) {
      a[l][e] = act_derivative(s[e], act);
      if (!a2[l].empty()) a2[l][e] = act_second_derivative(s[e], act);
    }
  }
  // projection chain: delta[l] (R, d_l); gproj[l] = g_l kept for smooth layers below the top
  std::vector<std::vector<T>> delta(L + 1), gproj(L + 1);
  std::vector<T> gtmp;
  const T* g = p.v;
  for (int64_t l = L; l >= 1; --l) {
    delta[l].resize(R * d[l]);
    rows_times(g, a[l].data(), delta[l].data(), P, B, d[l], threads);
    T* out = p.u;
    if (l > 1) {
      std::vector<T>& dst = smooth(p.act[l - 2]) ? gproj[l - 1] : gtmp;
      dst.resize(R * d[l - 1]);
      out = dst.data();
    }
    mm(gemm, R, d[l - 1], d[l], delta[l].data(), false, p.w[l - 1], false, out, false, threads);
    g = out;
  }
  double total = 0;
#pragma omp parallel for reduction(+ : total) num_threads(threads) schedule(static)
  for (int64_t i = 0; i < B; ++i) {
    double s = 0;
    for (int64_t q = 0; q < P; ++q) {
      const T* ur = p.u + (q * B + i) * d[0];
      for (int64_t k = 0; k < d[0]; ++k) s += double(ur[k]) * double(ur[k]);
    }
    if (p.sq) p.sq[i] = T(s);
    total += s;
  }
  p.penalty[0] = T(double(p.scale) * total);
  if (!p.dw) return;

  // adjoint chain: gbar_{l-1} -> dW_l, dbar_l, gbar_l and zbar_l
  std::vector<T> gbar(R * d[0]), gnext(R * dmax), dbar(R * dmax);
  const T two_scale = T(2) * p.scale;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t e = 0; e < R * d[0]; ++e) gbar[e] = two_scale * p.u[e];
  std::vector<std::vector<T>> zbar(L + 1);
  int64_t top = 0;  // highest smooth layer: the forward adjoint starts there
  for (int64_t l = 1; l <= L; ++l) {
    mm(gemm, d[l], d[l - 1], R, delta[l].data(), true, gbar.data(), false, p.dw[l - 1], false, threads);
    if (p.db[l - 1]) std::fill(p.db[l - 1], p.db[l - 1] + d[l], T(0));
    const bool is_smooth = smooth(p.act[l - 1]);
    if (l == L && !is_smooth) break;
    mm(gemm, R, d[l], d[l - 1], gbar.data(), false, p.w[l - 1], true, dbar.data(), false, threads);
    if (is_smooth) {
      top = l;
      const T* gl = l == L ? p.v : gproj[l].data();
      zbar[l].resize(B * d[l]);
#pragma omp parallel for num_threads(threads) schedule(static)
      for (int64_t e = 0; e < B * d[l]; ++e) {
        const int64_t i = e / d[l], j = e % d[l];
        T s = 0;
        for (int64_t q = 0; q < P; ++q) s += dbar[(q * B + i) * d[l] + j] * gl[(q * B + i) * d[l] + j];
        zbar[l][e] = a2[l][e] * s;
      }
    }
    if (l < L) {
      rows_times(dbar.data(), a[l].data(), gnext.data(), P, B, d[l], threads);
      gbar.swap(gnext);
      gnext.resize(R * dmax);
    }
  }
  // forward adjoint from the top smooth layer down: zt_l = zbar_l + (zt_{l+1} W_{l+1}) * a_l
  std::vector<T> zt, hbar;
  for (int64_t l = top; l >= 1; --l) {
    zt.assign(B * d[l], T(0));
    if (!zbar[l].empty()) std::copy(zbar[l].begin(), zbar[l].end(), zt.begin());
    if (l < top)
      for (int64_t e = 0; e < B * d[l]; ++e) zt[e] += hbar[e] * a[l][e];
    const T* hprev = l == 1 ? p.x : h[l - 1].data();
    mm(gemm, d[l], d[l - 1], B, zt.data(), true, hprev, false, p.dw[l - 1], true, threads);
    if (T* db = p.db[l - 1]) {
      for (int64_t j = 0; j < d[l]; ++j) {
        double s = 0;
        for (int64_t i = 0; i < B; ++i) s += zt[i * d[l] + j];
        db[j] = T(s);
      }
    }
    if (l > 1) {
      hbar.resize(B * d[l - 1]);
      mm(gemm, B, d[l - 1], d[l], zt.data(), false, p.w[l - 1], false, hbar.data(), false, threads);
    }
  }
}

}  // namespace deepcalc::jacobian_detail
