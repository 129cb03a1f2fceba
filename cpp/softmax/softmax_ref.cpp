// Scalar reference softmax kernels, templated over float and double. Statistics are accumulated
// in double so the reference is the accurate side of every comparison.
#include <cmath>

#include "softmax/softmax.h"

namespace deepcalc {
namespace {

// x, y are (rows, cols)
template <typename T>
void forward_ref(const SoftmaxForwardParams<T>& p, int threads) {
  const T* x = p.x;
  T* y = p.y;
  const int64_t rows = p.rows, cols = p.cols;
  const bool log = p.log;
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

// y, dy, dx are (rows, cols)
template <typename T>
void backward_ref(const SoftmaxBackwardParams<T>& p, int threads) {
  const T *y = p.y, *dy = p.dy;
  T* dx = p.dx;
  const int64_t rows = p.rows, cols = p.cols;
  const bool log = p.log;
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

void softmax_forward_f32_ref(const SoftmaxForwardParams<float>& p, int threads) { forward_ref(p, threads); }
void softmax_backward_f32_ref(const SoftmaxBackwardParams<float>& p, int threads) { backward_ref(p, threads); }
void softmax_forward_f64_ref(const SoftmaxForwardParams<double>& p, int threads) { forward_ref(p, threads); }
void softmax_backward_f64_ref(const SoftmaxBackwardParams<double>& p, int threads) { backward_ref(p, threads); }

}  // namespace deepcalc
