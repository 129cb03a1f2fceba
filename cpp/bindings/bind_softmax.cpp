// Bindings for the row-wise softmax family: validate, release the GIL, dispatch.
#include "bindings/checks.h"
#include "common/hw.h"
#include "common/threads.h"
#include "softmax/softmax.h"

namespace deepcalc::bind {
namespace {

// Rows and columns of an array viewed as (prod(shape[:-1]), shape[-1]).
void rows_cols(const py::array& a, int64_t& rows, int64_t& cols) {
  cols = a.ndim() ? a.shape(a.ndim() - 1) : 1;
  rows = cols ? int64_t(a.size()) / cols : 0;
}

py::array softmax_forward(const py::array& x, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  require_float(op, "x", x);
  require_contiguous(op, "x", x);
  if (x.ndim() == 0) throw py::value_error(std::string(op) + ": x must have at least 1 dimension");
  py::array y = empty_like(x);
  int64_t rows, cols;
  rows_cols(x, rows, cols);
  if (rows == 0 || cols == 0) return y;
  py::gil_scoped_release nogil;
  ThreadBudget budget(rows * cols, hw::kSoftmaxGrain);
  if (is_f32(x)) {
    const SoftmaxForwardParams<float> p{cptr<float>(x), mptr<float>(y), rows, cols, log};
    softmax_forward_f32()(p, budget.threads());
  } else {
    const SoftmaxForwardParams<double> p{cptr<double>(x), mptr<double>(y), rows, cols, log};
    softmax_forward_f64()(p, budget.threads());
  }
  return y;
}

py::array softmax_backward(const py::array& y, const py::array& dy, bool log) {
  const char* op = log ? "log_softmax_backward" : "softmax_backward";
  require_float(op, "y", y);
  require_same_dtype(op, "dy", dy, "y", y);
  require_same_shape(op, "dy", dy, "y", y);
  require_contiguous(op, "y", y);
  require_contiguous(op, "dy", dy);
  if (y.ndim() == 0) throw py::value_error(std::string(op) + ": y must have at least 1 dimension");
  py::array dx = empty_like(y);
  int64_t rows, cols;
  rows_cols(y, rows, cols);
  if (rows == 0 || cols == 0) return dx;
  py::gil_scoped_release nogil;
  ThreadBudget budget(rows * cols, hw::kSoftmaxGrain);
  if (is_f32(y)) {
    const SoftmaxBackwardParams<float> p{cptr<float>(y), cptr<float>(dy), mptr<float>(dx), rows, cols, log};
    softmax_backward_f32()(p, budget.threads());
  } else {
    const SoftmaxBackwardParams<double> p{cptr<double>(y), cptr<double>(dy), mptr<double>(dx), rows, cols, log};
    softmax_backward_f64()(p, budget.threads());
  }
  return dx;
}

}  // namespace

void bind_softmax(py::module_& m) {
  m.def("softmax_forward", &softmax_forward, py::arg("x"), py::arg("log") = false,
        "Softmax (or log-softmax) over the last axis of a C-contiguous float array.");
  m.def("softmax_backward", &softmax_backward, py::arg("y"), py::arg("dy"), py::arg("log") = false,
        "dx from the forward output y and the incoming gradient dy.");
}

}  // namespace deepcalc::bind
