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
#undef DEEPCALC_NORM_PICK

// The JVP kernels: the reference on every path until SIMD variants exist.
#define DEEPCALC_NORM_PICK_REF(name)                                                        \
  norm_jvp_fn<float> name##_f32() {                                                         \
    static const auto fn = pick<norm_jvp_fn<float>>(nullptr, nullptr, &name##_ref<float>);  \
    return fn;                                                                              \
  }                                                                                         \
  norm_jvp_fn<double> name##_f64() {                                                        \
    static const auto fn = pick<norm_jvp_fn<double>>(nullptr, nullptr, &name##_ref<double>); \
    return fn;                                                                              \
  }

DEEPCALC_NORM_PICK_REF(batchnorm_forward_jvp)
DEEPCALC_NORM_PICK_REF(batchnorm_backward_jvp)
DEEPCALC_NORM_PICK_REF(layernorm_forward_jvp)
DEEPCALC_NORM_PICK_REF(layernorm_backward_jvp)
#undef DEEPCALC_NORM_PICK_REF

}  // namespace deepcalc
