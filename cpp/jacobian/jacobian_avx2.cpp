// The fused Jacobian penalty compiled for AVX2 (per-file flags): jacobian_impl.h's passes on the
// dispatched packed GEMM, the element-wise passes vectorized for this instruction set.
#define DEEPCALC_JACOBIAN_NS jacobian_avx2
#include "jacobian/jacobian_impl.h"

namespace deepcalc {

void jacobian_penalty_f32_avx2(const JacobianPenaltyParams<float>& p, int threads) {
  jacobian_avx2::run<float>(p, gemm_f32(), threads);
}
void jacobian_penalty_f64_avx2(const JacobianPenaltyParams<double>& p, int threads) {
  jacobian_avx2::run<double>(p, gemm_f64(), threads);
}

}  // namespace deepcalc
