// Picks the BatchNorm / LayerNorm kernels for this CPU once, through pick() (common/cpu.h);
// float64 has only the reference.
#include "common/cpu.h"
#include "norm/norm.h"

namespace deepcalc {

// name_f32() picks among the ISA kernels, name_f64() is the reference.
#define DEEPCALC_NORM_PICK(name, fn_type)                                                   \
  fn_type<float> name##_f32() {                                                             \
    static const auto fn = pick<fn_type<float>>(&name##_f32_avx512, &name##_f32_avx2,       \
                                                &name##_ref<float>);                        \
    return fn;                                                                              \
  }                                                                                         \
  fn_type<double> name##_f64() {                                                            \
    static const auto fn = pick<fn_type<double>>(nullptr, nullptr, &name##_ref<double>);    \
    return fn;                                                                              \
  }

DEEPCALC_NORM_PICK(batchnorm_forward_train, norm_forward_fn)
DEEPCALC_NORM_PICK(batchnorm_forward_eval, norm_forward_fn)
DEEPCALC_NORM_PICK(batchnorm_backward, norm_backward_fn)
DEEPCALC_NORM_PICK(layernorm_forward, norm_forward_fn)
DEEPCALC_NORM_PICK(layernorm_backward, norm_backward_fn)

DEEPCALC_NORM_PICK(batchnorm_forward_jvp, norm_jvp_fn)
DEEPCALC_NORM_PICK(batchnorm_backward_jvp, norm_jvp_fn)
DEEPCALC_NORM_PICK(layernorm_forward_jvp, norm_jvp_fn)
DEEPCALC_NORM_PICK(layernorm_backward_jvp, norm_jvp_fn)
#undef DEEPCALC_NORM_PICK

}  // namespace deepcalc
