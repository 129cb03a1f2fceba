// Picks the attention kernels for this CPU once, through pick() (common/cpu.h); float64 has only
// the reference.
#include "attention/attention.h"
#include "common/cpu.h"

namespace deepcalc {

attention_forward_fn<float> attention_forward_f32() {
  static const auto fn = pick<attention_forward_fn<float>>(
      &attention_forward_f32_avx512, &attention_forward_f32_avx2, &attention_forward_f32_ref);
  return fn;
}
attention_backward_fn<float> attention_backward_f32() {
  static const auto fn = pick<attention_backward_fn<float>>(
      &attention_backward_f32_avx512, &attention_backward_f32_avx2, &attention_backward_f32_ref);
  return fn;
}
attention_jvp_fn<float> attention_jvp_f32() {
  static const auto fn = pick<attention_jvp_fn<float>>(&attention_jvp_f32_avx512,
                                                       &attention_jvp_f32_avx2, &attention_jvp_f32_ref);
  return fn;
}
attention_backward_jvp_fn<float> attention_backward_jvp_f32() {
  static const auto fn = pick<attention_backward_jvp_fn<float>>(&attention_backward_jvp_f32_avx512,
                                                                &attention_backward_jvp_f32_avx2,
                                                                &attention_backward_jvp_f32_ref);
  return fn;
}
attention_backward_jvp_fn<double> attention_backward_jvp_f64() {
  static const auto fn = pick<attention_backward_jvp_fn<double>>(nullptr, nullptr,
                                                                 &attention_backward_jvp_f64_ref);
  return fn;
}
attention_forward_fn<double> attention_forward_f64() {
  static const auto fn = pick<attention_forward_fn<double>>(nullptr, nullptr, &attention_forward_f64_ref);
  return fn;
}
attention_backward_fn<double> attention_backward_f64() {
  static const auto fn = pick<attention_backward_fn<double>>(nullptr, nullptr, &attention_backward_f64_ref);
  return fn;
}
attention_jvp_fn<double> attention_jvp_f64() {
  static const auto fn = pick<attention_jvp_fn<double>>(nullptr, nullptr, &attention_jvp_f64_ref);
  return fn;
}

}  // namespace deepcalc
