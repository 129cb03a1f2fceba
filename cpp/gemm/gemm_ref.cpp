// Scalar reference GEMM and activation backward: straightforward loops that define the
// semantics of gemm.h (layouts, alpha/beta, bias, activation, preact, broadcast batches).
// Products are accumulated in double so the reference is the accurate side of a comparison.
#include <vector>

#include "gemm/activation.h"
#include "gemm/gemm.h"

namespace deepcalc {
namespace {

// C[b] is (m, n); one output row per iteration, accumulated over p in a double row buffer.
template <typename T>
void gemm_ref(const GemmParams<T>& p, int threads) {
  for (int64_t bt = 0; bt < p.batch; ++bt) {
    const T* a = p.a + bt * p.stride_a;
    const T* b = p.b + bt * p.stride_b;
    T* c = p.c + bt * p.stride_c;
    T* z = p.preact ? p.preact + bt * p.stride_z : nullptr;
#pragma omp parallel num_threads(threads)
    {
      std::vector<double> acc(p.n);
#pragma omp for schedule(static)
      for (int64_t i = 0; i < p.m; ++i) {
        for (int64_t j = 0; j < p.n; ++j) acc[j] = 0;
        for (int64_t q = 0; q < p.k; ++q) {
          const double aiq = p.trans_a ? a[q * p.lda + i] : a[i * p.lda + q];
          for (int64_t j = 0; j < p.n; ++j)
            acc[j] += aiq * double(p.trans_b ? b[j * p.ldb + q] : b[q * p.ldb + j]);
        }
        T* ci = c + i * p.ldc;
        for (int64_t j = 0; j < p.n; ++j) {
          double v = double(p.alpha) * acc[j];
          if (p.beta != T(0)) v += double(p.beta) * double(ci[j]);
          if (p.bias) v += double(p.bias[j]);
          if (z) z[i * p.ldz + j] = T(v);
          ci[j] = act_forward(T(v), p.act);
        }
      }
    }
  }
}

// dz = dy * act'(saved), db = column sums of dz (accumulated in double).
template <typename T>
void act_backward_ref(const ActBackwardParams<T>& p, int threads) {
  auto dz = [&](int64_t i) {
    return p.act == Activation::None ? p.dy[i] : p.dy[i] * act_derivative(p.saved[i], p.act);
  };
  const int64_t total = p.rows * p.cols;
  if (p.dz) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < total; ++i) p.dz[i] = dz(i);
  }
  if (!p.db) return;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t j = 0; j < p.cols; ++j) {
    double s = 0;
    for (int64_t i = 0; i < p.rows; ++i) s += dz(i * p.cols + j);
    p.db[j] = T(s);
  }
}

}  // namespace

void gemm_f32_ref(const GemmParams<float>& p, int threads) { gemm_ref(p, threads); }
void gemm_f64_ref(const GemmParams<double>& p, int threads) { gemm_ref(p, threads); }
void act_backward_f32_ref(const ActBackwardParams<float>& p, int threads) { act_backward_ref(p, threads); }
void act_backward_f64_ref(const ActBackwardParams<double>& p, int threads) { act_backward_ref(p, threads); }

}  // namespace deepcalc
