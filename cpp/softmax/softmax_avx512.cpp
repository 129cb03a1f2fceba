// AVX-512 instantiation of the SIMD softmax kernels (compiled with -mavx512f ...).
#include "common/vec_avx512.h"
#include "softmax/softmax.h"
#include "softmax/softmax_simd.h"

namespace deepcalc {

void softmax_forward_f32_avx512(const float* x, float* y, int64_t rows, int64_t cols, bool log, int threads) {
  softmax_simd::forward<vec512::F32>(x, y, rows, cols, log, threads);
}
void softmax_backward_f32_avx512(const float* y, const float* dy, float* dx, int64_t rows,
                                 int64_t cols, bool log, int threads) {
  softmax_simd::backward<vec512::F32>(y, dy, dx, rows, cols, log, threads);
}

}  // namespace deepcalc
