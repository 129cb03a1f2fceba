// Bindings for the fused attention kernels: validate shapes, dtypes and layouts with messages
// naming the op, fill the params struct, release the GIL, dispatch.
#include <cmath>
#include <limits>
#include <optional>

#include <pybind11/stl.h>

#include "attention/attention.h"
#include "bindings/checks.h"
#include "common/threads.h"

namespace deepcalc::bind {
namespace {

using OptArray = std::optional<py::array>;

void require_4d(const char* op, const char* arg, const py::array& a) {
  if (a.ndim() != 4)
    throw py::value_error(std::string(op) + ": " + arg + " must be 4-D (B, H, L, D), got shape " +
                          shape_str(a));
}

void require_shape(const char* op, const char* arg, const py::array& a,
                   const std::vector<py::ssize_t>& want, const char* what) {
  bool ok = a.ndim() == py::ssize_t(want.size());
  for (size_t i = 0; ok && i < want.size(); ++i) ok = a.shape(i) == want[i];
  if (!ok) {
    std::string w = "(";
    for (size_t i = 0; i < want.size(); ++i) w += (i ? ", " : "") + std::to_string(want[i]);
    throw py::value_error(std::string(op) + ": " + arg + " has shape " + shape_str(a) +
                          ", expected " + w + ") " + what);
  }
}

// Checks q, k, v (and the mask) and fills the shape part of the params.
template <typename T>
AttentionShape<T> shape_of(const char* op, const py::array& q, const py::array& k,
                           const py::array& v, const OptArray& mask, bool causal, double scale) {
  require_4d(op, "q", q);
  require_4d(op, "k", k);
  require_4d(op, "v", v);
  AttentionShape<T> s;
  s.B = q.shape(0), s.H = q.shape(1), s.Lq = q.shape(2), s.D = q.shape(3);
  s.Lk = k.shape(2), s.Dv = v.shape(3);
  require_shape(op, "k", k, {s.B, s.H, s.Lk, s.D}, "(q's B, H and D)");
  require_shape(op, "v", v, {s.B, s.H, s.Lk, s.Dv}, "(k's B, H and Lk)");
  for (const auto* a : {&q, &k, &v}) require_contiguous(op, a == &q ? "q" : a == &k ? "k" : "v", *a);
  s.scale = T(scale);
  s.causal = causal;
  if (!std::isfinite(scale)) throw py::value_error(std::string(op) + ": scale must be finite");
  if (mask) {
    const py::array& m = *mask;
    if (m.ndim() != 4)
      throw py::value_error(std::string(op) + ": mask must be 4-D, broadcastable to (B, H, Lq, Lk), got shape " + shape_str(m));
    const py::ssize_t want[4] = {s.B, s.H, s.Lq, s.Lk};
    for (int i = 0; i < 3; ++i)
      if (m.shape(i) != 1 && m.shape(i) != want[i])
        throw py::value_error(std::string(op) + ": mask of shape " + shape_str(m) +
                              " does not broadcast to (B, H, Lq, Lk) = (" + std::to_string(s.B) + ", " +
                              std::to_string(s.H) + ", " + std::to_string(s.Lq) + ", " + std::to_string(s.Lk) + ")");
    if (m.shape(3) != s.Lk || (s.Lk > 1 && m.strides(3) != m.itemsize()))
      throw py::value_error(std::string(op) + ": mask of shape " + shape_str(m) +
                            " must have Lk = " + std::to_string(s.Lk) + " contiguous values in its last axis");
    const bool is_bool = m.dtype().is(py::dtype::of<bool>());
    if (!is_bool && !m.dtype().is(py::dtype::of<T>()))
      throw py::type_error(std::string(op) + ": mask must be bool or " + dtype_str(q) + " (q's dtype), got " + dtype_str(m));
    auto stride = [&](int i) { return m.shape(i) == 1 ? int64_t(0) : int64_t(m.strides(i) / m.itemsize()); };
    s.mask_sb = stride(0), s.mask_sh = stride(1), s.mask_sq = stride(2);
    if (is_bool) s.mask_bool = static_cast<const uint8_t*>(m.data());
    else s.mask_add = static_cast<const T*>(m.data());
  }
  return s;
}

void require_float_family(const char* op, const py::array& q, const py::array& k, const py::array& v) {
  require_float(op, "q", q);
  require_same_dtype(op, "k", k, "q", q);
  require_same_dtype(op, "v", v, "q", q);
}

// An optional same-dtype, same-shape, C-contiguous array.
void check_like(const char* op, const char* arg, const OptArray& a, const char* ref_arg, const py::array& ref) {
  if (!a) return;
  require_same_dtype(op, arg, *a, ref_arg, ref);
  require_same_shape(op, arg, *a, ref_arg, ref);
  require_contiguous(op, arg, *a);
}

py::array lse_array(const py::array& q) {
  return new_array(q.dtype(), {q.shape(0), q.shape(1), q.shape(2)});
}

template <typename T>
py::tuple forward_impl(const py::array& q, const py::array& k, const py::array& v, const OptArray& mask,
                       bool causal, double scale) {
  const char* op = "attention_forward";
  AttentionForwardParams<T> p;
  p.s = shape_of<T>(op, q, k, v, mask, causal, scale);
  py::array o = new_array(q.dtype(), {p.s.B, p.s.H, p.s.Lq, p.s.Dv});
  py::array lse = lse_array(q);
  p.q = cptr<T>(q), p.k = cptr<T>(k), p.v = cptr<T>(v), p.o = mptr<T>(o), p.lse = mptr<T>(lse);
  if (o.size() == 0 && lse.size() == 0) return py::make_tuple(o, lse);
  {
    py::gil_scoped_release nogil;
    ThreadBudget budget;
    if constexpr (std::is_same_v<T, float>) attention_forward_f32()(p, budget.threads());
    else attention_forward_f64()(p, budget.threads());
  }
  return py::make_tuple(o, lse);
}

py::tuple attention_forward(const py::array& q, const py::array& k, const py::array& v,
                            const OptArray& mask, bool causal, double scale) {
  require_float_family("attention_forward", q, k, v);
  return is_f32(q) ? forward_impl<float>(q, k, v, mask, causal, scale)
                   : forward_impl<double>(q, k, v, mask, causal, scale);
}

template <typename T>
py::tuple backward_impl(const py::array& q, const py::array& k, const py::array& v, const py::array& o,
                        const py::array& lse, const py::array& dout, const OptArray& mask, bool causal,
                        double scale) {
  const char* op = "attention_backward";
  AttentionBackwardParams<T> p;
  p.s = shape_of<T>(op, q, k, v, mask, causal, scale);
  require_shape(op, "o", o, {p.s.B, p.s.H, p.s.Lq, p.s.Dv}, "(B, H, Lq, Dv)");
  require_shape(op, "dout", dout, {p.s.B, p.s.H, p.s.Lq, p.s.Dv}, "(B, H, Lq, Dv)");
  require_shape(op, "lse", lse, {p.s.B, p.s.H, p.s.Lq}, "(B, H, Lq)");
  for (const auto& [name, a] : {std::pair<const char*, const py::array*>{"o", &o}, {"lse", &lse}, {"dout", &dout}}) {
    require_same_dtype(op, name, *a, "q", q);
    require_contiguous(op, name, *a);
  }
  py::array dq = empty_like(q), dk = empty_like(k), dv = empty_like(v);
  p.q = cptr<T>(q), p.k = cptr<T>(k), p.v = cptr<T>(v), p.o = cptr<T>(o), p.lse = cptr<T>(lse);
  p.dout = cptr<T>(dout), p.dq = mptr<T>(dq), p.dk = mptr<T>(dk), p.dv = mptr<T>(dv);
  if (q.size() + k.size() + v.size() == 0) return py::make_tuple(dq, dk, dv);
  {
    py::gil_scoped_release nogil;
    ThreadBudget budget;
    if constexpr (std::is_same_v<T, float>) attention_backward_f32()(p, budget.threads());
    else attention_backward_f64()(p, budget.threads());
  }
  return py::make_tuple(dq, dk, dv);
}

py::tuple attention_backward(const py::array& q, const py::array& k, const py::array& v, const py::array& o,
                             const py::array& lse, const py::array& dout, const OptArray& mask, bool causal,
                             double scale) {
  require_float_family("attention_backward", q, k, v);
  return is_f32(q) ? backward_impl<float>(q, k, v, o, lse, dout, mask, causal, scale)
                   : backward_impl<double>(q, k, v, o, lse, dout, mask, causal, scale);
}

template <typename T>
py::object jvp_impl(const py::array& q, const py::array& k, const py::array& v, const py::array& o,
                    const py::array& lse, const OptArray& tq, const OptArray& tk, const OptArray& tv,
                    const OptArray& mask, bool causal, double scale, bool with_u) {
  const char* op = "attention_jvp";
  AttentionJvpParams<T> p;
  p.s = shape_of<T>(op, q, k, v, mask, causal, scale);
  require_shape(op, "o", o, {p.s.B, p.s.H, p.s.Lq, p.s.Dv}, "(B, H, Lq, Dv)");
  require_shape(op, "lse", lse, {p.s.B, p.s.H, p.s.Lq}, "(B, H, Lq)");
  for (const auto& [name, a] : {std::pair<const char*, const py::array*>{"o", &o}, {"lse", &lse}}) {
    require_same_dtype(op, name, *a, "q", q);
    require_contiguous(op, name, *a);
  }
  check_like(op, "tq", tq, "q", q);
  check_like(op, "tk", tk, "k", k);
  check_like(op, "tv", tv, "v", v);
  py::array tout = empty_like(o);
  py::array u = lse_array(q);
  p.q = cptr<T>(q), p.k = cptr<T>(k), p.v = cptr<T>(v), p.o = cptr<T>(o), p.lse = cptr<T>(lse);
  p.tq = cptr<T>(tq), p.tk = cptr<T>(tk), p.tv = cptr<T>(tv), p.tout = mptr<T>(tout);
  p.u = with_u ? mptr<T>(u) : nullptr;
  if (u.size() != 0) {
    py::gil_scoped_release nogil;
    ThreadBudget budget;
    if constexpr (std::is_same_v<T, float>) attention_jvp_f32()(p, budget.threads());
    else attention_jvp_f64()(p, budget.threads());
  }
  if (with_u) return py::make_tuple(tout, u);
  return std::move(tout);
}

py::object attention_jvp(const py::array& q, const py::array& k, const py::array& v, const py::array& o,
                         const py::array& lse, const OptArray& tq, const OptArray& tk, const OptArray& tv,
                         const OptArray& mask, bool causal, double scale, bool with_u) {
  require_float_family("attention_jvp", q, k, v);
  return is_f32(q) ? jvp_impl<float>(q, k, v, o, lse, tq, tk, tv, mask, causal, scale, with_u)
                   : jvp_impl<double>(q, k, v, o, lse, tq, tk, tv, mask, causal, scale, with_u);
}

template <typename T>
py::tuple backward_jvp_impl(const py::array& q, const py::array& k, const py::array& v,
                            const py::array& o, const py::array& lse, const py::array& dout,
                            const py::array& tout, const py::array& u, const OptArray& tq,
                            const OptArray& tk, const OptArray& tv, const OptArray& tdout,
                            const OptArray& mask, bool causal, double scale) {
  const char* op = "attention_backward_jvp";
  AttentionBackwardJvpParams<T> p;
  p.s = shape_of<T>(op, q, k, v, mask, causal, scale);
  for (const auto& [name, a] : {std::pair<const char*, const py::array*>{"o", &o}, {"dout", &dout}, {"tout", &tout}})
    require_shape(op, name, *a, {p.s.B, p.s.H, p.s.Lq, p.s.Dv}, "(B, H, Lq, Dv)");
  for (const auto& [name, a] : {std::pair<const char*, const py::array*>{"lse", &lse}, {"u", &u}})
    require_shape(op, name, *a, {p.s.B, p.s.H, p.s.Lq}, "(B, H, Lq)");
  for (const auto& [name, a] : {std::pair<const char*, const py::array*>{"o", &o}, {"lse", &lse},
                                {"dout", &dout}, {"tout", &tout}, {"u", &u}}) {
    require_same_dtype(op, name, *a, "q", q);
    require_contiguous(op, name, *a);
  }
  check_like(op, "tq", tq, "q", q);
  check_like(op, "tk", tk, "k", k);
  check_like(op, "tv", tv, "v", v);
  check_like(op, "tdout", tdout, "dout", dout);
  py::array tdq = empty_like(q), tdk = empty_like(k), tdv = empty_like(v);
  p.q = cptr<T>(q), p.k = cptr<T>(k), p.v = cptr<T>(v), p.o = cptr<T>(o), p.lse = cptr<T>(lse);
  p.dout = cptr<T>(dout), p.tout = cptr<T>(tout), p.u = cptr<T>(u);
  p.tq = cptr<T>(tq), p.tk = cptr<T>(tk), p.tv = cptr<T>(tv), p.tdout = cptr<T>(tdout);
  p.tdq = mptr<T>(tdq), p.tdk = mptr<T>(tdk), p.tdv = mptr<T>(tdv);
  if (q.size() + k.size() + v.size() == 0) return py::make_tuple(tdq, tdk, tdv);
  {
    py::gil_scoped_release nogil;
    ThreadBudget budget;
    if constexpr (std::is_same_v<T, float>) attention_backward_jvp_f32()(p, budget.threads());
    else attention_backward_jvp_f64()(p, budget.threads());
  }
  return py::make_tuple(tdq, tdk, tdv);
}

py::tuple attention_backward_jvp(const py::array& q, const py::array& k, const py::array& v,
                                 const py::array& o, const py::array& lse, const py::array& dout,
                                 const py::array& tout, const py::array& u, const OptArray& tq,
                                 const OptArray& tk, const OptArray& tv, const OptArray& tdout,
                                 const OptArray& mask, bool causal, double scale) {
  require_float_family("attention_backward_jvp", q, k, v);
  return is_f32(q) ? backward_jvp_impl<float>(q, k, v, o, lse, dout, tout, u, tq, tk, tv, tdout, mask, causal, scale)
                   : backward_jvp_impl<double>(q, k, v, o, lse, dout, tout, u, tq, tk, tv, tdout, mask, causal, scale);
}

}  // namespace

void bind_attention(py::module_& m) {
  m.def("attention_forward", &attention_forward, py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("mask") = py::none(), py::arg("causal") = false, py::arg("scale") = 1.0,
        "Fused attention forward on C-contiguous (B, H, L, D) arrays: (o, lse).");
  m.def("attention_backward", &attention_backward, py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("o"), py::arg("lse"), py::arg("dout"), py::arg("mask") = py::none(),
        py::arg("causal") = false, py::arg("scale") = 1.0,
        "Fused attention backward from the forward's o and lse: (dq, dk, dv).");
  m.def("attention_jvp", &attention_jvp, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("o"),
        py::arg("lse"), py::arg("tq") = py::none(), py::arg("tk") = py::none(),
        py::arg("tv") = py::none(), py::arg("mask") = py::none(), py::arg("causal") = false,
        py::arg("scale") = 1.0, py::arg("with_u") = false,
        "Tangent of the attention output along (tq, tk, tv); with_u: (tout, u), u = rowsum(P tS).");
  m.def("attention_backward_jvp", &attention_backward_jvp, py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("o"), py::arg("lse"), py::arg("dout"), py::arg("tout"), py::arg("u"),
        py::arg("tq") = py::none(), py::arg("tk") = py::none(), py::arg("tv") = py::none(),
        py::arg("tdout") = py::none(), py::arg("mask") = py::none(), py::arg("causal") = false,
        py::arg("scale") = 1.0,
        "Tangent of the backward's (dq, dk, dv) along (tq, tk, tv, tdout), from attention_jvp's (tout, u).");
}

}  // namespace deepcalc::bind
