// Scalar reference softmax kernels, templated over float and double. Statistics are accumulated
// in double so the reference is the accurate side of every comparison.
#include <cmath>

#include "softmax/softmax.h"

namespace deepcalc {
namespace {

template <typename T>
void forward_ref(const T* x, T* y, int64_t rows, int64_t cols, bool log, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    T m = -INFINITY;
    for (int64_t j = 0; j < cols; ++j) m = xr[j] > m ? xr[j] : m;
    if (std::isinf(m) && m < 0) m = 0;  // all -inf row: avoid inf - inf
    double s = 0;
    for (int64_t j = 0; j < cols; ++j) s += std::exp(double(xr[j] - m));
    if (log) {
      const T lse = T(std::log(s)) + m;
      for (int64_t j = 0; j < cols; ++j) yr[j] = xr[j] - lse;
    } else {
      const double inv = 1.0 / s;
      for (int64_t j = 0; j < cols; ++j) yr[j] = T(std::exp(double(xr[j] - m)) * inv);
    }
  }
}

template <typename T>
void backward_ref(const T* y, const T* dy, T* dx, int64_t rows, int64_t cols, bool log, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* yr = y + r * cols;
    const T* gr = dy + r * cols;
    T* dr = dx + r * cols;
    double s = 0;
    if (log) {
      for (int64_t j = 0; j < cols; ++j) s += gr[j];
      for (int64_t j = 0; j < cols; ++j) dr[j] = T(gr[j] - std::exp(double(yr[j])) * s);
    } else {
      for (int64_t j = 0; j < cols; ++j) s += double(gr[j]) * yr[j];
      for (int64_t j = 0; j < cols; ++j) dr[j] = T(yr[j] * (gr[j] - s));
    }
  }
}

}  // namespace

void softmax_forward_f32_ref(const float* x, float* y, int64_t rows, int64_t cols, bool log, int threads) {
  forward_ref(x, y, rows, cols, log, threads);
}
void softmax_backward_f32_ref(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols,
                              bool log, int threads) {
  backward_ref(y, dy, dx, rows, cols, log, threads);
}
void softmax_forward_f64_ref(const double* x, double* y, int64_t rows, int64_t cols, bool log, int threads) {
  forward_ref(x, y, rows, cols, log, threads);
}
void softmax_backward_f64_ref(const double* y, const double* dy, double* dx, int64_t rows,
                              int64_t cols, bool log, int threads) {
  backward_ref(y, dy, dx, rows, cols, log, threads);
}

}  // namespace deepcalc
