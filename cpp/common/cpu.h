// Runtime CPU capability detection and the DEEPCALC_CPU_CAPABILITY override.
// Dispatch files call cpu_capability() once to pick a kernel function pointer.
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

}  // namespace deepcalc
