// Scalar reference attention kernels (float32 and float64): one query row at a time, scores of a
// row in a buffer of Lk values (O(L) memory). They define correctness for the SIMD kernels.
#include <omp.h>

#include <cmath>
#include <vector>

#include "attention/attention.h"

namespace deepcalc {
namespace {

template <typename T>
T dot(const T* a, const T* b, int64_t n) {
  T s = 0;
  for (int64_t d = 0; d < n; ++d) s += a[d] * b[d];
  return s;
}

// s[j] = S_ij for row i of head (b, h); returns the row max (NaN if any score is NaN).
template <typename T>
T scores(const AttentionShape<T>& sh, const T* qi, const T* kh, int64_t b, int64_t h, int64_t i,
         T* s) {
  const int64_t moff = attention_mask_row(sh, b, h, i);
  T m = -static_cast<T>(INFINITY);
  bool nan = false;
  for (int64_t j = 0; j < sh.Lk; ++j) {
    s[j] = attention_score(sh, moff, i, j, dot(qi, kh + j * sh.D, sh.D));
    nan |= std::isnan(s[j]);
    m = s[j] > m ? s[j] : m;
  }
  return nan ? static_cast<T>(NAN) : m;
}

// P_ij = exp(S_ij - lse_i), 0 for a fully masked row (lse = -inf).
template <typename T>
void probs(const T* s, int64_t n, T lse, T* p) {
  for (int64_t j = 0; j < n; ++j) p[j] = std::isinf(lse) && lse < 0 ? T(0) : std::exp(s[j] - lse);
}

template <typename T>
void forward(const AttentionForwardParams<T>& p, int threads) {
  const AttentionShape<T>& sh = p.s;
  const int64_t D = sh.D, Dv = sh.Dv, Lq = sh.Lq, Lk = sh.Lk;
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> s(Lk);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < sh.B * sh.H * Lq; ++r) {
      const int64_t bh = r / Lq, i = r % Lq;
      const T* kh = p.k + bh * Lk * D;
      const T* vh = p.v + bh * Lk * Dv;
      T* oi = p.o + r * Dv;
      const T m = scores(sh, p.q + r * D, kh, bh / sh.H, bh % sh.H, i, s.data());
      for (int64_t d = 0; d < Dv; ++d) oi[d] = 0;
      if (std::isinf(m) && m < 0) {  // every key masked
        p.lse[r] = m;
        continue;
      }
      T l = 0;
      for (int64_t j = 0; j < Lk; ++j) {
        const T e = std::exp(s[j] - m);
        l += e;
        for (int64_t d = 0; d < Dv; ++d) oi[d] += e * vh[j * Dv + d];
      }
      for (int64_t d = 0; d < Dv; ++d) oi[d] /= l;
      p.lse[r] = m + std::log(l);
    }
  }
}

// One head per thread: dK and dV of a head are sums over all its query rows.
template <typename T>
void backward(const AttentionBackwardParams<T>& p, int threads) {
  const AttentionShape<T>& sh = p.s;
  const int64_t D = sh.D, Dv = sh.Dv, Lq = sh.Lq, Lk = sh.Lk;
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> s(Lk), pr(Lk);
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < sh.B * sh.H; ++bh) {
      const T *kh = p.k + bh * Lk * D, *vh = p.v + bh * Lk * Dv;
      T *dkh = p.dk + bh * Lk * D, *dvh = p.dv + bh * Lk * Dv;
      for (int64_t x = 0; x < Lk * D; ++x) dkh[x] = 0;
      for (int64_t x = 0; x < Lk * Dv; ++x) dvh[x] = 0;
      for (int64_t i = 0; i < Lq; ++i) {
        const int64_t r = bh * Lq + i;
        const T *qi = p.q + r * D, *doi = p.dout + r * Dv;
        T* dqi = p.dq + r * D;
        scores(sh, qi, kh, bh / sh.H, bh % sh.H, i, s.data());
        probs(s.data(), Lk, p.lse[r], pr.data());
        const T delta = dot(doi, p.o + r * Dv, Dv);
        for (int64_t d = 0; d < D; ++d) dqi[d] = 0;
        for (int64_t j = 0; j < Lk; ++j) {
          const T pj = pr[j];
          const T ds = pj * (dot(doi, vh + j * Dv, Dv) - delta) * sh.scale;
          for (int64_t d = 0; d < Dv; ++d) dvh[j * Dv + d] += pj * doi[d];
          for (int64_t d = 0; d < D; ++d) {
            dqi[d] += ds * kh[j * D + d];
            dkh[j * D + d] += ds * qi[d];
          }
        }
      }
    }
  }
}

