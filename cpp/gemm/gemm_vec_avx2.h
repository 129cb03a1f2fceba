// AVX2 vector traits for the GEMM family (include only from *_avx2.cpp): the common float traits
// plus the ops the epilogues need, and 4-lane double traits for the float64 microkernel.
#pragma once
#include <immintrin.h>

#include "common/vec_avx2.h"

namespace deepcalc::gemm256 {

struct F32 : vec256::F32 {
  using T = float;
  static constexpr bool has_math = true;  // vector exp/erf/tanh epilogues
  static reg abs(reg a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  static reg copysign(reg mag, reg s) {
    const reg sign = _mm256_set1_ps(-0.0f);
    return _mm256_or_ps(_mm256_andnot_ps(sign, mag), _mm256_and_ps(sign, s));
  }
  static reg select_lt(reg x, reg y, reg a, reg b) {  // x < y ? a : b
    return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, y, _CMP_LT_OQ));
  }
  static reg select_gt0(reg x, reg v) {  // x > 0 ? v : 0
    return _mm256_and_ps(_mm256_cmp_ps(x, zero(), _CMP_GT_OQ), v);
  }
};

struct F64 {
  using T = double;
  using reg = __m256d;
  static constexpr int width = 4;
  static constexpr bool has_math = false;  // epilogue math runs per lane in scalar
  static reg load(const double* p) { return _mm256_loadu_pd(p); }
  static void store(double* p, reg v) { _mm256_storeu_pd(p, v); }
  static __m256i mask(long n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
  }
  static reg load_tail(const double* p, long n, double fill) {
    const __m256i m = mask(n);
    return _mm256_blendv_pd(_mm256_set1_pd(fill), _mm256_maskload_pd(p, m), _mm256_castsi256_pd(m));
  }
  static void store_tail(double* p, reg v, long n) { _mm256_maskstore_pd(p, mask(n), v); }
  static reg set1(double x) { return _mm256_set1_pd(x); }
  static reg zero() { return _mm256_setzero_pd(); }
  static reg add(reg a, reg b) { return _mm256_add_pd(a, b); }
  static reg mul(reg a, reg b) { return _mm256_mul_pd(a, b); }
  static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_pd(a, b, c); }
  static reg max(reg a, reg b) { return _mm256_max_pd(a, b); }  // b when either is NaN
  static reg select_gt0(reg x, reg v) {
    return _mm256_and_pd(_mm256_cmp_pd(x, zero(), _CMP_GT_OQ), v);
  }
  static reg select_nan(reg x, reg v) {  // x is NaN ? x : v
    return _mm256_blendv_pd(v, x, _mm256_cmp_pd(x, x, _CMP_UNORD_Q));
  }
};

}  // namespace deepcalc::gemm256
