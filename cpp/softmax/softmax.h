// Row-wise softmax / log-softmax over the last axis of a contiguous (rows, cols) array.
// forward:  softmax y = exp(x - max) / sum exp(x - max);  log-softmax y = x - max - log sum exp(x - max)
// backward: softmax dx = y * (dy - sum(dy * y));           log-softmax dx = dy - exp(y) * sum(dy)
// Rows are split across OpenMP threads; one row is processed by one thread.
#pragma once
#include <cstdint>

namespace deepcalc {

// x, y (forward) and y, dy, dx (backward; y is the forward's output) are contiguous (rows, cols);
// log selects log-softmax.
template <typename T>
struct SoftmaxForwardParams {
  const T* x = nullptr;
  T* y = nullptr;
  int64_t rows = 0, cols = 0;
  bool log = false;
};
template <typename T>
struct SoftmaxBackwardParams {
  const T* y = nullptr;
  const T* dy = nullptr;
  T* dx = nullptr;
  int64_t rows = 0, cols = 0;
  bool log = false;
};

template <typename T>
using softmax_forward_fn = void (*)(const SoftmaxForwardParams<T>& p, int threads);
template <typename T>
using softmax_backward_fn = void (*)(const SoftmaxBackwardParams<T>& p, int threads);

// Scalar reference kernels (always built; define correctness). float64 has only these.
void softmax_forward_f32_ref(const SoftmaxForwardParams<float>& p, int threads);
void softmax_backward_f32_ref(const SoftmaxBackwardParams<float>& p, int threads);
void softmax_forward_f64_ref(const SoftmaxForwardParams<double>& p, int threads);
void softmax_backward_f64_ref(const SoftmaxBackwardParams<double>& p, int threads);

void softmax_forward_f32_avx2(const SoftmaxForwardParams<float>& p, int threads);
void softmax_backward_f32_avx2(const SoftmaxBackwardParams<float>& p, int threads);
void softmax_forward_f32_avx512(const SoftmaxForwardParams<float>& p, int threads);
void softmax_backward_f32_avx512(const SoftmaxBackwardParams<float>& p, int threads);

// Chosen once from cpu_capability() (softmax_dispatch.cpp).
softmax_forward_fn<float> softmax_forward_f32();
softmax_backward_fn<float> softmax_backward_f32();
softmax_forward_fn<double> softmax_forward_f64();
softmax_backward_fn<double> softmax_backward_f64();

}  // namespace deepcalc
