// Picks the softmax kernels for this CPU once, through pick() (common/cpu.h); float64 has only
// the reference.
#include "common/cpu.h"
#include "softmax/softmax.h"

namespace deepcalc {

softmax_forward_fn<float> softmax_forward_f32() {
  static const auto fn = pick<softmax_forward_fn<float>>(&softmax_forward_f32_avx512,
                                                         &softmax_forward_f32_avx2, &softmax_forward_f32_ref);
  return fn;
}

softmax_backward_fn<float> softmax_backward_f32() {
  static const auto fn = pick<softmax_backward_fn<float>>(&softmax_backward_f32_avx512,
                                                          &softmax_backward_f32_avx2, &softmax_backward_f32_ref);
  return fn;
}

softmax_forward_fn<double> softmax_forward_f64() {
  static const auto fn = pick<softmax_forward_fn<double>>(nullptr, nullptr, &softmax_forward_f64_ref);
  return fn;
}

softmax_backward_fn<double> softmax_backward_f64() {
  static const auto fn = pick<softmax_backward_fn<double>>(nullptr, nullptr, &softmax_backward_f64_ref);
  return fn;
}

}  // namespace deepcalc
