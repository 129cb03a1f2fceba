// Row-wise softmax / log-softmax over the last axis of a contiguous (rows, cols) array.
// forward:  softmax y = exp(x - max) / sum exp(x - max);  log-softmax y = x - max - log sum exp(x - max)
// backward: softmax dx = y * (dy - sum(dy * y));           log-softmax dx = dy - exp(y) * sum(dy)
// Rows are split across OpenMP threads; one row is processed by one thread.
#pragma once
#include <cstdint>

namespace deepcalc {

using softmax_forward_f32_fn = void (*)(const float* x, float* y, int64_t rows, int64_t cols,
                                        bool log, int threads);
using softmax_backward_f32_fn = void (*)(const float* y, const float* dy, float* dx, int64_t rows,
                                         int64_t cols, bool log, int threads);

// Scalar reference kernels (always built; define correctness). float64 has only these.
void softmax_forward_f32_ref(const float* x, float* y, int64_t rows, int64_t cols, bool log, int threads);
void softmax_backward_f32_ref(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols,
                              bool log, int threads);
void softmax_forward_f64_ref(const double* x, double* y, int64_t rows, int64_t cols, bool log, int threads);
void softmax_backward_f64_ref(const double* y, const double* dy, double* dx, int64_t rows,
                              int64_t cols, bool log, int threads);

void softmax_forward_f32_avx2(const float* x, float* y, int64_t rows, int64_t cols, bool log, int threads);
void softmax_backward_f32_avx2(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols,
                               bool log, int threads);
void softmax_forward_f32_avx512(const float* x, float* y, int64_t rows, int64_t cols, bool log, int threads);
void softmax_backward_f32_avx512(const float* y, const float* dy, float* dx, int64_t rows,
                                 int64_t cols, bool log, int threads);

// Chosen once from cpu_capability().
softmax_forward_f32_fn softmax_forward_f32();
softmax_backward_f32_fn softmax_backward_f32();

}  // namespace deepcalc
