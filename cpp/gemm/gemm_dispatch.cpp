// Picks the GEMM and activation-backward kernels for this CPU once, from cpu_capability().
#include "common/cpu.h"
#include "gemm/gemm.h"

namespace deepcalc {
namespace {

template <typename Fn>
Fn pick(Fn avx512, Fn avx2, Fn ref) {
  switch (cpu_capability()) {
    case CpuCapability::AVX512: return avx512;
    case CpuCapability::AVX2: return avx2;
    default: return ref;
  }
}

}  // namespace

gemm_f32_fn gemm_f32() {
  static const gemm_f32_fn fn = pick<gemm_f32_fn>(&gemm_f32_avx512, &gemm_f32_avx2, &gemm_f32_ref);
  return fn;
}

gemm_f64_fn gemm_f64() {
  static const gemm_f64_fn fn = pick<gemm_f64_fn>(&gemm_f64_avx512, &gemm_f64_avx2, &gemm_f64_ref);
  return fn;
}

act_backward_f32_fn act_backward_f32() {
  static const act_backward_f32_fn fn =
      pick<act_backward_f32_fn>(&act_backward_f32_avx512, &act_backward_f32_avx2, &act_backward_f32_ref);
  return fn;
}

act_backward_f64_fn act_backward_f64() {
  static const act_backward_f64_fn fn =
      pick<act_backward_f64_fn>(&act_backward_f64_avx512, &act_backward_f64_avx2, &act_backward_f64_ref);
  return fn;
}

}  // namespace deepcalc
