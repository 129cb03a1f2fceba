// SIMD float32 attention kernels written once over the vector traits V (vec_avx2.h /
// vec_avx512.h), instantiated in attention_avx2.cpp and attention_avx512.cpp.
//
// Tiles: BQ query rows x BK keys (kBkForward, kBkBackward). K (and V for the backward's dP, tK
// for the tangent) is packed once per call into key panels of NR = 2 vectors: panel element
// (d, r) at [d * NR + r], keys past Lk zero. Two register-tile products do all the FLOPs:
//   score_tile:  C (MR x NR) = A rows (MR x D, broadcast) . panel (D x NR): S = Q K^T, dP = dO V^T;
//   bcast_gemm:  C (rows x n) (+)= A (rows x red, read by strides, broadcast) B (red x n, rows
//                contiguous): O += P V, dV += P^T dO, dK += dS^T Q, dQ += dS K, tO += (P tS) V.
// The forward keeps a running max m and sum l per row (online softmax): a new key tile with
// max m' rescales O and l by exp(m - m'). The backward and the tangent read P = exp(S - lse)
// directly. Causal tiles past the diagonal are skipped; the diagonal tiles mask per element.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "attention/attention.h"
#include "gemm/gemm_microkernel.h"

namespace deepcalc::attention_simd {

constexpr int64_t BQ = 64;   // query rows per tile: Q, O, dQ tiles of 64 x D stay in L2
// keys per tile BK: the forward and the tangent take 128 (K, V tiles of 32 KiB at D = 64 in L2;
// half as many online-softmax rescales: ~5% faster than 64), the backward 64 (its dK, dV
// accumulators stay in L1; 128 is no faster, and wastes more of a causal diagonal tile)
constexpr int64_t kBkForward = 128;
constexpr int64_t kBkBackward = 64;
constexpr float kNegInf = -INFINITY;
// Causal position of a tile: diag = i0 - j0 (its first query row minus its first key), so local
// key c is hidden from local row r when c > diag + r; kNoDiag when nothing is hidden.
constexpr int64_t kNoDiag = INT64_MAX / 4;

// out[x] = sum over the nc chunks of parts[c * n + x]: the dQ (or tdQ) partials of a backward
// whose heads were split among threads. A worksharing loop: call it inside the parallel region.
inline void sum_chunk_parts(const float* parts, float* out, int64_t nc, int64_t n) {
#pragma omp for schedule(static)
  for (int64_t x = 0; x < n; ++x) {
    float t = 0;
    for (int64_t c = 0; c < nc; ++c) t += parts[c * n + x];
    out[x] = t;
  }
}

inline float nan_max(float a, float b) {  // NaN if either is NaN
  return (std::isnan(a) || std::isnan(b)) ? NAN : (a > b ? a : b);
}

// Panels of NR keys from rows src (L x D, row stride D): dst[(p * D + d) * NR + r], keys past L
// zero: the GEMM's packing of a transposed operand (8 x 8 register transposes).
template <int NR>
void pack_panels(const float* src, int64_t L, int64_t D, float* dst) {
  for (int64_t p = 0; p * NR < L; ++p)
    gemm_kernel::pack_rows<float, NR>(src + p * NR * D, D, int(std::min<int64_t>(NR, L - p * NR)),
                                      D, dst + p * D * NR);
}

// C[i][0..NR) (row stride ldc) = (acc ? C : 0) + sum_d a[i * lda + d] panel[d * NR + :], i < mr.
template <class V, int MR>
inline void score_tile(const float* a, int64_t lda, int mr, const float* panel, int64_t D,
                       float* c, int64_t ldc, bool acc) {
  using R = typename V::reg;
  constexpr int W = V::width, NR = 2 * W;
  const float* rows[MR];
  for (int i = 0; i < MR; ++i) rows[i] = a + std::min(i, mr - 1) * lda;
  R s0[MR], s1[MR];
  for (int i = 0; i < MR; ++i) s0[i] = s1[i] = V::zero();
#pragma GCC unroll 4
  for (int64_t d = 0; d < D; ++d) {
    const R b0 = V::load(panel + d * NR), b1 = V::load(panel + d * NR + W);
    for (int i = 0; i < MR; ++i) {
      const R x = V::set1(rows[i][d]);
      s0[i] = V::fmadd(x, b0, s0[i]);
      s1[i] = V::fmadd(x, b1, s1[i]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    if (i >= mr) break;
    float* ci = c + i * ldc;
    if (acc) {
      s0[i] = V::add(s0[i], V::load(ci));
      s1[i] = V::add(s1[i], V::load(ci + W));
    }
    V::store(ci, s0[i]);
    V::store(ci + W, s1[i]);
  }
}

// c (mq x npan NR, row stride BK): scores of query rows [0, mq) against npan key panels. Panels
// a causal tile hides from a whole row block are not computed: zeros (when not acc) stand in.
template <class V, int MR, int64_t BK>
void scores_block(const float* a, int64_t lda, int64_t mq, const float* panels, int64_t npan,
                  int64_t D, float* c, bool acc, int64_t diag = kNoDiag) {
  constexpr int NR = 2 * V::width;
  for (int64_t i = 0; i < mq; i += MR) {
    const int mr = int(std::min<int64_t>(MR, mq - i));
    for (int64_t p = 0; p < npan; ++p) {
      float* ci = c + i * BK + p * NR;
      if (p * NR > diag + i + mr - 1) {
        if (!acc)
          for (int r = 0; r < mr; ++r) std::fill(ci + r * BK, ci + r * BK + NR, 0.f);
        continue;
      }
      score_tile<V, MR>(a + i * lda, lda, mr, panels + p * D * NR, D, ci, BK, acc);
    }
  }
}

// C[i][c] (row stride ldc, i < rows, c < n) = beta_i C + sum_{r < red} A(i, r) B[r * ldb + c]
// with A(i, r) = a[i * sa_i + r * sa_r]; beta per row, or null: C += ... when acc, else C = ...
// (C not read). With a causal diag (rows: queries, reduction: keys), row block i0 .. i0 + mr
// reduces over keys r < diag + i0 + mr only: A is 0 past each row's last visible key.
template <class V, int MR, int NV>
void bcast_gemm(const float* a, int64_t sa_i, int64_t sa_r, int64_t rows, int64_t red_all,
                const float* b, int64_t ldb, int64_t n, float* c, int64_t ldc, const float* beta,
                bool acc = false, int64_t diag = kNoDiag) {
  using R = typename V::reg;
  constexpr int W = V::width;
  for (int64_t i0 = 0; i0 < rows; i0 += MR) {
    const int mr = int(std::min<int64_t>(MR, rows - i0));
    const int64_t red = std::max<int64_t>(0, std::min(red_all, diag + i0 + mr));
    const float* ar[MR];
    for (int i = 0; i < MR; ++i) ar[i] = a + (i0 + std::min(i, mr - 1)) * sa_i;
    for (int64_t c0 = 0; c0 < n; c0 += NV * W) {
      const int64_t cols = std::min<int64_t>(NV * W, n - c0);
      R sum[MR][NV];
      for (int i = 0; i < MR; ++i)
        for (int v = 0; v < NV; ++v) sum[i][v] = V::zero();
      if (cols == NV * W) {
#pragma GCC unroll 2
        for (int64_t r = 0; r < red; ++r) {
          const float* br = b + r * ldb + c0;
          R bv[NV];
          for (int v = 0; v < NV; ++v) bv[v] = V::load(br + v * W);
          for (int i = 0; i < MR; ++i) {
            const R x = V::set1(ar[i][r * sa_r]);
            for (int v = 0; v < NV; ++v) sum[i][v] = V::fmadd(x, bv[v], sum[i][v]);
          }
        }
      } else {
        for (int64_t r = 0; r < red; ++r) {
          const float* br = b + r * ldb + c0;
          R bv[NV];
          for (int v = 0; v < NV; ++v) {
            const int64_t left = cols - v * W;
            bv[v] = left >= W ? V::load(br + v * W) : left > 0 ? V::load_tail(br + v * W, left, 0.f)
                                                               : V::zero();
          }
          for (int i = 0; i < MR; ++i) {
            const R x = V::set1(ar[i][r * sa_r]);
            for (int v = 0; v < NV; ++v) sum[i][v] = V::fmadd(x, bv[v], sum[i][v]);
          }
        }
      }
      for (int i = 0; i < mr; ++i) {
        float* ci = c + (i0 + i) * ldc + c0;
        const bool keep = beta || acc;
        const R bi = V::set1(beta ? beta[i0 + i] : 1.f);
        for (int v = 0; v < NV; ++v) {
          const int64_t left = cols - v * W;
          if (left <= 0) break;
          if (left >= W) {
            V::store(ci + v * W, keep ? V::fmadd(bi, V::load(ci + v * W), sum[i][v]) : sum[i][v]);
          } else {
            const R old = keep ? V::load_tail(ci + v * W, left, 0.f) : V::zero();
            V::store_tail(ci + v * W, keep ? V::fmadd(bi, old, sum[i][v]) : sum[i][v], left);
          }
        }
      }
    }
  }
}

template <class V>
inline float max_row(const float* s, int64_t nk) {
  constexpr int W = V::width;
  typename V::reg m = V::set1(kNegInf);
  int64_t j = 0;
  for (; j + W <= nk; j += W) m = V::max(m, V::load(s + j));
  if (j < nk) m = V::max(m, V::load_tail(s + j, nk - j, kNegInf));
  return V::reduce_max(m);
}

// Scale the raw dot products of row s (query i, keys j0 .. j0 + nk) and apply the masks.
// Returns the row's max after masking (NaN if any score is NaN), in the same pass when no key
// of the row is hidden by a boolean mask or causality.
template <class V>
inline float mask_row(const AttentionShape<float>& sh, int64_t moff, int64_t i, int64_t j0,
                      int64_t nk, float* s) {
  constexpr int W = V::width;
  const typename V::reg sc = V::set1(sh.scale);
  const float* add = sh.mask_add ? sh.mask_add + moff + j0 : nullptr;
  typename V::reg mx = V::set1(kNegInf);
  int64_t j = 0;
  for (; j + W <= nk; j += W) {
    typename V::reg x = V::mul(V::load(s + j), sc);
    if (add) x = V::add(x, V::load(add + j));
    V::store(s + j, x);
    mx = V::max(mx, x);
  }
  if (j < nk) {
    typename V::reg x = V::mul(V::load_tail(s + j, nk - j, 0.f), sc);
    if (add) x = V::add(x, V::load_tail(add + j, nk - j, 0.f));
    V::store_tail(s + j, x, nk - j);
    mx = V::max(mx, V::load_tail(s + j, nk - j, kNegInf));
  }
  const int64_t hidden_from = sh.causal ? std::max<int64_t>(0, i + 1 - j0) : nk;
  if (!sh.mask_bool && hidden_from >= nk) return V::reduce_max(mx);
  if (sh.mask_bool) {
    const uint8_t* mb = sh.mask_bool + moff + j0;
    for (int64_t t = 0; t < nk; ++t)
      if (!mb[t]) s[t] = kNegInf;
  }
  for (int64_t t = hidden_from; t < nk; ++t) s[t] = kNegInf;
  return max_row<V>(s, nk);
}

// s[0..nk) = exp(s - m); returns the sum. m finite or NaN.
template <class V>
inline float exp_row(float* s, int64_t nk, float m) {
  constexpr int W = V::width;
  const typename V::reg vm = V::set1(m);
  typename V::reg acc = V::zero();
  int64_t j = 0;
  for (; j + W <= nk; j += W) {
    const typename V::reg e = V::exp(V::sub(V::load(s + j), vm));
    V::store(s + j, e);
    acc = V::add(acc, e);
  }
  if (j < nk) {
    const typename V::reg e = V::exp(V::sub(V::load_tail(s + j, nk - j, kNegInf), vm));
    V::store_tail(s + j, e, nk - j);
    acc = V::add(acc, e);
  }
  return V::reduce_add(acc);
}


// Keys a query tile [i0, i0 + mq) can see: all, or j < i0 + mq when causal.
inline int64_t key_end(const AttentionShape<float>& sh, int64_t i0, int64_t mq) {
  return sh.causal ? std::min(sh.Lk, i0 + mq) : sh.Lk;
}

// P rows of a tile from raw scores: exp(S - lse_i), 0 where lse = -inf; entries past nk zeroed.
template <class V, int64_t BK>
void probs_tile(const AttentionShape<float>& sh, int64_t b, int64_t h, int64_t i0, int64_t mq,
                int64_t j0, int64_t nk, const float* lse, float* s) {
  for (int64_t i = 0; i < mq; ++i) {
    float* si = s + i * BK;
    const float l = lse[i0 + i];
    if (std::isinf(l) && l < 0) {
      std::fill(si, si + BK, 0.f);
      continue;
    }
    mask_row<V>(sh, attention_mask_row(sh, b, h, i0 + i), i0 + i, j0, nk, si);
    exp_row<V>(si, nk, l);
    std::fill(si + nk, si + BK, 0.f);
  }
}

struct Panels {
  std::vector<float> data;
  int64_t per_head = 0;  // floats per head
};

// Packs every head's rows (L x D each) into key panels, in parallel over heads.
template <int NR>
Panels pack_all(const float* src, int64_t BH, int64_t L, int64_t D, int threads) {
  Panels p;
  p.per_head = (L + NR - 1) / NR * NR * D;
  p.data.resize(size_t(BH * p.per_head));
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t bh = 0; bh < BH; ++bh) pack_panels<NR>(src + bh * L * D, L, D, p.data.data() + bh * p.per_head);
  return p;
}

template <class V, int MRS, int MRP, int NVP>
void forward(const AttentionForwardParams<float>& p, int threads) {
  constexpr int NR = 2 * V::width;
  constexpr int64_t BK = kBkForward;
  const AttentionShape<float>& sh = p.s;
  const int64_t D = sh.D, Dv = sh.Dv, Lq = sh.Lq, Lk = sh.Lk, BH = sh.B * sh.H;
  const int64_t nqt = (Lq + BQ - 1) / BQ;
  const Panels kp = pack_all<NR>(p.k, BH, Lk, D, threads);
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> s(BQ * BK), oacc(BQ * Dv), m(BQ), l(BQ), alpha(BQ);
#pragma omp for schedule(dynamic, 1)
    for (int64_t w = 0; w < BH * nqt; ++w) {
      const int64_t bh = w / nqt, i0 = (w % nqt) * BQ, mq = std::min(BQ, Lq - i0);
      const int64_t b = bh / sh.H, h = bh % sh.H;
      const float* q = p.q + (bh * Lq + i0) * D;
      const float* v = p.v + bh * Lk * Dv;
      std::fill(m.begin(), m.end(), kNegInf);
      std::fill(l.begin(), l.end(), 0.f);
      const int64_t kend = key_end(sh, i0, mq);
      for (int64_t j0 = 0; j0 < kend; j0 += BK) {
        const int64_t nk = std::min(BK, kend - j0);
        const int64_t diag = sh.causal ? i0 - j0 : kNoDiag;
        scores_block<V, MRS, BK>(q, D, mq, kp.data.data() + bh * kp.per_head + j0 * D,
                             (nk + NR - 1) / NR, D, s.data(), false, diag);
        for (int64_t i = 0; i < mq; ++i) {
          float* si = s.data() + i * BK;
          const float mnew =
              nan_max(m[i], mask_row<V>(sh, attention_mask_row(sh, b, h, i0 + i), i0 + i, j0, nk, si));
          const float muse = (std::isinf(mnew) && mnew < 0) ? 0.f : mnew;
          alpha[i] = j0 == 0 ? 0.f : std::exp(m[i] - muse);
          l[i] = l[i] * alpha[i] + exp_row<V>(si, nk, muse);
          m[i] = mnew;
        }
        bcast_gemm<V, MRP, NVP>(s.data(), BK, 1, mq, nk, v + j0 * Dv, Dv, Dv, oacc.data(), Dv,
                                j0 == 0 ? nullptr : alpha.data(), false, diag);
      }
      float* o = p.o + (bh * Lq + i0) * Dv;
      float* lse = p.lse + bh * Lq + i0;
      for (int64_t i = 0; i < mq; ++i) {
        const bool dead = kend == 0 || l[i] == 0.f;
        const float inv = dead ? 0.f : 1.f / l[i];
        for (int64_t d = 0; d < Dv; ++d) o[i * Dv + d] = dead ? 0.f : oacc[i * Dv + d] * inv;
        lse[i] = dead ? kNegInf : m[i] + std::log(l[i]);
      }
    }
  }
}

// Work items: (head, chunk of key tiles); a chunk owns its key tiles' dK, dV rows and, when a
// head has several chunks, its own dQ partial (summed after), so no two threads write one value.
template <class V, int MRS, int MRP, int NVP>
void backward(const AttentionBackwardParams<float>& p, int threads) {
  constexpr int NR = 2 * V::width;
  constexpr int64_t BK = kBkBackward;
  const AttentionShape<float>& sh = p.s;
  const int64_t D = sh.D, Dv = sh.Dv, Lq = sh.Lq, Lk = sh.Lk, BH = sh.B * sh.H;
  const int64_t nkt = (Lk + BK - 1) / BK;
  // chunks per head: 1 when heads alone balance the threads, else about 2 per thread in all
  const int64_t nc = (BH % threads == 0 || BH >= 4 * threads)
                         ? 1 : std::min<int64_t>(nkt, (2 * threads + BH - 1) / BH);
  const Panels kp = pack_all<NR>(p.k, BH, Lk, D, threads);
  const Panels vp = pack_all<NR>(p.v, BH, Lk, Dv, threads);
  std::vector<float> delta(size_t(BH * Lq));
  std::vector<float> dq_part(nc > 1 ? size_t(nc * BH * Lq * D) : 0);
#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(static)
    for (int64_t r = 0; r < BH * Lq; ++r) {
      float d = 0;
      for (int64_t c = 0; c < Dv; ++c) d += p.dout[r * Dv + c] * p.o[r * Dv + c];
      delta[r] = d;
    }
    std::vector<float> s(BQ * BK), dp(BQ * BK), dkacc(BK * D), dvacc(BK * Dv);
#pragma omp for schedule(dynamic, 1)
    for (int64_t w = 0; w < BH * nc; ++w) {
      const int64_t bh = w / nc, c = w % nc, b = bh / sh.H, h = bh % sh.H;
      float* dq = nc > 1 ? dq_part.data() + (c * BH + bh) * Lq * D : p.dq + bh * Lq * D;
      std::fill(dq, dq + Lq * D, 0.f);
      const float *q = p.q + bh * Lq * D, *dout = p.dout + bh * Lq * Dv;
      const float *k = p.k + bh * Lk * D, *lse = p.lse + bh * Lq, *dl = delta.data() + bh * Lq;
      for (int64_t kt = c; kt < nkt; kt += nc) {
        const int64_t j0 = kt * BK, nk = std::min(BK, Lk - j0);
        const int64_t npan = (nk + NR - 1) / NR;
        std::fill(dkacc.begin(), dkacc.end(), 0.f);
        std::fill(dvacc.begin(), dvacc.end(), 0.f);
        for (int64_t i0 = sh.causal ? j0 / BQ * BQ : 0; i0 < Lq; i0 += BQ) {
          const int64_t mq = std::min(BQ, Lq - i0);
          const int64_t diag = sh.causal ? i0 - j0 : kNoDiag;
          scores_block<V, MRS, BK>(q + i0 * D, D, mq, kp.data.data() + bh * kp.per_head + j0 * D, npan,
                               D, s.data(), false, diag);
          probs_tile<V, BK>(sh, b, h, i0, mq, j0, nk, lse, s.data());
          scores_block<V, MRS, BK>(dout + i0 * Dv, Dv, mq, vp.data.data() + bh * vp.per_head + j0 * Dv,
                               npan, Dv, dp.data(), false, diag);
          for (int64_t i = 0; i < mq; ++i) {  // dS = scale P (dP - Delta)
            const typename V::reg di = V::set1(dl[i0 + i]), sc = V::set1(sh.scale);
            float *pi = s.data() + i * BK, *gi = dp.data() + i * BK;
            for (int64_t j = 0; j < npan * NR; j += V::width)
              V::store(gi + j, V::mul(V::mul(V::load(pi + j), V::sub(V::load(gi + j), di)), sc));
          }
          // dV += P^T dO, dK += dS^T Q (rows: keys; reduction: the tile's queries)
          bcast_gemm<V, MRP, NVP>(s.data(), 1, BK, nk, mq, dout + i0 * Dv, Dv, Dv, dvacc.data(), Dv,
                                  nullptr, true);
          bcast_gemm<V, MRP, NVP>(dp.data(), 1, BK, nk, mq, q + i0 * D, D, D, dkacc.data(), D,
                                  nullptr, true);
          // dQ += dS K
          bcast_gemm<V, MRP, NVP>(dp.data(), BK, 1, mq, nk, k + j0 * D, D, D, dq + i0 * D, D, nullptr, true,
                                  diag);
        }
        std::copy(dkacc.begin(), dkacc.begin() + nk * D, p.dk + (bh * Lk + j0) * D);
        std::copy(dvacc.begin(), dvacc.begin() + nk * Dv, p.dv + (bh * Lk + j0) * Dv);
      }
    }
    if (nc > 1) sum_chunk_parts(dq_part.data(), p.dq, nc, BH * Lq * D);
  }
}

