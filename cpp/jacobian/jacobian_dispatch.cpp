// Picks the fused Jacobian-penalty kernel for this CPU once, through pick() (common/cpu.h).
#include "common/cpu.h"
#include "jacobian/jacobian.h"

namespace deepcalc {

jacobian_penalty_fn<float> jacobian_penalty_f32() {
  static const auto fn = pick<jacobian_penalty_fn<float>>(
      &jacobian_penalty_f32_avx512, &jacobian_penalty_f32_avx2, &jacobian_penalty_f32_ref);
  return fn;
}

jacobian_penalty_fn<double> jacobian_penalty_f64() {
  static const auto fn = pick<jacobian_penalty_fn<double>>(
      &jacobian_penalty_f64_avx512, &jacobian_penalty_f64_avx2, &jacobian_penalty_f64_ref);
  return fn;
}

}  // namespace deepcalc
