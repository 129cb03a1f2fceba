// Fused scaled dot-product attention on contiguous (B, H, L, D) arrays: forward (saves the row
// logsumexp), backward (recomputes P tile by tile), the forward-mode tangent and the backward's
// tangent (second order), O(L) memory.
//   S = scale * Q K^T, masked (bool: -inf where the mask is 0; additive: + mask; causal: -inf
//   where j > i), P = softmax_rows(S), O = P V, lse_i = log sum_j exp(S_ij).
// A row whose scores are all -inf gives O = 0 and lse = -inf (torch 2.13's CPU result); its P is
// taken as 0 by the backward and the tangent, so its gradients and tangents are 0.
#pragma once
#include <cstdint>

namespace deepcalc {

// Shapes: q (B, H, Lq, D), k (B, H, Lk, D), v (B, H, Lk, Dv), o (B, H, Lq, Dv), lse (B, H, Lq),
// all C-contiguous. Mask element (b, h, i, j) sits at mask[b*mask_sb + h*mask_sh + i*mask_sq + j]
// (strides in elements, 0 along broadcast axes; the key axis is contiguous): mask_bool (nonzero =
// may attend) or mask_add (added to the scores), at most one of them.
template <typename T>
struct AttentionShape {
  int64_t B = 0, H = 0, Lq = 0, Lk = 0, D = 0, Dv = 0;
  T scale = 1;
  bool causal = false;
  const uint8_t* mask_bool = nullptr;
  const T* mask_add = nullptr;
  int64_t mask_sb = 0, mask_sh = 0, mask_sq = 0;
};

template <typename T>
struct AttentionForwardParams {
  AttentionShape<T> s;
  const T *q = nullptr, *k = nullptr, *v = nullptr;
  T* o = nullptr;
  T* lse = nullptr;
};

// With Delta_i = sum_d dO_id O_id and P_ij = exp(S_ij - lse_i):
//   dV = P^T dO,  dP = dO V^T,  dS = P * (dP - Delta),  dQ = scale dS K,  dK = scale dS^T Q.
template <typename T>
struct AttentionBackwardParams {
  AttentionShape<T> s;
  const T *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr, *lse = nullptr, *dout = nullptr;
  T *dq = nullptr, *dk = nullptr, *dv = nullptr;
};

// Tangent of O along (tq, tk, tv) (any may be null = zero), from the forward's O and lse:
//   tS = scale (tQ K^T + Q tK^T),  u_i = sum_j P_ij tS_ij,
//   tO_i = sum_j P_ij (tS_ij V_j + tV_j) - u_i O_i.
// u (B, H, Lq) receives u_i when not null (the backward's tangent reads it).
template <typename T>
struct AttentionJvpParams {
  AttentionShape<T> s;
  const T *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr, *lse = nullptr;
  const T *tq = nullptr, *tk = nullptr, *tv = nullptr;
  T* tout = nullptr;
  T* u = nullptr;
};

// Tangent of the backward's (dq, dk, dv) along (tq, tk, tv, tdout) (any may be null = zero),
// from the forward's O, lse, the tangent tO of O and u (the tangent kernel's outputs):
//   tP = P (tS - u),  tdP = tdO V^T + dO tV^T,  tDelta = rowsum(tdO O + dO tO),
//   tdS = tP (dP - Delta) + P (tdP - tDelta),
//   tdV = tP^T dO + P^T tdO,  tdQ = scale (tdS K + dS tK),  tdK = scale (tdS^T Q + dS^T tQ).
template <typename T>
struct AttentionBackwardJvpParams {
  AttentionShape<T> s;
  const T *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr, *lse = nullptr, *dout = nullptr;
  const T *tout = nullptr, *u = nullptr;
  const T *tq = nullptr, *tk = nullptr, *tv = nullptr, *tdout = nullptr;
  T *tdq = nullptr, *tdk = nullptr, *tdv = nullptr;
};

template <typename T>
using attention_forward_fn = void (*)(const AttentionForwardParams<T>& p, int threads);
template <typename T>
using attention_backward_fn = void (*)(const AttentionBackwardParams<T>& p, int threads);
template <typename T>
using attention_jvp_fn = void (*)(const AttentionJvpParams<T>& p, int threads);
template <typename T>
using attention_backward_jvp_fn = void (*)(const AttentionBackwardJvpParams<T>& p, int threads);

// Scalar reference kernels (always built; define correctness). float64 has only these.
void attention_forward_f32_ref(const AttentionForwardParams<float>& p, int threads);
void attention_forward_f64_ref(const AttentionForwardParams<double>& p, int threads);
void attention_backward_f32_ref(const AttentionBackwardParams<float>& p, int threads);
void attention_backward_f64_ref(const AttentionBackwardParams<double>& p, int threads);
void attention_jvp_f32_ref(const AttentionJvpParams<float>& p, int threads);
void attention_jvp_f64_ref(const AttentionJvpParams<double>& p, int threads);
void attention_backward_jvp_f32_ref(const AttentionBackwardJvpParams<float>& p, int threads);
void attention_backward_jvp_f64_ref(const AttentionBackwardJvpParams<double>& p, int threads);

void attention_forward_f32_avx2(const AttentionForwardParams<float>& p, int threads);
void attention_backward_f32_avx2(const AttentionBackwardParams<float>& p, int threads);
void attention_jvp_f32_avx2(const AttentionJvpParams<float>& p, int threads);
void attention_backward_jvp_f32_avx2(const AttentionBackwardJvpParams<float>& p, int threads);
void attention_forward_f32_avx512(const AttentionForwardParams<float>& p, int threads);
void attention_backward_f32_avx512(const AttentionBackwardParams<float>& p, int threads);
void attention_jvp_f32_avx512(const AttentionJvpParams<float>& p, int threads);
void attention_backward_jvp_f32_avx512(const AttentionBackwardJvpParams<float>& p, int threads);

// Chosen once from cpu_capability() (attention_dispatch.cpp).
attention_forward_fn<float> attention_forward_f32();
attention_forward_fn<double> attention_forward_f64();
attention_backward_fn<float> attention_backward_f32();
attention_backward_fn<double> attention_backward_f64();
attention_jvp_fn<float> attention_jvp_f32();
attention_jvp_fn<double> attention_jvp_f64();
attention_backward_jvp_fn<float> attention_backward_jvp_f32();
attention_backward_jvp_fn<double> attention_backward_jvp_f64();

// The score S_ij after scale and mask, from the raw dot product qk = q_i . k_j: the one
// definition the reference and the SIMD kernels share for the masking rules.
template <typename T>
inline T attention_score(const AttentionShape<T>& s, int64_t moff, int64_t i, int64_t j, T qk) {
  if (s.causal && j > i) return -static_cast<T>(__builtin_inf());
  if (s.mask_bool && !s.mask_bool[moff + j]) return -static_cast<T>(__builtin_inf());
  T x = qk * s.scale;
  if (s.mask_add) x += s.mask_add[moff + j];
  return x;
}

// Mask offset of row (b, h, i).
template <typename T>
inline int64_t attention_mask_row(const AttentionShape<T>& s, int64_t b, int64_t h, int64_t i) {
  return b * s.mask_sb + h * s.mask_sh + i * s.mask_sq;
}

}  // namespace deepcalc