template <class V, int MRS, int MRP, int NVP>
void jvp(const AttentionJvpParams<float>& p, int threads) {
  constexpr int NR = 2 * V::width;
  constexpr int64_t BK = kBkForward;
  const AttentionShape<float>& sh = p.s;
  const int64_t D = sh.D, Dv = sh.Dv, Lq = sh.Lq, Lk = sh.Lk, BH = sh.B * sh.H;
  const int64_t nqt = (Lq + BQ - 1) / BQ;
  const Panels kp = pack_all<NR>(p.k, BH, Lk, D, threads);
  const Panels tkp = p.tk ? pack_all<NR>(p.tk, BH, Lk, D, threads) : Panels{};
  const bool ts_any = p.tq || p.tk;
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> s(BQ * BK), ts(BQ * BK), u(BQ);
#pragma omp for schedule(dynamic, 1)
    for (int64_t w = 0; w < BH * nqt; ++w) {
      const int64_t bh = w / nqt, i0 = (w % nqt) * BQ, mq = std::min(BQ, Lq - i0);
      const int64_t b = bh / sh.H, h = bh % sh.H;
      const float* q = p.q + (bh * Lq + i0) * D;
      const float* v = p.v + bh * Lk * Dv;
      float* tout = p.tout + (bh * Lq + i0) * Dv;
      std::fill(tout, tout + mq * Dv, 0.f);
      std::fill(u.begin(), u.end(), 0.f);
      const int64_t kend = key_end(sh, i0, mq);
      for (int64_t j0 = 0; j0 < kend; j0 += BK) {
        const int64_t nk = std::min(BK, kend - j0), npan = (nk + NR - 1) / NR;
        const float* kpan = kp.data.data() + bh * kp.per_head + j0 * D;
        const int64_t diag = sh.causal ? i0 - j0 : kNoDiag;
        scores_block<V, MRS, BK>(q, D, mq, kpan, npan, D, s.data(), false, diag);
        probs_tile<V, BK>(sh, b, h, i0, mq, j0, nk, p.lse + bh * Lq, s.data());
        if (ts_any) {
          if (p.tq)
            scores_block<V, MRS, BK>(p.tq + (bh * Lq + i0) * D, D, mq, kpan, npan, D, ts.data(), false,
                                 diag);
          if (p.tk)
            scores_block<V, MRS, BK>(q, D, mq, tkp.data.data() + bh * tkp.per_head + j0 * D, npan, D,
                                 ts.data(), p.tq != nullptr, diag);
          for (int64_t i = 0; i < mq; ++i) {  // ts <- P * scale tS, u += rowsum
            const typename V::reg sc = V::set1(sh.scale);
            typename V::reg acc = V::zero();
            float *pi = s.data() + i * BK, *ti = ts.data() + i * BK;
            for (int64_t j = 0; j < npan * NR; j += V::width) {
              const typename V::reg x = V::mul(V::mul(V::load(ti + j), sc), V::load(pi + j));
              V::store(ti + j, x);
              acc = V::add(acc, x);
            }
            u[i] += V::reduce_add(acc);
          }
          bcast_gemm<V, MRP, NVP>(ts.data(), BK, 1, mq, nk, v + j0 * Dv, Dv, Dv, tout, Dv, nullptr, true,
                                  diag);
        }
        if (p.tv)
          bcast_gemm<V, MRP, NVP>(s.data(), BK, 1, mq, nk, p.tv + (bh * Lk + j0) * Dv, Dv, Dv, tout,
                                  Dv, nullptr, true, diag);
      }
      const float* o = p.o + (bh * Lq + i0) * Dv;
      if (ts_any)
        for (int64_t i = 0; i < mq; ++i)
          for (int64_t d = 0; d < Dv; ++d) tout[i * Dv + d] -= u[i] * o[i * Dv + d];
      if (p.u) std::copy(u.begin(), u.begin() + mq, p.u + bh * Lq + i0);
    }
  }
}

