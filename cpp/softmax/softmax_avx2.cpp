// AVX2 instantiation of the SIMD softmax kernels (compiled with -mavx2 ...).
#include "common/vec_avx2.h"
#include "softmax/softmax.h"
#include "softmax/softmax_simd.h"

namespace deepcalc {

void softmax_forward_f32_avx2(const SoftmaxForwardParams<float>& p, int threads) {
  softmax_simd::forward<vec256::F32>(p, threads);
}
void softmax_backward_f32_avx2(const SoftmaxBackwardParams<float>& p, int threads) {
  softmax_simd::backward<vec256::F32>(p, threads);
}

}  // namespace deepcalc
