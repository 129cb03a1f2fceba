// Bindings for the GEMM family: gemm, linear_forward, linear_backward, activation_backward.
// Validate layouts (row-major with a leading dimension; transposes come as flags, never copies),
// allocate outputs, release the GIL, dispatch to the kernels of cpp/gemm/.
#include <pybind11/stl.h>

#include <optional>
#include <type_traits>

#include "bindings/checks.h"
#include "common/hw.h"
#include "common/threads.h"
#include "gemm/gemm.h"

namespace deepcalc::bind {
namespace {

std::string strides_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.strides(i));
  if (a.ndim() == 1) s += ",";
  return s + ")";
}

std::string dims_str(const std::vector<py::ssize_t>& dims) {
  std::string s = "(";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + ")";
}

std::string pybool(bool b) { return b ? "True" : "False"; }

// A 2-D or 3-D operand seen as batch x (rows, cols) with row stride ld and batch stride, in elements.
struct Operand {
  const py::array* arr;
  int64_t batch, rows, cols, ld, bstride;
};

Operand operand(const char* op, const char* name, const py::array& x) {
  if (x.ndim() != 2 && x.ndim() != 3)
    throw py::value_error(std::string(op) + ": " + name + " must be 2-D or 3-D (batched), got shape " +
                          shape_str(x));
  const int64_t item = x.itemsize(), nd = x.ndim();
  const int64_t rows = x.shape(nd - 2), cols = x.shape(nd - 1);
  const int64_t s_col = x.strides(nd - 1), s_row = x.strides(nd - 2);
  const bool ok_col = cols <= 1 || s_col == item;
  const bool ok_row = rows <= 1 || (s_row > 0 && s_row % item == 0);
  const bool ok_batch = nd == 2 || x.shape(0) <= 1 || x.strides(0) % item == 0;
  if (x.size() != 0 && (!ok_col || !ok_row || !ok_batch))  // empty arrays may have any strides
    throw py::value_error(std::string(op) + ": " + name + " with shape " + shape_str(x) + " and strides " +
                          strides_str(x) + " must be row-major with unit stride in its last axis");
  const int64_t ld = rows <= 1 || x.size() == 0 ? std::max<int64_t>(cols, 1) : s_row / item;
  Operand o{&x, nd == 3 ? int64_t(x.shape(0)) : 1, rows, cols, ld, 0};
  if (nd == 3 && o.batch > 1 && x.size() != 0) o.bstride = x.strides(0) / item;
  return o;
}

Activation parse_activation(const char* op, const std::string& name) {
  if (name == "none") return Activation::None;
  if (name == "relu") return Activation::ReLU;
  if (name == "gelu") return Activation::GELU;
  if (name == "tanh") return Activation::Tanh;
  if (name == "sigmoid") return Activation::Sigmoid;
  throw py::value_error(std::string(op) + ": unknown activation '" + name +
                        "'; expected one of none, relu, gelu, tanh, sigmoid");
}

template <typename T>
void run_gemm(const GemmParams<T>& p, int threads) {
  if constexpr (std::is_same_v<T, float>) gemm_f32()(p, threads);
  else gemm_f64()(p, threads);
}

template <typename T>
void run_act_backward(const ActBackwardParams<T>& p, int threads) {
  if constexpr (std::is_same_v<T, float>) act_backward_f32()(p, threads);
  else act_backward_f64()(p, threads);
}

template <typename T>
void gemm_typed(const Operand& a, const Operand& b, bool trans_a, bool trans_b, double alpha,
                double beta, int64_t batch, int64_t m, int64_t n, int64_t k, py::array& c) {
  GemmParams<T> p;
  p.m = m, p.n = n, p.k = k, p.batch = batch;
  p.a = cptr<T>(*a.arr), p.lda = a.ld, p.stride_a = a.bstride, p.trans_a = trans_a;
  p.b = cptr<T>(*b.arr), p.ldb = b.ld, p.stride_b = b.bstride, p.trans_b = trans_b;
  p.c = mptr<T>(c), p.ldc = n, p.stride_c = m * n;
  p.alpha = T(alpha), p.beta = T(beta);
  py::gil_scoped_release nogil;
  ThreadBudget budget(batch * m * n * k, hw::kGemmGrain);
  run_gemm(p, budget.threads());
}

