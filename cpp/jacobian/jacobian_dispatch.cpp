// Picks the fused Jacobian-penalty kernel for this CPU once, through pick() (common/cpu.h): the
// fast path wherever the packed GEMM has an AVX2 or AVX-512 kernel, the reference otherwise.
#include "common/cpu.h"
#include "jacobian/jacobian.h"

namespace deepcalc {

jacobian_penalty_fn<float> jacobian_penalty_f32() {
  static const auto fn = pick<jacobian_penalty_fn<float>>(
      &jacobian_penalty_f32_fast, &jacobian_penalty_f32_fast, &jacobian_penalty_f32_ref);
  return fn;
}

jacobian_penalty_fn<double> jacobian_penalty_f64() {
  static const auto fn = pick<jacobian_penalty_fn<double>>(
      &jacobian_penalty_f64_fast, &jacobian_penalty_f64_fast, &jacobian_penalty_f64_ref);
  return fn;
}

}  // namespace deepcalc
