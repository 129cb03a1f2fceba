// cpuid + XGETBV detection. A feature counts only if the CPU has it AND the OS saves the
// matching register state on context switch (XCR0 bits), otherwise using it would fault.
#include "common/cpu.h"

#include <cpuid.h>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

namespace deepcalc {
namespace {

uint64_t read_xcr0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (uint64_t(edx) << 32) | eax;
}

CpuCapability detect() {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return CpuCapability::Scalar;
  const bool osxsave = ecx & (1u << 27), fma = ecx & (1u << 12), avx = ecx & (1u << 28);
  if (!osxsave || !avx) return CpuCapability::Scalar;
  const uint64_t xcr0 = read_xcr0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6;     // SSE + AVX state
  const bool os_zmm = (xcr0 & 0xE6) == 0xE6;   // + opmask, ZMM_Hi256, Hi16_ZMM
  if (!os_ymm) return CpuCapability::Scalar;
  if (__get_cpuid_max(0, nullptr) < 7) return CpuCapability::Scalar;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool avx2 = ebx & (1u << 5);
  const bool avx512f = ebx & (1u << 16), avx512dq = ebx & (1u << 17);
  const bool avx512bw = ebx & (1u << 30), avx512vl = ebx & (1u << 31);
  if (avx2 && fma && os_zmm && avx512f && avx512dq && avx512bw && avx512vl)
    return CpuCapability::AVX512;
  if (avx2 && fma) return CpuCapability::AVX2;
  return CpuCapability::Scalar;
}

std::string g_error;

CpuCapability resolve() {
  const CpuCapability hw = detect();
  const char* env = std::getenv("DEEPCALC_CPU_CAPABILITY");
  if (!env || !*env) return hw;
  CpuCapability want;
  if (!std::strcmp(env, "scalar")) want = CpuCapability::Scalar;
  else if (!std::strcmp(env, "avx2")) want = CpuCapability::AVX2;
  else if (!std::strcmp(env, "avx512")) want = CpuCapability::AVX512;
  else {
    g_error = std::string("DEEPCALC_CPU_CAPABILITY=") + env +
              " is not one of scalar, avx2, avx512";
    return hw;
  }
  if (int(want) > int(hw)) {
    g_error = std::string("DEEPCALC_CPU_CAPABILITY=") + env + " but this CPU only supports " +
              cpu_capability_name(hw);
    return hw;
  }
  return want;
}

}  // namespace

CpuCapability cpu_detected_capability() {
  static const CpuCapability c = detect();
  return c;
}

CpuCapability cpu_capability() {
  static const CpuCapability c = resolve();
  return c;
}

const char* cpu_capability_name(CpuCapability c) {
  switch (c) {
    case CpuCapability::AVX512: return "avx512";
    case CpuCapability::AVX2: return "avx2";
    default: return "scalar";
  }
}

const char* cpu_capability_error() {
  cpu_capability();
  return g_error.c_str();
}

}  // namespace deepcalc
