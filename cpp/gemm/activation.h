// Scalar activations and their derivatives, shared by the reference kernels and the scalar
// lanes of the SIMD kernels (float64 epilogues, tails). GELU is the exact erf form (torch default).
// NaN propagates through every activation and derivative (relu(NaN) = NaN as torch, relu'(NaN) =
// NaN); products of an infinity and a zero are NaN as the formulas say (gelu(-inf) = -inf * 0).
#pragma once
#include <cmath>

#include "gemm/gemm.h"

namespace deepcalc {

template <typename T>
inline T act_forward(T x, Activation act) {
  switch (act) {
    case Activation::ReLU: return x < T(0) ? T(0) : x;  // NaN and -0 pass, as max(0, x) in SIMD
    case Activation::GELU: return T(0.5) * x * (T(1) + std::erf(x * T(0.70710678118654752440)));
    case Activation::Tanh: return std::tanh(x);
    case Activation::Sigmoid: return T(1) / (T(1) + std::exp(-x));
    default: return x;
  }
}

// act'(.) from what the forward saved: y for relu/tanh/sigmoid, z for gelu.
//   relu' = [y > 0] (NaN for NaN y), tanh' = 1 - y^2, sigmoid' = y (1 - y),
//   gelu'(z) = Phi(z) + z phi(z) with Phi the normal cdf and phi its density.
template <typename T>
inline T act_derivative(T saved, Activation act) {
  switch (act) {
    case Activation::ReLU: return saved > T(0) ? T(1) : saved <= T(0) ? T(0) : saved;
    case Activation::GELU: {
      const T cdf = T(0.5) * (T(1) + std::erf(saved * T(0.70710678118654752440)));
      const T pdf = T(0.39894228040143267794) * std::exp(T(-0.5) * saved * saved);
      return cdf + saved * pdf;
    }
    case Activation::Tanh: return T(1) - saved * saved;
    case Activation::Sigmoid: return saved * (T(1) - saved);
    default: return T(1);
  }
}

}  // namespace deepcalc