py::array gemm(const py::array& a, const py::array& b, bool trans_a, bool trans_b, double alpha,
               double beta, std::optional<py::array> out) {
  const char* op = "gemm";
  require_float(op, "a", a);
  require_same_dtype(op, "b", b, "a", a);
  const Operand oa = operand(op, "a", a), ob = operand(op, "b", b);
  const int64_t m = trans_a ? oa.cols : oa.rows, ka = trans_a ? oa.rows : oa.cols;
  const int64_t kb = trans_b ? ob.cols : ob.rows, n = trans_b ? ob.rows : ob.cols;
  if (ka != kb)
    throw py::value_error("gemm: a is " + shape_str(a) + " and b is " + shape_str(b) + " (trans_a=" +
                          pybool(trans_a) + ", trans_b=" + pybool(trans_b) + "): inner dimensions " +
                          std::to_string(ka) + " and " + std::to_string(kb) + " differ");
  if (oa.batch != ob.batch && oa.batch != 1 && ob.batch != 1)
    throw py::value_error("gemm: a is " + shape_str(a) + " and b is " + shape_str(b) + ": batch sizes " +
                          std::to_string(oa.batch) + " and " + std::to_string(ob.batch) +
                          " differ (they must match or be 1)");
  const int64_t batch = oa.batch == 1 ? ob.batch : oa.batch;  // NumPy broadcast: 1 with 0 gives 0
  std::vector<py::ssize_t> shape{m, n};
  if (a.ndim() == 3 || b.ndim() == 3) shape.insert(shape.begin(), batch);
  py::array c;
  if (out) {
    c = *out;
    require_same_dtype(op, "out", c, "a", a);
    bool same = c.ndim() == py::ssize_t(shape.size());
    for (size_t i = 0; same && i < shape.size(); ++i) same = c.shape(i) == shape[i];
    if (!same)
      throw py::value_error("gemm: out has shape " + shape_str(c) + ", expected the result shape " +
                            dims_str(shape));
    require_contiguous(op, "out", c);
    require_writeable(op, "out", c);
    require_no_overlap(op, "out", c, "a", a);
    require_no_overlap(op, "out", c, "b", b);
  } else {
    c = new_array(a.dtype(), shape);
    beta = 0;  // no C to scale
  }
  if (batch == 0 || m == 0 || n == 0) return c;  // nothing to write; a or b may hold no data
  if (is_f32(a)) gemm_typed<float>(oa, ob, trans_a, trans_b, alpha, beta, batch, m, n, ka, c);
  else gemm_typed<double>(oa, ob, trans_a, trans_b, alpha, beta, batch, m, n, ka, c);
  return c;
}

// x (N, IN) row-major with a leading dimension, w (OUT, IN), bias (OUT,) or None.
template <typename T>
void linear_forward_typed(const Operand& x, const Operand& w, const py::array* bias, Activation act,
                          py::array& y, py::array* z) {
  LinearForwardParams<T> p;
  p.x = cptr<T>(*x.arr), p.ldx = x.ld;
  p.w = cptr<T>(*w.arr), p.ldw = w.ld;
  p.bias = bias ? cptr<T>(*bias) : nullptr;
  p.y = mptr<T>(y), p.z = z ? mptr<T>(*z) : nullptr;
  p.N = x.rows, p.IN = x.cols, p.OUT = w.rows, p.act = act;
  py::gil_scoped_release nogil;
  ThreadBudget budget(p.N * p.OUT * p.IN, hw::kGemmGrain);
  deepcalc::linear_forward(p, budget.threads());
}

