// The fused Jacobian projection of an MLP (L layers h_l = act_l(h_{l-1} W_l^T + b_l), h_0 = x)
// and the gradient of its Jacobian penalty with respect to every weight and bias, in one call
// (Hoffman, Roberts & Yaida 2019). Projections v are stacked as extra rows: row r = p*B + i is
// projection p of sample i.
#pragma once
#include <cstdint>

#include "gemm/gemm.h"

namespace deepcalc {

// Contract. Widths d_0 = dims[0] (input) ... d_L = dims[L] = C (output).
//   x (B, d_0), v (P*B, C), w[l] (d_{l+1}, d_l), b[l] (d_{l+1}) or null, all contiguous.
//   Outputs: u (P*B, d_0) = v^T J, the projected Jacobians (u_r = d(v_r . f(x_i)) / dx_i);
//   sq (B) (may be null): sq_i = sum_p ||u_{p*B+i}||^2; penalty[0] = scale * sum_i sq_i;
//   dw (may be null: no gradient) and db (entries null for layers without bias): the gradient
//   of penalty[0] with respect to w[l] and b[l].
// The maths, with a_l = act_l'(z_l) and a2_l = act_l''(z_l) (per sample, shared by its rows):
//   projection chain   g_L = v,  delta_l = g_l * a_l,  g_{l-1} = delta_l W_l,  u = g_0
//   adjoint chain      gbar_0 = 2 scale u;  dW_l = delta_l^T gbar_{l-1};
//                      dbar_l = gbar_{l-1} W_l^T,  gbar_l = dbar_l * a_l,
//                      zbar_l = a2_l * sum_p (dbar_l * g_l)          (0 for relu and none)
//   forward adjoint    zt_l = zbar_l + (zt_{l+1} W_{l+1}) * a_l;  dW_l += zt_l^T h_{l-1},
//                      db_l = sum_i zt_l          (b enters J only through a_l: 0 for relu)
// Every pass reuses the forward's activations h_l and a_l (computed here, or the caller's:
// fwd_y below); NaN propagates as through the ops.
template <typename T>
struct JacobianPenaltyParams {
  int64_t B = 0, P = 0, L = 0;
  const int64_t* dims = nullptr;    // L + 1 widths
  const T* const* w = nullptr;      // L weights
  const T* const* b = nullptr;      // L biases (entries may be null)
  const Activation* act = nullptr;  // L activations
  const T* x = nullptr;
  const T* v = nullptr;
  // The forward's activations, when the caller has them (else null and computed here):
  // fwd_y[l] (B, d_{l+1}) the outputs of layer l; fwd_z[l] its preactivation (gelu layers only).
  const T* const* fwd_y = nullptr;
  const T* const* fwd_z = nullptr;
  T scale = 1;
  T* u = nullptr;
  T* sq = nullptr;
  T* penalty = nullptr;
  T* const* dw = nullptr;
  T* const* db = nullptr;
};

template <typename T>
using jacobian_penalty_fn = void (*)(const JacobianPenaltyParams<T>& p, int threads);

// Scalar reference: the algorithm above on the reference GEMM (double accumulation).
void jacobian_penalty_f32_ref(const JacobianPenaltyParams<float>& p, int threads);
void jacobian_penalty_f64_ref(const JacobianPenaltyParams<double>& p, int threads);
// The same passes on the dispatched packed GEMM of cpp/gemm, compiled per instruction set.
void jacobian_penalty_f32_avx2(const JacobianPenaltyParams<float>& p, int threads);
void jacobian_penalty_f64_avx2(const JacobianPenaltyParams<double>& p, int threads);
void jacobian_penalty_f32_avx512(const JacobianPenaltyParams<float>& p, int threads);
void jacobian_penalty_f64_avx512(const JacobianPenaltyParams<double>& p, int threads);

// Chosen once from cpu_capability() (jacobian_dispatch.cpp).
jacobian_penalty_fn<float> jacobian_penalty_f32();
jacobian_penalty_fn<double> jacobian_penalty_f64();

// FLOPs of one call (multiply-adds count 2), for benchmarks: GEMMs only.
double jacobian_penalty_flops(int64_t B, int64_t P, int64_t L, const int64_t* dims,
                              const Activation* act, bool grads);

}  // namespace deepcalc
