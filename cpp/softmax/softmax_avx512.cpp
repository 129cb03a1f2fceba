// AVX-512 instantiation of the SIMD softmax kernels (compiled with -mavx512f ...).
#include "common/vec_avx512.h"
#include "softmax/softmax.h"
#include "softmax/softmax_simd.h"

namespace deepcalc {

void softmax_forward_f32_avx512(const SoftmaxForwardParams<float>& p, int threads) {
  softmax_simd::forward<vec512::F32>(p, threads);
}
void softmax_backward_f32_avx512(const SoftmaxBackwardParams<float>& p, int threads) {
  softmax_simd::backward<vec512::F32>(p, threads);
}

}  // namespace deepcalc
