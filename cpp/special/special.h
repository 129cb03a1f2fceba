// Special functions NumPy lacks, element-wise over contiguous arrays: erf (for exact GELU).
#pragma once
#include <cstdint>

namespace deepcalc {
void erf_f32_ref(const float* x, float* y, int64_t n, int threads);
void erf_f64_ref(const double* x, double* y, int64_t n, int threads);
}  // namespace deepcalc
