// Picks the optimizer-step kernels for this CPU once, through pick() (common/cpu.h); float64 has
// only the reference.
#include "common/cpu.h"
#include "optim/optim.h"

namespace deepcalc {

adam_step_fn<float> adam_step_f32() {
  static const auto fn =
      pick<adam_step_fn<float>>(&adam_step_f32_avx512, &adam_step_f32_avx2, &adam_step_ref<float>);
  return fn;
}

adam_step_fn<double> adam_step_f64() {
  static const auto fn = pick<adam_step_fn<double>>(nullptr, nullptr, &adam_step_ref<double>);
  return fn;
}

sgd_step_fn<float> sgd_step_f32() {
  static const auto fn = pick<sgd_step_fn<float>>(&sgd_step_f32_avx512, &sgd_step_f32_avx2, &sgd_step_ref<float>);
  return fn;
}

sgd_step_fn<double> sgd_step_f64() {
  static const auto fn = pick<sgd_step_fn<double>>(nullptr, nullptr, &sgd_step_ref<double>);
  return fn;
}

}  // namespace deepcalc
