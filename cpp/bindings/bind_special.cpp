// Bindings for element-wise special functions: validate, release the GIL, call the kernel.
#include "bindings/checks.h"
#include "common/hw.h"
#include "common/threads.h"
#include "special/special.h"

namespace deepcalc::bind {
namespace {
py::array erf(const py::array& x) {
  require_float("erf", "x", x);
  require_contiguous("erf", "x", x);
  py::array y = empty_like(x);
  const int64_t n = x.size();
  py::gil_scoped_release nogil;
  ThreadBudget budget(n, hw::kElementwiseGrain);
  if (is_f32(x)) erf_f32()(cptr<float>(x), mptr<float>(y), n, budget.threads());
  else erf_f64()(cptr<double>(x), mptr<double>(y), n, budget.threads());
  return y;
}
}  // namespace

void bind_special(py::module_& m) {
  m.def("erf", &erf, py::arg("x"), "Element-wise error function of a C-contiguous float array.");
}
}  // namespace deepcalc::bind
