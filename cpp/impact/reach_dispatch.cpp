// Picks the reachability kernels for this CPU once, through pick() (common/cpu.h): the AVX2
// build of the fast kernels on AVX2 and AVX-512 machines, the references on the scalar path.
#include "common/cpu.h"
#include "impact/reach.h"

namespace deepcalc {

reach_deterministic_fn<float> reach_deterministic_f32() {
  static const auto fn = pick<reach_deterministic_fn<float>>(nullptr, &reach_deterministic_f32_avx2,
                                                             &reach_deterministic_f32_ref);
  return fn;
}

reach_deterministic_fn<double> reach_deterministic_f64() {
  static const auto fn = pick<reach_deterministic_fn<double>>(nullptr, &reach_deterministic_f64_avx2,
                                                              &reach_deterministic_f64_ref);
  return fn;
}

reach_stochastic_fn<float> reach_stochastic_f32() {
  static const auto fn = pick<reach_stochastic_fn<float>>(nullptr, &reach_stochastic_f32_avx2,
                                                          &reach_stochastic_f32_ref);
  return fn;
}

reach_stochastic_fn<double> reach_stochastic_f64() {
  static const auto fn = pick<reach_stochastic_fn<double>>(nullptr, &reach_stochastic_f64_avx2,
                                                           &reach_stochastic_f64_ref);
  return fn;
}

}  // namespace deepcalc
