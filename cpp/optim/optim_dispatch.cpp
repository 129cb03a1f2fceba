// Picks the float32 optimizer-step kernels for this CPU once, from cpu_capability().
#include "common/cpu.h"
#include "optim/optim.h"

namespace deepcalc {

adam_step_fn<float> adam_step_f32() {
  static const adam_step_fn<float> fn = [] {
    switch (cpu_capability()) {
      case CpuCapability::AVX512: return &adam_step_f32_avx512;
      case CpuCapability::AVX2: return &adam_step_f32_avx2;
      default: return static_cast<adam_step_fn<float>>(&adam_step_ref<float>);
    }
  }();
  return fn;
}

sgd_step_fn<float> sgd_step_f32() {
  static const sgd_step_fn<float> fn = [] {
    switch (cpu_capability()) {
      case CpuCapability::AVX512: return &sgd_step_f32_avx512;
      case CpuCapability::AVX2: return &sgd_step_f32_avx2;
      default: return static_cast<sgd_step_fn<float>>(&sgd_step_ref<float>);
    }
  }();
  return fn;
}

}  // namespace deepcalc
