// AVX2 instantiation of the SIMD softmax kernels (compiled with -mavx2 ...).
#include "common/vec_avx2.h"
#include "softmax/softmax.h"
#include "softmax/softmax_simd.h"

namespace deepcalc {

void softmax_forward_f32_avx2(const float* x, float* y, int64_t rows, int64_t cols, bool log, int threads) {
  softmax_simd::forward<vec256::F32>(x, y, rows, cols, log, threads);
}
void softmax_backward_f32_avx2(const float* y, const float* dy, float* dx, int64_t rows,
                                 int64_t cols, bool log, int threads) {
  softmax_simd::backward<vec256::F32>(y, dy, dx, rows, cols, log, threads);
}

}  // namespace deepcalc
