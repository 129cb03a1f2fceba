// The linear layer y = act(x @ w.T + b) and its backward, composed from the dispatched GEMM and
// activation-backward kernels. Transposes are packing flags, never copies: x @ w.T is the NT
// product, dz^T @ x the TN one.
#include <type_traits>

#include "gemm/gemm.h"

namespace deepcalc {
namespace {

template <typename T>
gemm_fn<T> gemm_kernel() {
  if constexpr (std::is_same_v<T, float>) return gemm_f32();
  else return gemm_f64();
}

template <typename T>
act_backward_fn<T> act_backward_kernel() {
  if constexpr (std::is_same_v<T, float>) return act_backward_f32();
  else return act_backward_f64();
}

// x (N, IN), w (OUT, IN), y and z (N, OUT): one NT GEMM with bias, activation and z in its epilogue.
template <typename T>
void linear_forward_impl(const LinearForwardParams<T>& lp, int threads) {
  GemmParams<T> p;
  p.m = lp.N, p.n = lp.OUT, p.k = lp.IN;
  p.a = lp.x, p.lda = lp.ldx;
  p.b = lp.w, p.ldb = lp.ldw, p.trans_b = true;
  p.c = lp.y, p.ldc = lp.OUT;
  p.bias = lp.bias, p.act = lp.act;
  if (lp.z) p.preact = lp.z, p.ldz = lp.OUT;
  gemm_kernel<T>()(p, threads);
}

// dz = dy * act'(saved) with db = column sums of dz in the same pass; dx = dz @ w (NN, (N, OUT)
// x (OUT, IN)); dw = dz^T @ x (TN, (OUT, N) x (N, IN)).
template <typename T>
void linear_backward_impl(const LinearBackwardParams<T>& lp, int threads) {
  const bool has_act = lp.act != Activation::None;
  const T* dz = has_act ? lp.dz_work : lp.dy;
  if (has_act || lp.db) {
    ActBackwardParams<T> ab;
    ab.dy = lp.dy, ab.saved = has_act ? lp.saved : nullptr;
    ab.dz = has_act ? lp.dz_work : nullptr;
    ab.db = lp.db;
    ab.rows = lp.N, ab.cols = lp.OUT, ab.act = lp.act;
    act_backward_kernel<T>()(ab, threads);
  }
  if (lp.dx) {
    GemmParams<T> p;
    p.m = lp.N, p.n = lp.IN, p.k = lp.OUT;
    p.a = dz, p.lda = lp.OUT, p.b = lp.w, p.ldb = lp.ldw, p.c = lp.dx, p.ldc = lp.IN;
    gemm_kernel<T>()(p, threads);
  }
  if (lp.dw) {
    GemmParams<T> p;
    p.m = lp.OUT, p.n = lp.IN, p.k = lp.N;
    p.a = dz, p.lda = lp.OUT, p.trans_a = true, p.b = lp.x, p.ldb = lp.ldx;
    p.c = lp.dw, p.ldc = lp.IN;
    gemm_kernel<T>()(p, threads);
  }
}

}  // namespace

void linear_forward(const LinearForwardParams<float>& p, int threads) { linear_forward_impl(p, threads); }
void linear_forward(const LinearForwardParams<double>& p, int threads) { linear_forward_impl(p, threads); }
void linear_backward(const LinearBackwardParams<float>& p, int threads) { linear_backward_impl(p, threads); }
void linear_backward(const LinearBackwardParams<double>& p, int threads) { linear_backward_impl(p, threads); }

}  // namespace deepcalc
