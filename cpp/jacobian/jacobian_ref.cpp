// Scalar reference of the fused Jacobian penalty: jacobian_impl.h's passes on the reference GEMM
// (double accumulation), baseline flags; it defines what the ISA paths must compute.
#define DEEPCALC_JACOBIAN_NS jacobian_ref
#include "jacobian/jacobian_impl.h"

namespace deepcalc {

void jacobian_penalty_f32_ref(const JacobianPenaltyParams<float>& p, int threads) {
  jacobian_ref::run<float>(p, &gemm_f32_ref, threads);
}
void jacobian_penalty_f64_ref(const JacobianPenaltyParams<double>& p, int threads) {
  jacobian_ref::run<double>(p, &gemm_f64_ref, threads);
}

}  // namespace deepcalc
