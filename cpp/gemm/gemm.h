// Packed (BLIS-style) GEMM with fused epilogues, and the fused activation-backward helper.
// C[b] = act(alpha * op(A[b]) op(B[b]) + beta * C[b] + bias), op(X) = X or X^T, all operands
// row-major with a leading dimension; batched with per-operand batch strides (0 = broadcast).
#pragma once
#include <cstdint>

namespace deepcalc {

enum class Activation : int { None = 0, ReLU = 1, GELU = 2, Tanh = 3, Sigmoid = 4 };

// One (possibly batched) GEMM. Shapes: op(A) is (m, k), op(B) is (k, n), C is (m, n).
// A is stored (m, k) with row stride lda, or (k, m) when trans_a; likewise B is (k, n) or (n, k).
// bias (length n, may be null) is added per column after alpha/beta; act is applied last.
// preact (may be null, row stride ldz, batch stride stride_z) receives the value before act,
// written in the same store as C (the saved z of a GELU layer).
// beta == 0 means C is not read (it may hold NaN). k == 0 gives act(beta * C + bias).
template <typename T>
struct GemmParams {
  int64_t m = 0, n = 0, k = 0, batch = 1;
  const T* a = nullptr;
  int64_t lda = 0, stride_a = 0;
  bool trans_a = false;
  const T* b = nullptr;
  int64_t ldb = 0, stride_b = 0;
  bool trans_b = false;
  T* c = nullptr;
  int64_t ldc = 0, stride_c = 0;
  T alpha = 1, beta = 0;
  const T* bias = nullptr;
  Activation act = Activation::None;
  T* preact = nullptr;
  int64_t ldz = 0, stride_z = 0;
};

// dz = dy * act'(saved) over a contiguous (rows, cols) array; saved is the layer output y for
// relu/tanh/sigmoid, the preactivation z for gelu, unused for none. If db is not null it also
// receives db[j] = sum_i dz[i, j] (the bias gradient), computed in the same pass. dz may be null
// when only db is wanted (activation none: dz is dy itself).
template <typename T>
struct ActBackwardParams {
  const T* dy = nullptr;
  const T* saved = nullptr;
  T* dz = nullptr;
  T* db = nullptr;
  int64_t rows = 0, cols = 0;
  Activation act = Activation::None;
};

// x (N, IN) row-major with row stride ldx, w (OUT, IN) with row stride ldw, bias (OUT) or null;
// y = act(x @ w.T + bias) is (N, OUT) contiguous; z (may be null) receives x @ w.T + bias.
template <typename T>
struct LinearForwardParams {
  const T* x = nullptr;
  int64_t ldx = 0;
  const T* w = nullptr;
  int64_t ldw = 0;
  const T* bias = nullptr;
  T* y = nullptr;
  T* z = nullptr;
  int64_t N = 0, IN = 0, OUT = 0;
  Activation act = Activation::None;
};

// Backward of y = act(x @ w.T + b): dy (N, OUT) contiguous; saved (N, OUT) is y for
// relu/tanh/sigmoid, z for gelu, unused for none; dz_work (N, OUT) is workspace for
// dz = dy * act'(saved), needed unless act is none (dz is dy itself then). Outputs (each may be
// null when not wanted): dx (N, IN), dw (OUT, IN), db (OUT), all contiguous.
template <typename T>
struct LinearBackwardParams {
  const T* dy = nullptr;
  const T* x = nullptr;
  int64_t ldx = 0;
  const T* w = nullptr;
  int64_t ldw = 0;
  const T* saved = nullptr;
  T* dz_work = nullptr;
  T* dx = nullptr;
  T* dw = nullptr;
  T* db = nullptr;
  int64_t N = 0, IN = 0, OUT = 0;
  Activation act = Activation::None;
};

template <typename T>
using gemm_fn = void (*)(const GemmParams<T>& p, int threads);
template <typename T>
using act_backward_fn = void (*)(const ActBackwardParams<T>& p, int threads);

// Scalar reference kernels: always built, define correctness, serve DEEPCALC_CPU_CAPABILITY=scalar.
void gemm_f32_ref(const GemmParams<float>& p, int threads);
void gemm_f64_ref(const GemmParams<double>& p, int threads);
void act_backward_f32_ref(const ActBackwardParams<float>& p, int threads);
void act_backward_f64_ref(const ActBackwardParams<double>& p, int threads);

// Packed SIMD kernels (gemm_simd.h instantiated per ISA).
void gemm_f32_avx2(const GemmParams<float>& p, int threads);
void gemm_f64_avx2(const GemmParams<double>& p, int threads);
void act_backward_f32_avx2(const ActBackwardParams<float>& p, int threads);
void act_backward_f64_avx2(const ActBackwardParams<double>& p, int threads);
void gemm_f32_avx512(const GemmParams<float>& p, int threads);
void gemm_f64_avx512(const GemmParams<double>& p, int threads);
void act_backward_f32_avx512(const ActBackwardParams<float>& p, int threads);
void act_backward_f64_avx512(const ActBackwardParams<double>& p, int threads);

// Chosen once from cpu_capability() (gemm_dispatch.cpp).
gemm_fn<float> gemm_f32();
gemm_fn<double> gemm_f64();
act_backward_fn<float> act_backward_f32();
act_backward_fn<double> act_backward_f64();

// The linear layer on the dispatched kernels (linear.cpp): forward is one GEMM with the bias
// and activation fused; backward is the fused activation backward (+ db) and two GEMMs.
void linear_forward(const LinearForwardParams<float>& p, int threads);
void linear_forward(const LinearForwardParams<double>& p, int threads);
void linear_backward(const LinearBackwardParams<float>& p, int threads);
void linear_backward(const LinearBackwardParams<double>& p, int threads);

}  // namespace deepcalc
