// Special functions NumPy lacks, element-wise over contiguous arrays: erf (for exact GELU).
#pragma once
#include <cstdint>

namespace deepcalc {

// y[i] = erf(x[i]) over n contiguous values.
template <typename T>
using erf_fn = void (*)(const T* x, T* y, int64_t n, int threads);

// Scalar reference kernels (the only ones so far).
void erf_f32_ref(const float* x, float* y, int64_t n, int threads);
void erf_f64_ref(const double* x, double* y, int64_t n, int threads);

// Chosen once from cpu_capability() (special_dispatch.cpp).
erf_fn<float> erf_f32();
erf_fn<double> erf_f64();

}  // namespace deepcalc
