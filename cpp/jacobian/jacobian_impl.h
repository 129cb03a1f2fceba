// The passes of jacobian.h's contract, written once over a GEMM function and compiled once per
// instruction set: the including file names the namespace (DEEPCALC_JACOBIAN_NS) so that each
// compilation's functions stay its own. The reference (jacobian_ref.cpp) runs the passes on the
// scalar reference GEMM with baseline flags; jacobian_avx2.cpp / jacobian_avx512.cpp on the
// dispatched packed GEMM, their element-wise passes (OpenMP loops, memory-bound) vectorized for
// that ISA; on one thread below hw::kElementwiseGrain elements (waking a second costs more).
#include <cmath>
#include <stdexcept>
#include <vector>

#include "common/hw.h"
#include "gemm/activation.h"
#include "gemm/gemm.h"
#include "jacobian/jacobian.h"

#ifndef DEEPCALC_JACOBIAN_NS
#error "define DEEPCALC_JACOBIAN_NS (a namespace per compilation) before including jacobian_impl.h"
#endif

namespace deepcalc::DEEPCALC_JACOBIAN_NS {

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

inline bool smooth(Activation a) {
  return a == Activation::Tanh || a == Activation::Sigmoid || a == Activation::GELU;
}

// c = alpha op(a) op(b) (+ c when accumulate): a row-major (m, k) or (k, m) if ta; b (k, n) or
// (n, k) if tb.
template <typename T>
void mm(gemm_fn<T> gemm, int64_t m, int64_t n, int64_t k, const T* a, bool ta, const T* b, bool tb,
        T* c, bool accumulate, int threads, T alpha = T(1)) {
  GemmParams<T> g;
  g.m = m, g.n = n, g.k = k;
  g.a = a, g.lda = ta ? m : k, g.trans_a = ta;
  g.b = b, g.ldb = tb ? k : n, g.trans_b = tb;
  g.c = c, g.ldc = n, g.alpha = alpha, g.beta = accumulate ? T(1) : T(0);
  gemm(g, threads);
}

// Uninitialized scratch carved from one per-thread block that only grows: the passes need
// ~(4 + 3P) B * sum(widths) values a call, and fresh zeroed vectors cost more than the
// element-wise passes that fill them. Each thread (Python threads release the GIL) has its own.
template <typename T>
class Arena {
 public:
  explicit Arena(int64_t total) : total_(total) {
    static thread_local std::vector<T> block;
    if (int64_t(block.size()) < total) block.resize(total);
    base_ = block.data();
  }
  T* take(int64_t n) {
    if (used_ + n > total_) throw std::logic_error("jacobian_penalty: scratch size miscounted");
    T* p = base_ + used_;
    used_ += n;
    return p;
  }

