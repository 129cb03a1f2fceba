// SIMD softmax kernels written once over a vector-traits type V (vec_avx2.h / vec_avx512.h) and
// instantiated in softmax_avx2.cpp and softmax_avx512.cpp with that file's ISA flags.
// Forward is three passes over a row (max, exp-and-sum, scale); rows stay in L1/L2 between passes.
#pragma once
#include <cmath>
#include <cstdint>

#include "softmax/softmax.h"

namespace deepcalc::softmax_simd {

template <class V>
float row_max(const float* x, int64_t n) {
  typename V::reg m = V::set1(-INFINITY);
  int64_t j = 0;
  for (; j + V::width <= n; j += V::width) m = V::max(m, V::load(x + j));
  if (j < n) m = V::max(m, V::load_tail(x + j, n - j, -INFINITY));
  return V::reduce_max(m);
}

// Writes exp(x - m) to y (if y) and returns the sum.
template <class V>
float exp_sum(const float* x, float* y, int64_t n, float m) {
  const typename V::reg vm = V::set1(m);
  typename V::reg s = V::zero();
  int64_t j = 0;
  for (; j + V::width <= n; j += V::width) {
    const typename V::reg e = V::exp(V::sub(V::load(x + j), vm));
    if (y) V::store(y + j, e);
    s = V::add(s, e);
  }
  if (j < n) {
    const typename V::reg e = V::exp(V::sub(V::load_tail(x + j, n - j, -INFINITY), vm));
    if (y) V::store_tail(y + j, e, n - j);
    s = V::add(s, e);
  }
  return V::reduce_add(s);
}

// y = a * x + b (y may alias x)
template <class V>
void affine(const float* x, float* y, int64_t n, float a, float b) {
  const typename V::reg va = V::set1(a), vb = V::set1(b);
  int64_t j = 0;
  for (; j + V::width <= n; j += V::width) V::store(y + j, V::fmadd(V::load(x + j), va, vb));
  if (j < n) V::store_tail(y + j, V::fmadd(V::load_tail(x + j, n - j, 0.f), va, vb), n - j);
}

// x, y are (rows, cols)
template <class V>
void forward(const SoftmaxForwardParams<float>& p, int threads) {
  const float* x = p.x;
  float* y = p.y;
  const int64_t rows = p.rows, cols = p.cols;
  const bool log = p.log;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    float m = row_max<V>(xr, cols);
    if (std::isinf(m) && m < 0) m = 0;
    if (log) {
      const float lse = std::log(exp_sum<V>(xr, nullptr, cols, m)) + m;
      affine<V>(xr, yr, cols, 1.f, -lse);
    } else {
      const float s = exp_sum<V>(xr, yr, cols, m);
      affine<V>(yr, yr, cols, 1.f / s, 0.f);
    }
  }
}

// y, dy, dx are (rows, cols)
template <class V>
void backward(const SoftmaxBackwardParams<float>& p, int threads) {
  const float *y = p.y, *dy = p.dy;
  float* dx = p.dx;
  const int64_t rows = p.rows, cols = p.cols;
  const bool log = p.log;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* yr = y + r * cols;
    const float* gr = dy + r * cols;
    float* dr = dx + r * cols;
    typename V::reg acc = V::zero();
    int64_t j = 0;
    // softmax: s = sum(dy * y); log-softmax: s = sum(dy)
    for (; j + V::width <= cols; j += V::width)
      acc = log ? V::add(acc, V::load(gr + j)) : V::fmadd(V::load(gr + j), V::load(yr + j), acc);
    if (j < cols) {
      const typename V::reg g = V::load_tail(gr + j, cols - j, 0.f);
      acc = log ? V::add(acc, g) : V::fmadd(g, V::load_tail(yr + j, cols - j, 0.f), acc);
    }
    const typename V::reg s = V::set1(V::reduce_add(acc));
    auto step = [&](typename V::reg yv, typename V::reg gv) {
      // log: dy - exp(y) * s      softmax: y * (dy - s)
      return log ? V::sub(gv, V::mul(V::exp(yv), s)) : V::mul(yv, V::sub(gv, s));
    };
    for (j = 0; j + V::width <= cols; j += V::width)
      V::store(dr + j, step(V::load(yr + j), V::load(gr + j)));
    if (j < cols)
      V::store_tail(dr + j, step(V::load_tail(yr + j, cols - j, 0.f), V::load_tail(gr + j, cols - j, 0.f)),
                    cols - j);
  }
}

}  // namespace deepcalc::softmax_simd
