// SIMD Adam/AdamW and SGD float32 steps written once over a vector-traits type V, instantiated
// in optim_avx2.cpp / optim_avx512.cpp. torch's vectorized CPU ops are mirrored op for op:
// add(alpha) and lerp are fused multiply-adds there, addcmul/addcdiv are separate mul, div, add.
#pragma once
#include <cstdint>

#include "common/hw.h"
#include "optim/optim.h"

namespace deepcalc::optim_simd {

// Adam on lanes [i, i + k) (k < width only for the tail; masked lanes are neither read nor written).
template <class V>
void adam_lanes(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, float* vmax,
                int64_t i, int64_t k, const AdamScalars<float>& s) {
  using reg = typename V::reg;
  const bool full = k == V::width;
  auto ld = [&](const float* p) { return full ? V::load(p + i) : V::load_tail(p + i, k, 1.f); };
  auto st = [&](float* p, reg v) { full ? V::store(p + i, v) : V::store_tail(p + i, v, k); };
  reg p = V::mul(ld(param), V::set1(s.decay));                                  // AdamW decay
  reg g = ld(grad);
  if (s.wd != 0.f) g = V::fmadd(p, V::set1(s.wd), g);                           // Adam: g + wd*p
  reg m = ld(exp_avg);
  const reg diff = V::sub(g, m);                                                // lerp_(g, w)
  m = s.lerp_w < 0.5f ? V::fmadd(V::set1(s.lerp_w), diff, m) : V::fmadd(V::set1(s.lerp_w - 1.f), diff, g);
  reg v = V::mul(ld(exp_avg_sq), V::set1(s.beta2));
  v = V::add(v, V::mul(V::mul(V::set1(s.one_minus_beta2), g), g));             // addcmul_
  reg vhat = v;
  if (vmax) {
    const reg vm = ld(vmax);  // torch.maximum propagates NaN from either side; max gives v's
    vhat = V::select_nan(vm, V::max(vm, v));
    st(vmax, vhat);
  }
  const reg denom = V::add(V::div(V::sqrt(vhat), V::set1(s.bc2_sqrt)), V::set1(s.eps));
  st(param, V::add(p, V::div(V::mul(V::set1(s.neg_step_size), m), denom)));  // addcdiv_
  st(exp_avg, m);
  st(exp_avg_sq, v);
}

// param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq (or null) are (n)
template <class V>
void adam_step(const AdamParams<float>& a, int threads) {
  float *param = a.param, *exp_avg = a.exp_avg, *exp_avg_sq = a.exp_avg_sq, *vmax = a.max_exp_avg_sq;
  const float* grad = a.grad;
  const int64_t n = a.n;
  const AdamScalars<float>& s = a.s;
  const int64_t full = n / V::width * V::width;
#pragma omp parallel for num_threads(threads) schedule(static) if (n >= hw::kOptimParallelMin)
  for (int64_t i = 0; i < full; i += V::width)
    adam_lanes<V>(param, grad, exp_avg, exp_avg_sq, vmax, i, V::width, s);
  if (full < n) adam_lanes<V>(param, grad, exp_avg, exp_avg_sq, vmax, full, n - full, s);
}

// SGD on lanes [i, i + k).
template <class V>
void sgd_lanes(float* param, const float* grad, float* buf, int64_t i, int64_t k, const SgdScalars<float>& s) {
  using reg = typename V::reg;
  const bool full = k == V::width;
  auto ld = [&](const float* p) { return full ? V::load(p + i) : V::load_tail(p + i, k, 0.f); };
  auto st = [&](float* p, reg v) { full ? V::store(p + i, v) : V::store_tail(p + i, v, k); };
  const reg p = ld(param);
  reg g = ld(grad);
  if (s.wd != 0.f) g = V::fmadd(p, V::set1(s.wd), g);                   // grad.add(param, alpha=wd)
  if (s.use_momentum) {
    // buf.mul_(momentum).add_(g, alpha=1-dampening); the first step clones g
    const reg b = s.first_step ? g : V::fmadd(g, V::set1(s.one_minus_dampening), V::mul(ld(buf), V::set1(s.momentum)));
    st(buf, b);
    g = s.nesterov ? V::fmadd(b, V::set1(s.momentum), g) : b;
  }
  st(param, V::fmadd(g, V::set1(s.neg_lr), p));                         // param.add_(g, alpha=-lr)
}

// param, grad, momentum_buffer (or null) are (n)
template <class V>
void sgd_step(const SgdParams<float>& a, int threads) {
  float *param = a.param, *buf = a.momentum_buffer;
  const float* grad = a.grad;
  const int64_t n = a.n;
  const SgdScalars<float>& s = a.s;
  const int64_t full = n / V::width * V::width;
#pragma omp parallel for num_threads(threads) schedule(static) if (n >= hw::kOptimParallelMin)
  for (int64_t i = 0; i < full; i += V::width) sgd_lanes<V>(param, grad, buf, i, V::width, s);
  if (full < n) sgd_lanes<V>(param, grad, buf, full, n - full, s);
}

}  // namespace deepcalc::optim_simd