 private:
  T* base_ = nullptr;
  int64_t used_ = 0, total_ = 0;
};

// out[r, j] = in[r, j] * a[r % B, j] over P*B rows of width d.
template <typename T>
void rows_times(const T* in, const T* a, T* out, int64_t P, int64_t B, int64_t d, int threads) {
#pragma omp parallel for collapse(2) if (P * B * d > hw::kElementwiseGrain) num_threads(threads) \
    schedule(static)
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
  int64_t dmax = 0, dsum = 0;
  for (int64_t l = 0; l <= L; ++l) dmax = std::max(dmax, d[l]), dsum += d[l];
  Arena<T> arena(B * dsum * 5 + R * dsum * 2 + R * dmax * 3 + B * dmax * 2);
  // forward: h[l] (B, d_l) for l = 1..L (the caller's when given); a[l] = act'(z_l) and
  // a2[l] = act''(z_l) for smooth layers, from the saved operand (y, or z for gelu)
  std::vector<const T*> h(L + 1, nullptr);
  std::vector<T*> a(L + 1, nullptr), a2(L + 1, nullptr);
  h[0] = p.x;
  for (int64_t l = 1; l <= L; ++l) {
    const Activation act = p.act[l - 1];
    const T* s = nullptr;
    if (p.fwd_y) {
      h[l] = p.fwd_y[l - 1];
      s = act == Activation::GELU ? p.fwd_z[l - 1] : h[l];
    } else {
      T* y = arena.take(B * d[l]);
      T* z = act == Activation::GELU ? arena.take(B * d[l]) : nullptr;
      GemmParams<T> g;
      g.m = B, g.n = d[l], g.k = d[l - 1];
      g.a = h[l - 1], g.lda = d[l - 1];
      g.b = p.w[l - 1], g.ldb = d[l - 1], g.trans_b = true;
      g.c = y, g.ldc = d[l], g.bias = p.b[l - 1], g.act = act;
      if (z) g.preact = z, g.ldz = d[l];
      gemm(g, threads);
      h[l] = y;
      s = z ? z : y;
    }
    T* al = a[l] = arena.take(B * d[l]);
    T* a2l = a2[l] = smooth(act) ? arena.take(B * d[l]) : nullptr;
#pragma omp parallel for if (B * d[l] > hw::kElementwiseGrain) num_threads(threads) schedule(static)
    for (int64_t e = 0; e < B * d[l]; ++e) {
      al[e] = act_derivative(s[e], act);
      if (a2l) a2l[e] = act_second_derivative(s[e], act);
    }
  }
  // projection chain: delta[l] (R, d_l); g_{l-1} kept in gproj[l-1] where layer l-1 is smooth
  std::vector<T*> delta(L + 1, nullptr), gproj(L + 1, nullptr);
  T* gtmp = arena.take(R * dmax);
  const T* g = p.v;
  for (int64_t l = L; l >= 1; --l) {
    delta[l] = arena.take(R * d[l]);
    rows_times(g, a[l], delta[l], P, B, d[l], threads);
    T* out = p.u;
    if (l > 1) out = smooth(p.act[l - 2]) ? (gproj[l - 1] = arena.take(R * d[l - 1])) : gtmp;
    mm(gemm, R, d[l - 1], d[l], delta[l], false, p.w[l - 1], false, out, false, threads);
    g = out;
  }
  double total = 0;
#pragma omp parallel for reduction(+ : total) if (R * d[0] > hw::kElementwiseGrain) \
    num_threads(threads) schedule(static)
  for (int64_t i = 0; i < B; ++i) {
    double s = 0;
    for (int64_t q = 0; q < P; ++q) {
      const T* ur = p.u + (q * B + i) * d[0];
#pragma omp simd reduction(+ : s)
      for (int64_t k = 0; k < d[0]; ++k) s += double(ur[k]) * double(ur[k]);
    }
    if (p.sq) p.sq[i] = T(s);
    total += s;
  }
  p.penalty[0] = T(double(p.scale) * total);
  if (!p.dw) return;

  // adjoint chain: gbar_0 = 2 scale u enters the GEMMs as alpha; gbar_{l-1} -> dW_l, dbar_l,
  // gbar_l = dbar_l * a_l and zbar_l
  const T* gbar = p.u;
  T gbar_alpha = T(2) * p.scale;
  T* dbar = arena.take(R * dmax);
  T* gnext = arena.take(R * dmax);
  std::vector<T*> zbar(L + 1, nullptr);
  int64_t top = 0;  // highest smooth layer: the forward adjoint starts there
  for (int64_t l = 1; l <= L; ++l) {
    mm(gemm, d[l], d[l - 1], R, delta[l], true, gbar, false, p.dw[l - 1], false, threads, gbar_alpha);
    if (p.db[l - 1]) std::fill(p.db[l - 1], p.db[l - 1] + d[l], T(0));
    const bool is_smooth = smooth(p.act[l - 1]);
    if (l == L && !is_smooth) break;
    mm(gemm, R, d[l], d[l - 1], gbar, false, p.w[l - 1], true, dbar, false, threads, gbar_alpha);
    if (is_smooth) {
      top = l;
      const T* gl = l == L ? p.v : gproj[l];
      T* zb = zbar[l] = arena.take(B * d[l]);
      const T* a2l = a2[l];
      const int64_t dl = d[l];
#pragma omp parallel for if (R * dl > hw::kElementwiseGrain) num_threads(threads) schedule(static)
      for (int64_t i = 0; i < B; ++i) {
        T* zi = zb + i * dl;
        for (int64_t j = 0; j < dl; ++j) zi[j] = 0;
        for (int64_t q = 0; q < P; ++q) {
          const T* dr = dbar + (q * B + i) * dl;
          const T* gr = gl + (q * B + i) * dl;
          for (int64_t j = 0; j < dl; ++j) zi[j] += dr[j] * gr[j];
        }
        for (int64_t j = 0; j < dl; ++j) zi[j] *= a2l[i * dl + j];
      }
    }
    if (l < L) {
      rows_times(dbar, a[l], gnext, P, B, d[l], threads);  // gbar_{l-1} is consumed by now
      gbar = gnext;
      gbar_alpha = T(1);
    }
  }
  // forward adjoint from the top smooth layer down: zt_l = zbar_l + (zt_{l+1} W_{l+1}) * a_l
  T* zt = arena.take(B * dmax);
  T* hbar = arena.take(B * dmax);
  for (int64_t l = top; l >= 1; --l) {
    for (int64_t e = 0; e < B * d[l]; ++e)
      zt[e] = (zbar[l] ? zbar[l][e] : T(0)) + (l < top ? hbar[e] * a[l][e] : T(0));
    mm(gemm, d[l], d[l - 1], B, zt, true, h[l - 1], false, p.dw[l - 1], true, threads);
    if (T* db = p.db[l - 1]) {  // column sums, row by row (contiguous), in double
      std::vector<double> acc(d[l], 0.0);
      for (int64_t i = 0; i < B; ++i)
        for (int64_t j = 0; j < d[l]; ++j) acc[j] += zt[i * d[l] + j];
      for (int64_t j = 0; j < d[l]; ++j) db[j] = T(acc[j]);
    }
    if (l > 1) mm(gemm, B, d[l - 1], d[l], zt, false, p.w[l - 1], false, hbar, false, threads);
  }
}

}  // namespace deepcalc::DEEPCALC_JACOBIAN_NS
