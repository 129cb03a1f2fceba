// AVX-512 vector traits for the GEMM family (include only from *_avx512.cpp): the common float
// traits plus the ops the epilogues need, and 8-lane double traits for the float64 microkernel.
#pragma once
#include <immintrin.h>

#include "common/vec_avx512.h"

namespace deepcalc::gemm512 {

struct F32 : vec512::F32 {
  using T = float;
  static constexpr bool has_math = true;  // vector exp/erf/tanh epilogues
  static reg abs(reg a) { return _mm512_abs_ps(a); }
  // |mag| with the sign of s
  static reg copysign(reg mag, reg s) {
    const __m512i sign = _mm512_set1_epi32(int(0x80000000u));
    return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(
        _mm512_castps_si512(mag), _mm512_castps_si512(s), sign, 0xD8));  // imm 0xD8: c ? b : a, bitwise
  }
  static reg select_lt(reg x, reg y, reg a, reg b) {  // x < y ? a : b
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, y, _CMP_LT_OQ), b, a);
  }
  static reg select_gt0(reg x, reg v) {  // x > 0 ? v : 0
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, zero(), _CMP_GT_OQ), v);
  }
};

struct F64 {
  using T = double;
  using reg = __m512d;
  static constexpr int width = 8;
  static constexpr bool has_math = false;  // epilogue math runs per lane in scalar
  static reg load(const double* p) { return _mm512_loadu_pd(p); }
  static void store(double* p, reg v) { _mm512_storeu_pd(p, v); }
  static __mmask8 mask(long n) { return __mmask8((1u << n) - 1u); }
  static reg load_tail(const double* p, long n, double fill) {
    return _mm512_mask_loadu_pd(_mm512_set1_pd(fill), mask(n), p);
  }
  static void store_tail(double* p, reg v, long n) { _mm512_mask_storeu_pd(p, mask(n), v); }
  static reg set1(double x) { return _mm512_set1_pd(x); }
  static reg zero() { return _mm512_setzero_pd(); }
  static reg add(reg a, reg b) { return _mm512_add_pd(a, b); }
  static reg mul(reg a, reg b) { return _mm512_mul_pd(a, b); }
  static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_pd(a, b, c); }
  static reg max(reg a, reg b) { return _mm512_max_pd(a, b); }  // b when either is NaN
  static reg select_gt0(reg x, reg v) {
    return _mm512_maskz_mov_pd(_mm512_cmp_pd_mask(x, zero(), _CMP_GT_OQ), v);
  }
  static reg select_nan(reg x, reg v) {  // x is NaN ? x : v
    return _mm512_mask_mov_pd(v, _mm512_cmp_pd_mask(x, x, _CMP_UNORD_Q), x);
  }
};

}  // namespace deepcalc::gemm512
