// Scalar reference of the fused Jacobian penalty: jacobian_impl.h's passes on the reference GEMM
// (double accumulation); it defines what the fast path must compute.
#include "jacobian/jacobian_impl.h"

namespace deepcalc {

void jacobian_penalty_f32_ref(const JacobianPenaltyParams<float>& p, int threads) {
  jacobian_detail::run<float>(p, &gemm_f32_ref, threads);
}
void jacobian_penalty_f64_ref(const JacobianPenaltyParams<double>& p, int threads) {
  jacobian_detail::run<double>(p, &gemm_f64_ref, threads);
}

}  // namespace deepcalc
