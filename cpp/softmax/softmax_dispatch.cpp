// Picks the softmax kernels for this CPU once, from cpu_capability().
#include "common/cpu.h"
#include "softmax/softmax.h"

namespace deepcalc {

softmax_forward_f32_fn softmax_forward_f32() {
  static const softmax_forward_f32_fn fn = [] {
    switch (cpu_capability()) {
      case CpuCapability::AVX512: return &softmax_forward_f32_avx512;
      case CpuCapability::AVX2: return &softmax_forward_f32_avx2;
      default: return &softmax_forward_f32_ref;
    }
  }();
  return fn;
}

softmax_backward_f32_fn softmax_backward_f32() {
  static const softmax_backward_f32_fn fn = [] {
    switch (cpu_capability()) {
      case CpuCapability::AVX512: return &softmax_backward_f32_avx512;
      case CpuCapability::AVX2: return &softmax_backward_f32_avx2;
      default: return &softmax_backward_f32_ref;
    }
  }();
  return fn;
}

}  // namespace deepcalc
