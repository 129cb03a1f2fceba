// Reference special functions: the C library's erf (correctly rounded to within 1 ulp),
// split across OpenMP threads in large contiguous chunks.
#include <cmath>

#include "special/special.h"

namespace deepcalc {
namespace {
template <typename T>
void erf_ref(const T* x, T* y, int64_t n, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = std::erf(x[i]);
}
}  // namespace

void erf_f32_ref(const float* x, float* y, int64_t n, int threads) { erf_ref(x, y, n, threads); }
void erf_f64_ref(const double* x, double* y, int64_t n, int threads) { erf_ref(x, y, n, threads); }
}  // namespace deepcalc
