// Picks the special-function kernels once, through pick() (common/cpu.h); only the reference
// exists for now, so every path runs it.
#include "common/cpu.h"
#include "special/special.h"

namespace deepcalc {

erf_fn<float> erf_f32() {
  static const auto fn = pick<erf_fn<float>>(nullptr, nullptr, &erf_f32_ref);
  return fn;
}

erf_fn<double> erf_f64() {
  static const auto fn = pick<erf_fn<double>>(nullptr, nullptr, &erf_f64_ref);
  return fn;
}

}  // namespace deepcalc