// Work items as the backward's: (head, chunk of key tiles), each owning its keys' tdK, tdV rows
// and, for a split head, its own tdQ partial.
template <class V, int MRS, int MRP, int NVP>
void backward_jvp(const AttentionBackwardJvpParams<float>& p, int threads) {
  constexpr int NR = 2 * V::width;
  constexpr int64_t BK = kBkBackward;
  using R = typename V::reg;
  const AttentionShape<float>& sh = p.s;
  const int64_t D = sh.D, Dv = sh.Dv, Lq = sh.Lq, Lk = sh.Lk, BH = sh.B * sh.H;
  const int64_t nkt = (Lk + BK - 1) / BK;
  const int64_t nc = (BH % threads == 0 || BH >= 4 * threads)
                         ? 1 : std::min<int64_t>(nkt, (2 * threads + BH - 1) / BH);
  const Panels kp = pack_all<NR>(p.k, BH, Lk, D, threads);
  const Panels vp = pack_all<NR>(p.v, BH, Lk, Dv, threads);
  const Panels tkp = p.tk ? pack_all<NR>(p.tk, BH, Lk, D, threads) : Panels{};
  const Panels tvp = p.tv ? pack_all<NR>(p.tv, BH, Lk, Dv, threads) : Panels{};
  const bool ts_any = p.tq || p.tk, tdp_any = p.tv || p.tdout;
  std::vector<float> delta(size_t(BH * Lq)), tdelta(size_t(BH * Lq));
  std::vector<float> dq_part(nc > 1 ? size_t(nc * BH * Lq * D) : 0);
#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(static)
    for (int64_t r = 0; r < BH * Lq; ++r) {  // Delta = rowsum(dO O), tDelta = rowsum(tdO O + dO tO)
      float d = 0, t = 0;
      for (int64_t c = 0; c < Dv; ++c) {
        d += p.dout[r * Dv + c] * p.o[r * Dv + c];
        t += p.dout[r * Dv + c] * p.tout[r * Dv + c] + (p.tdout ? p.tdout[r * Dv + c] * p.o[r * Dv + c] : 0.f);
      }
      delta[r] = d;
      tdelta[r] = t;
    }
    std::vector<float> s(BQ * BK), tps(BQ * BK), ds(BQ * BK), tds(BQ * BK), dk(BK * D), dv(BK * Dv);
#pragma omp for schedule(dynamic, 1)
    for (int64_t w = 0; w < BH * nc; ++w) {
      const int64_t bh = w / nc, c = w % nc, b = bh / sh.H, h = bh % sh.H;
      float* tdq = nc > 1 ? dq_part.data() + (c * BH + bh) * Lq * D : p.tdq + bh * Lq * D;
      std::fill(tdq, tdq + Lq * D, 0.f);
      const float *q = p.q + bh * Lq * D, *dout = p.dout + bh * Lq * Dv, *k = p.k + bh * Lk * D;
      const float* tq = p.tq ? p.tq + bh * Lq * D : nullptr;
      const float* tk = p.tk ? p.tk + bh * Lk * D : nullptr;
      const float* tdout = p.tdout ? p.tdout + bh * Lq * Dv : nullptr;
      const float *lse = p.lse + bh * Lq, *u = p.u + bh * Lq;
      const float *dl = delta.data() + bh * Lq, *tdl = tdelta.data() + bh * Lq;
      for (int64_t kt = c; kt < nkt; kt += nc) {
        const int64_t j0 = kt * BK, nk = std::min(BK, Lk - j0), npan = (nk + NR - 1) / NR;
        const float* kpan = kp.data.data() + bh * kp.per_head + j0 * D;
        const float* vpan = vp.data.data() + bh * vp.per_head + j0 * Dv;
        std::fill(dk.begin(), dk.end(), 0.f);
        std::fill(dv.begin(), dv.end(), 0.f);
        for (int64_t i0 = sh.causal ? j0 / BQ * BQ : 0; i0 < Lq; i0 += BQ) {
          const int64_t mq = std::min(BQ, Lq - i0);
          const int64_t diag = sh.causal ? i0 - j0 : kNoDiag;
          scores_block<V, MRS, BK>(q + i0 * D, D, mq, kpan, npan, D, s.data(), false, diag);
          probs_tile<V, BK>(sh, b, h, i0, mq, j0, nk, lse, s.data());
          scores_block<V, MRS, BK>(dout + i0 * Dv, Dv, mq, vpan, npan, Dv, ds.data(), false, diag);
          std::fill(tps.begin(), tps.end(), 0.f);
          if (tq) scores_block<V, MRS, BK>(tq + i0 * D, D, mq, kpan, npan, D, tps.data(), true, diag);
          if (tk)
            scores_block<V, MRS, BK>(q + i0 * D, D, mq, tkp.data.data() + bh * tkp.per_head + j0 * D,
                                     npan, D, tps.data(), true, diag);
          std::fill(tds.begin(), tds.end(), 0.f);
          if (tdout)
            scores_block<V, MRS, BK>(tdout + i0 * Dv, Dv, mq, vpan, npan, Dv, tds.data(), true, diag);
          if (p.tv)
            scores_block<V, MRS, BK>(dout + i0 * Dv, Dv, mq, tvp.data.data() + bh * tvp.per_head + j0 * Dv,
                                     npan, Dv, tds.data(), true, diag);
          const R sc = V::set1(sh.scale);
          for (int64_t i = 0; i < mq; ++i) {
            // tP = P (scale tS - u);  dS = scale P (dP - Delta);
            // tdS = scale (tP (dP - Delta) + P (tdP - tDelta))
            const R di = V::set1(dl[i0 + i]), ti = V::set1(tdl[i0 + i]), ui = V::set1(u[i0 + i]);
            float *pi = s.data() + i * BK, *tpi = tps.data() + i * BK;
            float *dsi = ds.data() + i * BK, *tdsi = tds.data() + i * BK;
            for (int64_t j = 0; j < npan * NR; j += V::width) {
              const R pj = V::load(pi + j);
              const R tp = ts_any ? V::mul(pj, V::sub(V::mul(V::load(tpi + j), sc), ui)) : V::zero();
              const R dd = V::sub(V::load(dsi + j), di);
              const R tdp = tdp_any ? V::load(tdsi + j) : V::zero();
              V::store(tpi + j, tp);
              V::store(dsi + j, V::mul(V::mul(pj, dd), sc));
              V::store(tdsi + j, V::mul(V::fmadd(tp, dd, V::mul(pj, V::sub(tdp, ti))), sc));
            }
          }
          // tdV += tP^T dO + P^T tdO;  tdK += tdS^T Q + dS^T tQ  (rows: keys)
          bcast_gemm<V, MRP, NVP>(tps.data(), 1, BK, nk, mq, dout + i0 * Dv, Dv, Dv, dv.data(), Dv, nullptr, true);
          if (tdout)
            bcast_gemm<V, MRP, NVP>(s.data(), 1, BK, nk, mq, tdout + i0 * Dv, Dv, Dv, dv.data(), Dv, nullptr, true);
          bcast_gemm<V, MRP, NVP>(tds.data(), 1, BK, nk, mq, q + i0 * D, D, D, dk.data(), D, nullptr, true);
          if (tq)
            bcast_gemm<V, MRP, NVP>(ds.data(), 1, BK, nk, mq, tq + i0 * D, D, D, dk.data(), D, nullptr, true);
          // tdQ += tdS K + dS tK  (rows: queries)
          bcast_gemm<V, MRP, NVP>(tds.data(), BK, 1, mq, nk, k + j0 * D, D, D, tdq + i0 * D, D, nullptr,
                                  true, diag);
          if (tk)
            bcast_gemm<V, MRP, NVP>(ds.data(), BK, 1, mq, nk, tk + j0 * D, D, D, tdq + i0 * D, D, nullptr,
                                    true, diag);
        }
        std::copy(dk.begin(), dk.begin() + nk * D, p.tdk + (bh * Lk + j0) * D);
        std::copy(dv.begin(), dv.begin() + nk * Dv, p.tdv + (bh * Lk + j0) * Dv);
      }
    }
    if (nc > 1) sum_chunk_parts(dq_part.data(), p.tdq, nc, BH * Lq * D);
  }
}

}  // namespace deepcalc::attention_simd