py::tuple linear_forward(const py::array& x, const py::array& w, std::optional<py::array> bias,
                         const std::string& activation, bool save_preactivation) {
  const char* op = "linear";
  const Activation act = parse_activation(op, activation);
  require_float(op, "x", x);
  require_same_dtype(op, "weight", w, "x", x);
  if (x.ndim() != 2 || w.ndim() != 2)
    throw py::value_error("linear: x must be (N, IN) and weight (OUT, IN), got x " + shape_str(x) +
                          " and weight " + shape_str(w));
  const Operand ox = operand(op, "x", x), ow = operand(op, "weight", w);
  if (ox.cols != ow.cols)
    throw py::value_error("linear: x has " + std::to_string(ox.cols) + " features, weight expects " +
                          std::to_string(ow.cols));
  if (bias) {
    require_same_dtype(op, "bias", *bias, "x", x);
    if (bias->ndim() != 1 || bias->shape(0) != ow.rows)
      throw py::value_error("linear: bias has shape " + shape_str(*bias) + ", expected (" +
                            std::to_string(ow.rows) + ",) for weight " + shape_str(w));
    require_contiguous(op, "bias", *bias);
  }
  py::array y = new_array(x.dtype(), {ox.rows, ow.rows});
  const bool separate_z = save_preactivation && act != Activation::None;
  py::array z = separate_z ? new_array(x.dtype(), {ox.rows, ow.rows}) : py::array();
  const py::array* b = bias ? &*bias : nullptr;
  if (is_f32(x)) linear_forward_typed<float>(ox, ow, b, act, y, separate_z ? &z : nullptr);
  else linear_forward_typed<double>(ox, ow, b, act, y, separate_z ? &z : nullptr);
  if (!save_preactivation) return py::make_tuple(y, py::none());
  return py::make_tuple(y, separate_z ? z : y);
}

// dz (the activation's gradient, workspace) is allocated here unless the activation is none.
template <typename T>
void linear_backward_typed(const py::array& dy, const Operand& x, const Operand& w, const py::array* saved,
                           Activation act, py::array* dx, py::array* dw, py::array* db) {
  LinearBackwardParams<T> p;
  p.N = x.rows, p.IN = x.cols, p.OUT = w.rows, p.act = act;
  py::array dz_work = act == Activation::None ? py::array() : new_array(dy.dtype(), {p.N, p.OUT});
  p.dy = cptr<T>(dy), p.saved = saved ? cptr<T>(*saved) : nullptr;
  p.dz_work = act == Activation::None ? nullptr : mptr<T>(dz_work);
  p.x = cptr<T>(*x.arr), p.ldx = x.ld, p.w = cptr<T>(*w.arr), p.ldw = w.ld;
  p.dx = dx ? mptr<T>(*dx) : nullptr, p.dw = dw ? mptr<T>(*dw) : nullptr, p.db = db ? mptr<T>(*db) : nullptr;
  py::gil_scoped_release nogil;
  ThreadBudget budget(p.N * p.IN * p.OUT, hw::kGemmGrain);
  deepcalc::linear_backward(p, budget.threads());
}

py::tuple linear_backward(const py::array& dy, const py::array& x, const py::array& w,
                          std::optional<py::array> saved, const std::string& activation, bool need_dx,
                          bool need_dw, bool need_db) {
  const char* op = "linear_backward";
  const Activation act = parse_activation(op, activation);
  require_float(op, "dy", dy);
  require_same_dtype(op, "x", x, "dy", dy);
  require_same_dtype(op, "weight", w, "dy", dy);
  if (x.ndim() != 2 || w.ndim() != 2 || dy.ndim() != 2)
    throw py::value_error("linear_backward: dy must be (N, OUT), x (N, IN) and weight (OUT, IN), got dy " +
                          shape_str(dy) + ", x " + shape_str(x) + " and weight " + shape_str(w));
  const Operand ox = operand(op, "x", x), ow = operand(op, "weight", w);
  if (ox.cols != ow.cols || dy.shape(0) != ox.rows || dy.shape(1) != ow.rows)
    throw py::value_error("linear_backward: dy is " + shape_str(dy) + ", x is " + shape_str(x) +
                          " and weight is " + shape_str(w) + "; expected dy (N, OUT), x (N, IN), weight (OUT, IN)");
  require_contiguous(op, "dy", dy);
  if (act != Activation::None) {
    if (!saved)
      throw py::value_error("linear_backward: activation '" + activation +
                            "' needs saved (y for relu/tanh/sigmoid, z for gelu)");
    require_same_dtype(op, "saved", *saved, "dy", dy);
    require_same_shape(op, "saved", *saved, "dy", dy);
    require_contiguous(op, "saved", *saved);
  }
  py::array dx, dw, db;
  if (need_dx) dx = new_array(dy.dtype(), {ox.rows, ox.cols});
  if (need_dw) dw = new_array(dy.dtype(), {ow.rows, ow.cols});
  if (need_db) db = py::array(dy.dtype(), std::vector<py::ssize_t>{ow.rows});
  const py::array* s = act != Activation::None ? &*saved : nullptr;
  if (is_f32(dy))
    linear_backward_typed<float>(dy, ox, ow, s, act, need_dx ? &dx : nullptr, need_dw ? &dw : nullptr,
                                 need_db ? &db : nullptr);
  else
    linear_backward_typed<double>(dy, ox, ow, s, act, need_dx ? &dx : nullptr, need_dw ? &dw : nullptr,
                                  need_db ? &db : nullptr);
  auto opt = [](bool need, const py::array& a) -> py::object { return need ? py::object(a) : py::none(); };
  return py::make_tuple(opt(need_dx, dx), opt(need_dw, dw), opt(need_db, db));
}

