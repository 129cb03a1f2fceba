// 16-lane float32 vector helpers for *_avx512.cpp files (include only from those files).
// exp: range reduction x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial for e^r, then scalef by 2^n;
// max relative error ~2 ulp over the normal range, subnormal results correctly scaled, exp(-inf) = 0,
// exp(+inf) = +inf, exp(NaN) = NaN (as std::exp).
// NaN rule for every helper: MAXPS/MINPS return their second operand when either is NaN, so a
// NaN-propagating max/min puts the data second: max(bound, x).
#pragma once
#include <immintrin.h>

#include <cmath>

namespace deepcalc::vec512 {

struct F32 {
  using reg = __m512;
  static constexpr int width = 16;
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  // Non-temporal store; p aligned to the vector size.
  static void stream(float* p, reg v) { _mm512_stream_ps(p, v); }
  // Masked tail access: lanes >= n read as `fill` and are not written.
  static __mmask16 mask(long n) { return __mmask16((1u << n) - 1u); }
  static reg load_tail(const float* p, long n, float fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), mask(n), p);
  }
  static void store_tail(float* p, reg v, long n) { _mm512_mask_storeu_ps(p, mask(n), v); }
  static reg set1(float x) { return _mm512_set1_ps(x); }
  static reg zero() { return _mm512_setzero_ps(); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  // max(a, b) with b returned when either is NaN: pass the value whose NaN must survive as b.
  static reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  static reg div(reg a, reg b) { return _mm512_div_ps(a, b); }
  static reg select_nan(reg x, reg v) {  // x is NaN ? x : v
    return _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
  }
  static reg sqrt(reg a) { return _mm512_sqrt_ps(a); }  // correctly rounded, like std::sqrt
  static float reduce_add(reg v) { return _mm512_reduce_add_ps(v); }
  // max over lanes; NaN if any lane is NaN (the hardware reduction's NaN result is unspecified).
  static float reduce_max(reg v) {
    if (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q)) return NAN;
    return _mm512_reduce_max_ps(v);
  }
  static reg exp(reg x) {
    // e^x rounds to 0 below -104 (half the smallest subnormal) and overflows above 88.73; the
    // clamp keeps n in [-150, 128], where scalef still rounds the result correctly to a
    // subnormal, 0 or +inf. x is the second operand of max/min so that NaN passes through.
    x = _mm512_min_ps(set1(88.8f), _mm512_max_ps(set1(-104.0f), x));
    const reg n = _mm512_roundscale_ps(_mm512_mul_ps(x, set1(1.44269504088896341f)),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    reg r = _mm512_fnmadd_ps(n, set1(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, set1(-2.12194440e-4f), r);
    reg p = set1(1.9875691500e-4f);
    p = fmadd(p, r, set1(1.3981999507e-3f));
    p = fmadd(p, r, set1(8.3334519073e-3f));
    p = fmadd(p, r, set1(4.1665795894e-2f));
    p = fmadd(p, r, set1(1.6666665459e-1f));
    p = fmadd(p, r, set1(5.0000001201e-1f));
    p = fmadd(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, set1(1.0f)));
    return _mm512_scalef_ps(p, n);
  }
};

}  // namespace deepcalc::vec512
