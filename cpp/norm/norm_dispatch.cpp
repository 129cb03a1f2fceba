// Picks the float32 BatchNorm / LayerNorm kernels for this CPU once, from cpu_capability().
#include "common/cpu.h"
#include "norm/norm.h"

namespace deepcalc {

#define DEEPCALC_NORM_PICK(name)                                                   \
  name##_fn<float> name##_f32() {                                                  \
    static const name##_fn<float> fn = [] {                                        \
      switch (cpu_capability()) {                                                  \
        case CpuCapability::AVX512: return &name##_f32_avx512;                     \
        case CpuCapability::AVX2: return &name##_f32_avx2;                         \
        default: return static_cast<name##_fn<float>>(&name##_ref<float>);         \
      }                                                                            \
    }();                                                                           \
    return fn;                                                                     \
  }

DEEPCALC_NORM_PICK(batchnorm_forward_train)
DEEPCALC_NORM_PICK(batchnorm_forward_eval)
DEEPCALC_NORM_PICK(batchnorm_backward)
DEEPCALC_NORM_PICK(layernorm_forward)
DEEPCALC_NORM_PICK(layernorm_backward)
#undef DEEPCALC_NORM_PICK

}  // namespace deepcalc
