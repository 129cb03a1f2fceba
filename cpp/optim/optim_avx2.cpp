// AVX2 instantiation of the SIMD optimizer steps (compiled with -mavx2 ...).
#include "common/vec_avx2.h"
#include "optim/optim.h"
#include "optim/optim_simd.h"

namespace deepcalc {

void adam_step_f32_avx2(const AdamParams<float>& p, int threads) {
  optim_simd::adam_step<vec256::F32>(p, threads);
}
void sgd_step_f32_avx2(const SgdParams<float>& p, int threads) {
  optim_simd::sgd_step<vec256::F32>(p, threads);
}

}  // namespace deepcalc