template <typename T>
void jvp(const AttentionJvpParams<T>& p, int threads) {
  const AttentionShape<T>& sh = p.s;
  const int64_t D = sh.D, Dv = sh.Dv, Lq = sh.Lq, Lk = sh.Lk;
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> s(Lk), pr(Lk);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < sh.B * sh.H * Lq; ++r) {
      const int64_t bh = r / Lq, i = r % Lq;
      const T *qi = p.q + r * D, *kh = p.k + bh * Lk * D, *vh = p.v + bh * Lk * Dv;
      const T* tqi = p.tq ? p.tq + r * D : nullptr;
      const T* tkh = p.tk ? p.tk + bh * Lk * D : nullptr;
      const T* tvh = p.tv ? p.tv + bh * Lk * Dv : nullptr;
      T* ti = p.tout + r * Dv;
      scores(sh, qi, kh, bh / sh.H, bh % sh.H, i, s.data());
      probs(s.data(), Lk, p.lse[r], pr.data());
      for (int64_t d = 0; d < Dv; ++d) ti[d] = 0;
      T u = 0;
      for (int64_t j = 0; j < Lk; ++j) {
        const T pj = pr[j];
        T ts = 0;
        if (tqi) ts += dot(tqi, kh + j * D, D);
        if (tkh) ts += dot(qi, tkh + j * D, D);
        ts *= sh.scale;
        u += pj * ts;
        for (int64_t d = 0; d < Dv; ++d)
          ti[d] += pj * (ts * vh[j * Dv + d] + (tvh ? tvh[j * Dv + d] : T(0)));
      }
      for (int64_t d = 0; d < Dv; ++d) ti[d] -= u * p.o[r * Dv + d];
      if (p.u) p.u[r] = u;
    }
  }
}

// One head per thread, as the backward.
template <typename T>
void backward_jvp(const AttentionBackwardJvpParams<T>& p, int threads) {
  const AttentionShape<T>& sh = p.s;
  const int64_t D = sh.D, Dv = sh.Dv, Lq = sh.Lq, Lk = sh.Lk;
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> s(Lk), pr(Lk);
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < sh.B * sh.H; ++bh) {
      const T *kh = p.k + bh * Lk * D, *vh = p.v + bh * Lk * Dv;
      const T* tkh = p.tk ? p.tk + bh * Lk * D : nullptr;
      const T* tvh = p.tv ? p.tv + bh * Lk * Dv : nullptr;
      T *tdkh = p.tdk + bh * Lk * D, *tdvh = p.tdv + bh * Lk * Dv;
      for (int64_t x = 0; x < Lk * D; ++x) tdkh[x] = 0;
      for (int64_t x = 0; x < Lk * Dv; ++x) tdvh[x] = 0;
      for (int64_t i = 0; i < Lq; ++i) {
        const int64_t r = bh * Lq + i;
        const T *qi = p.q + r * D, *doi = p.dout + r * Dv, *oi = p.o + r * Dv;
        const T* tqi = p.tq ? p.tq + r * D : nullptr;
        const T* tdoi = p.tdout ? p.tdout + r * Dv : nullptr;
        T* tdqi = p.tdq + r * D;
        scores(sh, qi, kh, bh / sh.H, bh % sh.H, i, s.data());
        probs(s.data(), Lk, p.lse[r], pr.data());
        const T delta = dot(doi, oi, Dv);
        const T tdelta = (tdoi ? dot(tdoi, oi, Dv) : T(0)) + dot(doi, p.tout + r * Dv, Dv);
        const T ui = p.u[r];
        for (int64_t d = 0; d < D; ++d) tdqi[d] = 0;
        for (int64_t j = 0; j < Lk; ++j) {
          const T pj = pr[j];
          T ts = 0;
          if (tqi) ts += dot(tqi, kh + j * D, D);
          if (tkh) ts += dot(qi, tkh + j * D, D);
          const T tp = pj * (ts * sh.scale - ui);
          const T dp = dot(doi, vh + j * Dv, Dv);
          const T tdp = (tdoi ? dot(tdoi, vh + j * Dv, Dv) : T(0)) + (tvh ? dot(doi, tvh + j * Dv, Dv) : T(0));
          const T ds = pj * (dp - delta) * sh.scale;
          const T tds = (tp * (dp - delta) + pj * (tdp - tdelta)) * sh.scale;
          for (int64_t d = 0; d < Dv; ++d)
            tdvh[j * Dv + d] += tp * doi[d] + (tdoi ? pj * tdoi[d] : T(0));
          for (int64_t d = 0; d < D; ++d) {
            tdqi[d] += tds * kh[j * D + d] + (tkh ? ds * tkh[j * D + d] : T(0));
            tdkh[j * D + d] += tds * qi[d] + (tqi ? ds * tqi[d] : T(0));
          }
        }
      }
    }
  }
}

}  // namespace

void attention_forward_f32_ref(const AttentionForwardParams<float>& p, int t) { forward(p, t); }
void attention_forward_f64_ref(const AttentionForwardParams<double>& p, int t) { forward(p, t); }
void attention_backward_f32_ref(const AttentionBackwardParams<float>& p, int t) { backward(p, t); }
void attention_backward_f64_ref(const AttentionBackwardParams<double>& p, int t) { backward(p, t); }
void attention_jvp_f32_ref(const AttentionJvpParams<float>& p, int t) { jvp(p, t); }
void attention_jvp_f64_ref(const AttentionJvpParams<double>& p, int t) { jvp(p, t); }
void attention_backward_jvp_f32_ref(const AttentionBackwardJvpParams<float>& p, int t) { backward_jvp(p, t); }
void attention_backward_jvp_f64_ref(const AttentionBackwardJvpParams<double>& p, int t) { backward_jvp(p, t); }

}  // namespace deepcalc
