// Picks the GEMM and activation-backward kernels for this CPU once, through pick() (common/cpu.h).
#include "common/cpu.h"
#include "gemm/gemm.h"

namespace deepcalc {

gemm_fn<float> gemm_f32() {
  static const auto fn = pick<gemm_fn<float>>(&gemm_f32_avx512, &gemm_f32_avx2, &gemm_f32_ref);
  return fn;
}

gemm_fn<double> gemm_f64() {
  static const auto fn = pick<gemm_fn<double>>(&gemm_f64_avx512, &gemm_f64_avx2, &gemm_f64_ref);
  return fn;
}

act_backward_fn<float> act_backward_f32() {
  static const auto fn =
      pick<act_backward_fn<float>>(&act_backward_f32_avx512, &act_backward_f32_avx2, &act_backward_f32_ref);
  return fn;
}

act_backward_fn<double> act_backward_f64() {
  static const auto fn =
      pick<act_backward_fn<double>>(&act_backward_f64_avx512, &act_backward_f64_avx2, &act_backward_f64_ref);
  return fn;
}

}  // namespace deepcalc
