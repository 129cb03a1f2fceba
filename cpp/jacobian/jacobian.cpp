// The FLOP count of the fused Jacobian penalty's GEMMs, which benchmarks report against.
#include "jacobian/jacobian.h"

namespace deepcalc {

// GEMMs of run() (jacobian_impl.h): forward B d_{l-1} d_l per layer; projection chain
// R d_{l-1} d_l; with grads, dW (R) and dbar (R, all but a non-smooth last layer), plus the
// forward adjoint (dW and hbar, B rows) from the highest smooth layer down.
double jacobian_penalty_flops(int64_t B, int64_t P, int64_t L, const int64_t* dims,
                              const Activation* act, bool grads) {
  auto smooth = [](Activation a) {
    return a == Activation::Tanh || a == Activation::Sigmoid || a == Activation::GELU;
  };
  const double R = double(P) * double(B);
  double macs = 0;
  int64_t top = 0;
  for (int64_t l = 1; l <= L; ++l) {
    const double layer = double(dims[l - 1]) * double(dims[l]);
    macs += (B + R) * layer;
    if (!grads) continue;
    const bool is_smooth = smooth(act[l - 1]);
    if (is_smooth) top = l;
    macs += R * layer * ((l == L && !is_smooth) ? 1 : 2);
  }
  for (int64_t l = top; grads && l >= 1; --l)
    macs += double(B) * dims[l - 1] * dims[l] * (l > 1 ? 2 : 1);
  return 2 * macs;
}

}  // namespace deepcalc
