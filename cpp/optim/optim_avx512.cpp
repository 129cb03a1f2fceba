// AVX-512 instantiation of the SIMD optimizer steps (compiled with -mavx512f ...).
#include "common/vec_avx512.h"
#include "optim/optim.h"
#include "optim/optim_simd.h"

namespace deepcalc {

void adam_step_f32_avx512(const AdamParams<float>& p, int threads) {
  optim_simd::adam_step<vec512::F32>(p, threads);
}
void sgd_step_f32_avx512(const SgdParams<float>& p, int threads) {
  optim_simd::sgd_step<vec512::F32>(p, threads);
}

}  // namespace deepcalc
