// Vectorized activations for the GEMM epilogue and the fused activation backward, written once
// over the vector traits V (gemm_vec_avx2.h / gemm_vec_avx512.h). float32 traits (has_math) run
// the vector formulas below; float64 traits fall back to the scalar functions lane by lane.
#pragma once
#include "gemm/activation.h"
#include "gemm/gemm.h"

namespace deepcalc::gemm_epilogue {

// q(u) = erfc(u) for u >= 0 by Abramowitz & Stegun 7.1.26: q = t P(t) e^{-u^2}, t = 1/(1 + p u),
// |error| <= 1.5e-7. Returns q and e^{-u^2} (the GELU derivative reuses it as the normal density).
// Using erfc directly for 1 + erf(-u) = erfc(u) avoids the cancellation of 1 + erf in the left tail.
template <class V>
typename V::reg erfc_nonneg(typename V::reg u, typename V::reg& expmu2) {
  using R = typename V::reg;
  const R one = V::set1(1.0f);
  const R t = V::div(one, V::fmadd(V::set1(0.3275911f), u, one));
  R p = V::set1(1.061405429f);
  p = V::fmadd(p, t, V::set1(-1.453152027f));
  p = V::fmadd(p, t, V::set1(1.421413741f));
  p = V::fmadd(p, t, V::set1(-0.284496736f));
  p = V::fmadd(p, t, V::set1(0.254829592f));
  expmu2 = V::exp(V::mul(V::sub(V::zero(), u), u));
  return V::mul(V::mul(p, t), expmu2);
}

// Phi(x) = 0.5 (1 + erf(x / sqrt 2)) = 0.5 erfc(|x|/sqrt 2) for x < 0, 1 - that for x >= 0.
// Also returns exp(-x^2/2).
template <class V>
typename V::reg normal_cdf(typename V::reg x, typename V::reg& exp_half_x2) {
  using R = typename V::reg;
  const R half_q = V::mul(V::set1(0.5f), erfc_nonneg<V>(V::mul(V::abs(x), V::set1(0.70710678118654752f)),
                                                         exp_half_x2));
  return V::select_lt(x, V::zero(), half_q, V::sub(V::set1(1.0f), half_q));
}

// tanh: odd Taylor series up to x^9 for |x| < 0.15 (error < 1e-11), else (1 - e)/(1 + e) with
// e = exp(-2|x|), sign restored; both are accurate to a few float ulps.
template <class V>
typename V::reg tanh(typename V::reg x) {
  using R = typename V::reg;
  const R ax = V::abs(x), one = V::set1(1.0f);
  const R e = V::exp(V::mul(V::set1(-2.0f), ax));
  const R big = V::copysign(V::div(V::sub(one, e), V::add(one, e)), x);
  const R x2 = V::mul(x, x);
  R s = V::set1(62.0f / 2835.0f);
  s = V::fmadd(s, x2, V::set1(-17.0f / 315.0f));
  s = V::fmadd(s, x2, V::set1(2.0f / 15.0f));
  s = V::fmadd(s, x2, V::set1(-1.0f / 3.0f));
  const R small = V::fmadd(V::mul(s, x2), x, x);
  return V::select_lt(ax, V::set1(0.15f), small, big);
}

template <class V>
typename V::reg sigmoid(typename V::reg x) {
  const typename V::reg one = V::set1(1.0f);
  return V::div(one, V::add(one, V::exp(V::sub(V::zero(), x))));
}

// y = act(x) for one register.
template <class V>
typename V::reg forward(typename V::reg x, Activation act) {
  using T = typename V::T;
  if (act == Activation::None) return x;
  if (act == Activation::ReLU) return V::max(V::zero(), x);  // x second: NaN passes
  if constexpr (V::has_math) {
    typename V::reg e;
    switch (act) {
      case Activation::GELU: return V::mul(x, normal_cdf<V>(x, e));
      case Activation::Tanh: return tanh<V>(x);
      default: return sigmoid<V>(x);
    }
  } else {
    alignas(64) T lanes[V::width];
    V::store(lanes, x);
    for (int l = 0; l < V::width; ++l) lanes[l] = act_forward(lanes[l], act);
    return V::load(lanes);
  }
}

// dz = dy * act'(.) from the saved tensor (y for relu/tanh/sigmoid, z for gelu).
template <class V>
typename V::reg backward(typename V::reg dy, typename V::reg s, Activation act) {
  using T = typename V::T;
  using R = typename V::reg;
  const R one = V::set1(T(1));
  switch (act) {
    case Activation::None: return dy;
    case Activation::ReLU: return V::mul(dy, V::select_nan(s, V::select_gt0(s, one)));  // dy * relu'(s)
    case Activation::Tanh: return V::mul(dy, V::fmadd(V::mul(V::set1(T(-1)), s), s, one));
    case Activation::Sigmoid: return V::mul(dy, V::mul(s, V::fmadd(V::set1(T(-1)), s, one)));
    default: break;
  }
  if constexpr (V::has_math) {  // gelu'(z) = Phi(z) + z phi(z), phi(z) = exp(-z^2/2) / sqrt(2 pi)
    R e;
    const R cdf = normal_cdf<V>(s, e);
    return V::mul(dy, V::fmadd(V::mul(s, V::set1(0.39894228040143268f)), e, cdf));
  } else {
    alignas(64) T d[V::width], z[V::width];
    V::store(d, dy);
    V::store(z, s);
    for (int l = 0; l < V::width; ++l) d[l] *= act_derivative(z[l], act);
    return V::load(d);
  }
}

}  // namespace deepcalc::gemm_epilogue
