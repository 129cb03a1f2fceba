// AVX2 instantiation of the SIMD optimizer steps (compiled with -mavx2 ...).
#include "common/vec_avx2.h"
#include "optim/optim.h"
#include "optim/optim_simd.h"

namespace deepcalc {

void adam_step_f32_avx2(float* param, const float* grad, float* exp_avg, float* exp_avg_sq,
                        float* max_exp_avg_sq, int64_t n, const AdamScalars<float>& s, int threads) {
  optim_simd::adam_step<vec256::F32>(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, n, s, threads);
}
void sgd_step_f32_avx2(float* param, const float* grad, float* momentum_buffer, int64_t n,
                       const SgdScalars<float>& s, int threads) {
  optim_simd::sgd_step<vec256::F32>(param, grad, momentum_buffer, n, s, threads);
}

}  // namespace deepcalc