py::array activation_backward(const py::array& dy, std::optional<py::array> saved, const std::string& activation) {
  const char* op = "activation_backward";
  const Activation act = parse_activation(op, activation);
  require_float(op, "dy", dy);
  require_contiguous(op, "dy", dy);
  if (act != Activation::None) {
    if (!saved)
      throw py::value_error("activation_backward: activation '" + activation + "' needs saved");
    require_same_dtype(op, "saved", *saved, "dy", dy);
    require_same_shape(op, "saved", *saved, "dy", dy);
    require_contiguous(op, "saved", *saved);
  }
  py::array dz = empty_like(dy);
  const int64_t total = dy.size();
  const void* sp = act != Activation::None ? saved->data() : nullptr;
  py::gil_scoped_release nogil;
  ThreadBudget budget(total, hw::kElementwiseGrain);
  if (is_f32(dy)) {
    ActBackwardParams<float> p{cptr<float>(dy), static_cast<const float*>(sp), mptr<float>(dz), nullptr, 1, total, act};
    run_act_backward(p, budget.threads());
  } else {
    ActBackwardParams<double> p{cptr<double>(dy), static_cast<const double*>(sp), mptr<double>(dz), nullptr, 1, total, act};
    run_act_backward(p, budget.threads());
  }
  return dz;
}

}  // namespace

void bind_gemm(py::module_& m) {
  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("trans_a") = false, py::arg("trans_b") = false,
        py::arg("alpha") = 1.0, py::arg("beta") = 0.0, py::arg("out") = py::none(),
        "alpha * op(a) @ op(b) + beta * out; 2-D or 3-D (batched, 2-D operands broadcast), "
        "op(x) = x.T over the last two axes when trans_x. Operands row-major with unit last stride.");
  m.def("linear_forward", &linear_forward, py::arg("x"), py::arg("w"), py::arg("bias") = py::none(),
        py::arg("activation") = "none", py::arg("save_preactivation") = false,
        "(y, z): y = act(x @ w.T + bias) with the epilogue fused into the GEMM; z the preactivation "
        "when save_preactivation (else None).");
  m.def("linear_backward", &linear_backward, py::arg("dy"), py::arg("x"), py::arg("w"),
        py::arg("saved") = py::none(), py::arg("activation") = "none", py::arg("need_dx") = true,
        py::arg("need_dw") = true, py::arg("need_db") = true,
        "(dx, dw, db) of y = act(x @ w.T + b); saved is y for relu/tanh/sigmoid, z for gelu.");
  m.def("activation_backward", &activation_backward, py::arg("dy"), py::arg("saved"), py::arg("activation"),
        "dz = dy * act'(saved) elementwise; saved is y for relu/tanh/sigmoid, z for gelu.");
}

}  // namespace deepcalc::bind
