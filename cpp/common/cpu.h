// Runtime CPU capability detection, the DEEPCALC_CPU_CAPABILITY override, and pick(): the one
// dispatch idiom every kernel family and dtype uses to choose its function pointer once.
#pragma once

namespace deepcalc {

enum class CpuCapability { Scalar = 0, AVX2 = 1, AVX512 = 2 };

// What the hardware and OS support (cpuid + XGETBV), ignoring the override.
CpuCapability cpu_detected_capability();

// The capability kernels should use: the detected one, lowered by DEEPCALC_CPU_CAPABILITY
// (scalar|avx2|avx512). Asking for more than the machine supports is an error reported by
// cpu_capability_error(); the detected capability is used in that case.
CpuCapability cpu_capability();
const char* cpu_capability_name(CpuCapability c);
const char* cpu_capability_error();  // empty string when the override was valid

// The kernel for cpu_capability(); a dispatch accessor holds
//   static const Fn fn = pick<Fn>(avx512, avx2, ref);
// A null ISA kernel falls back to the next lower path (a dtype with only the scalar reference
// passes pick<Fn>(nullptr, nullptr, ref)).
template <typename Fn>
Fn pick(Fn avx512, Fn avx2, Fn ref) {
  const CpuCapability c = cpu_capability();
  if (c == CpuCapability::AVX512 && avx512) return avx512;
  if (c != CpuCapability::Scalar && avx2) return avx2;
  return ref;
}

}  // namespace deepcalc
