// Bindings for the fused optimizer steps: validate that every state array matches the parameter
// (shape, dtype, contiguous, writeable), prepare the per-step scalars, release the GIL, update
// in place.
#include <pybind11/stl.h>

#include <initializer_list>
#include <iterator>
#include <optional>
#include <utility>

#include "bindings/checks.h"
#include "common/threads.h"
#include "optim/optim.h"

namespace deepcalc::bind {
namespace {

// arg must be an in-place companion of param: same dtype and shape, C-contiguous, writeable.
void require_state(const char* op, const char* arg, const py::array& a, const py::array& param,
                   bool writeable) {
  require_same_dtype(op, arg, a, "param", param);
  require_same_shape(op, arg, a, "param", param);
  require_contiguous(op, arg, a);
  if (writeable) require_writeable(op, arg, a);
}

// The arrays of one step are updated element by element in place, vector by vector: any two
// that share memory would read values the step has already overwritten. Null entries are skipped.
void require_separate(const char* op, std::initializer_list<std::pair<const char*, const py::array*>> arrays) {
  for (auto i = arrays.begin(); i != arrays.end(); ++i)
    for (auto j = std::next(i); j != arrays.end(); ++j)
      if (i->second && j->second) require_no_overlap(op, i->first, *i->second, j->first, *j->second);
}

void require_range(const char* op, const char* name, double v, double lo, double hi, bool hi_open) {
  if (!(v >= lo && (hi_open ? v < hi : v <= hi)))
    throw py::value_error(std::string(op) + ": " + name + " must be in [" + std::to_string(lo) + ", " +
                          std::to_string(hi) + (hi_open ? ")" : "]") + ", got " + std::to_string(v));
}

template <typename T>
void adam_impl(py::array& param, const py::array& grad, py::array& m, py::array& v,
               std::optional<py::array>& vmax, const AdamScalars<T>& s) {
  adam_step_fn<T> fn;
  if constexpr (std::is_same_v<T, float>) fn = adam_step_f32();
  else fn = adam_step_f64();
  AdamParams<T> a;
  a.param = mptr<T>(param), a.grad = cptr<T>(grad), a.exp_avg = mptr<T>(m), a.exp_avg_sq = mptr<T>(v);
  a.max_exp_avg_sq = vmax ? mptr<T>(*vmax) : nullptr;
  a.n = int64_t(param.size()), a.s = s;
  py::gil_scoped_release nogil;
  ThreadBudget budget;
  fn(a, budget.threads());
}

void adam_step(py::array param, const py::array& grad, py::array exp_avg, py::array exp_avg_sq,
               double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step,
               bool decoupled_weight_decay, std::optional<py::array> max_exp_avg_sq) {
  const char* op = decoupled_weight_decay ? "adamw_step" : "adam_step";
  require_float(op, "param", param);
  require_contiguous(op, "param", param);
  require_writeable(op, "param", param);
  require_state(op, "grad", grad, param, false);
  require_state(op, "exp_avg", exp_avg, param, true);
  require_state(op, "exp_avg_sq", exp_avg_sq, param, true);
  if (max_exp_avg_sq) require_state(op, "max_exp_avg_sq", *max_exp_avg_sq, param, true);
  require_separate(op, {{"param", &param}, {"grad", &grad}, {"exp_avg", &exp_avg}, {"exp_avg_sq", &exp_avg_sq},
                        {"max_exp_avg_sq", max_exp_avg_sq ? &*max_exp_avg_sq : nullptr}});
  require_range(op, "lr", lr, 0.0, INFINITY, true);
  require_range(op, "beta1", beta1, 0.0, 1.0, true);
  require_range(op, "beta2", beta2, 0.0, 1.0, true);
  require_range(op, "eps", eps, 0.0, INFINITY, true);
  require_range(op, "weight_decay", weight_decay, 0.0, INFINITY, true);
  if (step < 1)
    throw py::value_error(std::string(op) + ": step is the 1-based count after increment, got " +
                          std::to_string(step));
  if (is_f32(param))
    adam_impl<float>(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq,
                     adam_scalars<float>(lr, beta1, beta2, eps, weight_decay, step, decoupled_weight_decay));
  else
    adam_impl<double>(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq,
                      adam_scalars<double>(lr, beta1, beta2, eps, weight_decay, step, decoupled_weight_decay));
}

template <typename T>
void sgd_impl(py::array& param, const py::array& grad, std::optional<py::array>& buf, double lr,
              double momentum, double dampening, double weight_decay, bool nesterov, bool first_step) {
  sgd_step_fn<T> fn;
  if constexpr (std::is_same_v<T, float>) fn = sgd_step_f32();
  else fn = sgd_step_f64();
  SgdParams<T> a;
  a.s = {T(weight_decay), T(momentum), T(1.0 - dampening), T(-lr), momentum != 0.0, nesterov, first_step};
  a.param = mptr<T>(param), a.grad = cptr<T>(grad);
  a.momentum_buffer = a.s.use_momentum ? mptr<T>(*buf) : nullptr;
  a.n = int64_t(param.size());
  py::gil_scoped_release nogil;
  ThreadBudget budget;
  fn(a, budget.threads());
}

void sgd_step(py::array param, const py::array& grad, std::optional<py::array> momentum_buffer,
              double lr, double momentum, double dampening, double weight_decay, bool nesterov,
              bool first_step) {
  const char* op = "sgd_step";
  require_float(op, "param", param);
  require_contiguous(op, "param", param);
  require_writeable(op, "param", param);
  require_state(op, "grad", grad, param, false);
  require_range(op, "lr", lr, 0.0, INFINITY, true);
  require_range(op, "momentum", momentum, 0.0, INFINITY, true);
  require_range(op, "weight_decay", weight_decay, 0.0, INFINITY, true);
  if (nesterov && (momentum <= 0 || dampening != 0))
    throw py::value_error(std::string(op) + ": Nesterov momentum requires a momentum and zero dampening, got momentum " +
                          std::to_string(momentum) + ", dampening " + std::to_string(dampening));
  if (momentum != 0) {
    if (!momentum_buffer)
      throw py::value_error(std::string(op) + ": momentum " + std::to_string(momentum) +
                            " needs a momentum_buffer shaped like param " + shape_str(param) + ", got None");
    require_state(op, "momentum_buffer", *momentum_buffer, param, true);
  }
  require_separate(op, {{"param", &param}, {"grad", &grad},
                        {"momentum_buffer", momentum != 0 ? &*momentum_buffer : nullptr}});
  if (is_f32(param))
    sgd_impl<float>(param, grad, momentum_buffer, lr, momentum, dampening, weight_decay, nesterov, first_step);
  else
    sgd_impl<double>(param, grad, momentum_buffer, lr, momentum, dampening, weight_decay, nesterov, first_step);
}

}  // namespace

void bind_optim(py::module_& m) {
  m.def("adam_step", &adam_step, py::arg("param"), py::arg("grad"), py::arg("exp_avg"),
        py::arg("exp_avg_sq"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"),
        py::arg("weight_decay"), py::arg("step"), py::arg("decoupled_weight_decay"),
        py::arg("max_exp_avg_sq") = py::none(),
        "One in-place Adam (or AdamW with decoupled_weight_decay) step with torch.optim semantics;\n"
        "step is the 1-based step count after increment; amsgrad when max_exp_avg_sq is given.");
  m.def("sgd_step", &sgd_step, py::arg("param"), py::arg("grad"), py::arg("momentum_buffer"),
        py::arg("lr"), py::arg("momentum"), py::arg("dampening"), py::arg("weight_decay"),
        py::arg("nesterov"), py::arg("first_step"),
        "One in-place SGD step with torch.optim.SGD semantics; on first_step the momentum buffer is\n"
        "set to the (weight-decayed) gradient, as torch clones it.");
}

}  // namespace deepcalc::bind
