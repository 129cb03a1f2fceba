// Bindings for BatchNorm / LayerNorm: validate shapes and dtypes, allocate outputs, release the GIL
// and call the kernels of cpp/norm/ (float64 runs the reference). The Python autodiff layer
// calls these names; the contract of each is in its docstring.
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "bindings/checks.h"
#include "common/hw.h"
#include "common/threads.h"
#include "norm/norm.h"

namespace deepcalc::bind {
namespace {

using OptArray = std::optional<py::array>;

// The dispatched kernels for one dtype.
template <typename T> struct NormKernels;
template <> struct NormKernels<float> {
  static auto bn_train() { return batchnorm_forward_train_f32(); }
  static auto bn_eval() { return batchnorm_forward_eval_f32(); }
  static auto bn_backward() { return batchnorm_backward_f32(); }
  static auto ln_forward() { return layernorm_forward_f32(); }
  static auto ln_backward() { return layernorm_backward_f32(); }
  static auto bn_forward_jvp() { return batchnorm_forward_jvp_f32(); }
  static auto bn_backward_jvp() { return batchnorm_backward_jvp_f32(); }
  static auto ln_forward_jvp() { return layernorm_forward_jvp_f32(); }
  static auto ln_backward_jvp() { return layernorm_backward_jvp_f32(); }
};
template <> struct NormKernels<double> {
  static auto bn_train() { return batchnorm_forward_train_f64(); }
  static auto bn_eval() { return batchnorm_forward_eval_f64(); }
  static auto bn_backward() { return batchnorm_backward_f64(); }
  static auto ln_forward() { return layernorm_forward_f64(); }
  static auto ln_backward() { return layernorm_backward_f64(); }
  static auto bn_forward_jvp() { return batchnorm_forward_jvp_f64(); }
  static auto bn_backward_jvp() { return batchnorm_backward_jvp_f64(); }
  static auto ln_forward_jvp() { return layernorm_forward_jvp_f64(); }
  static auto ln_backward_jvp() { return layernorm_backward_jvp_f64(); }
};

py::array empty_of(const py::array& like, std::vector<py::ssize_t> shape) {
  return new_array(like.dtype(), shape);
}

// A per-channel / per-feature vector: same dtype as x, contiguous, shape (C,).
// `what` describes x's C, e.g. "channels" or "features in its last axis".
void require_vector(const char* op, const char* arg, const py::array& v, const py::array& x,
                    int64_t C, const char* what) {
  require_same_dtype(op, arg, v, "x", x);
  if (v.ndim() != 1 || v.shape(0) != C)
    throw py::value_error(std::string(op) + ": x has " + std::to_string(C) + " " + what + " (shape " +
                          shape_str(x) + "), " + arg + " has " +
                          (v.ndim() == 1 ? std::to_string(v.shape(0)) : "shape " + shape_str(v)));
  require_contiguous(op, arg, v);
}

// An array laid out like x (dy and the tangents of x and dy): same dtype and shape, C-contiguous.
void require_like_x(const char* op, const char* arg, const py::array& a, const py::array& x) {
  require_same_dtype(op, arg, a, "x", x);
  require_same_shape(op, arg, a, "x", x);
  require_contiguous(op, arg, a);
}

// BatchNorm input: float, C-contiguous, (N, C) or (N, C, L); returns N, C, L.
void bn_input(const char* op, const py::array& x, int64_t& N, int64_t& C, int64_t& L) {
  require_float(op, "x", x);
  if (x.ndim() != 2 && x.ndim() != 3)
    throw py::value_error(std::string(op) + ": x must be (N, C) or (N, C, L), got shape " + shape_str(x));
  require_contiguous(op, "x", x);
  N = x.shape(0), C = x.shape(1), L = x.ndim() == 3 ? x.shape(2) : 1;
}

template <typename T>
py::tuple bn_train_impl(const py::array& x, const OptArray& gamma, const OptArray& beta, double eps,
                        int64_t N, int64_t C, int64_t L) {
  py::array y = empty_like(x), mean = empty_of(x, {py::ssize_t(C)}), invstd = empty_of(x, {py::ssize_t(C)});
  if (C == 0) return py::make_tuple(y, mean, invstd);  // no channels: empty results, as torch
  {
    py::gil_scoped_release nogil;
    ThreadBudget budget(N * C * L, hw::kNormGrain);
    NormForwardParams<T> p;
    p.x = cptr<T>(x), p.gamma = cptr<T>(gamma), p.beta = cptr<T>(beta);
    p.y = mptr<T>(y), p.mean = mptr<T>(mean), p.invstd = mptr<T>(invstd);
    p.N = N, p.C = C, p.L = L, p.eps = eps;
    NormKernels<T>::bn_train()(p, budget.threads());
  }
  return py::make_tuple(y, mean, invstd);
}

py::tuple batchnorm_forward_train(const py::array& x, const OptArray& gamma, const OptArray& beta,
                                  double eps) {
  const char* op = "batchnorm";
  int64_t N, C, L;
  bn_input(op, x, N, C, L);
  if (gamma) require_vector(op, "gamma", *gamma, x, C, "channels");
  if (beta) require_vector(op, "beta", *beta, x, C, "channels");
  if (N * L <= 1)
    throw py::value_error(std::string(op) + ": Expected more than 1 value per channel when training, got input size " +
                          shape_str(x));
  if (!(eps >= 0)) throw py::value_error(std::string(op) + ": eps must be >= 0, got " + std::to_string(eps));
  return is_f32(x) ? bn_train_impl<float>(x, gamma, beta, eps, N, C, L)
                   : bn_train_impl<double>(x, gamma, beta, eps, N, C, L);
}

void batchnorm_update_running_stats(py::array& running_mean, py::array& running_var,
                                    const py::array& mean, const py::array& invstd, int64_t count,
                                    double momentum, double eps) {
  const char* op = "batchnorm_update_running";
  require_float(op, "mean", mean);
  if (mean.ndim() != 1)
    throw py::value_error(std::string(op) + ": mean must be (C,), got shape " + shape_str(mean));
  const int64_t C = mean.shape(0);
  require_contiguous(op, "mean", mean);
  for (auto* v : {&running_mean, &running_var}) {
    const char* name = v == &running_mean ? "running_mean" : "running_var";
    require_same_dtype(op, name, *v, "mean", mean);
    require_same_shape(op, name, *v, "mean", mean);
    require_contiguous(op, name, *v);
    require_writeable(op, name, *v);
  }
  require_same_dtype(op, "invstd", invstd, "mean", mean);
  require_same_shape(op, "invstd", invstd, "mean", mean);
  require_contiguous(op, "invstd", invstd);
  require_no_overlap(op, "running_mean", running_mean, "running_var", running_var);
  for (auto* v : {&running_mean, &running_var}) {
    const char* name = v == &running_mean ? "running_mean" : "running_var";
    require_no_overlap(op, name, *v, "mean", mean);
    require_no_overlap(op, name, *v, "invstd", invstd);
  }
  if (count <= 1)
    throw py::value_error(std::string(op) + ": count (values per channel) must be > 1, got " +
                          std::to_string(count));
  if (is_f32(mean))
    batchnorm_update_running(mptr<float>(running_mean), mptr<float>(running_var), cptr<float>(mean),
                             cptr<float>(invstd), C, count, momentum, eps);
  else
    batchnorm_update_running(mptr<double>(running_mean), mptr<double>(running_var),
                             cptr<double>(mean), cptr<double>(invstd), C, count, momentum, eps);
}

template <typename T>
py::array bn_eval_impl(const py::array& x, const py::array& rm, const py::array& rv,
                       const OptArray& gamma, const OptArray& beta, double eps, int64_t N, int64_t C,
                       int64_t L) {
  py::array y = empty_like(x);
  if (x.size() == 0) return y;
  py::gil_scoped_release nogil;
  ThreadBudget budget(N * C * L, hw::kNormGrain);
  NormForwardParams<T> p;
  p.x = cptr<T>(x), p.running_mean = cptr<T>(rm), p.running_var = cptr<T>(rv);
  p.gamma = cptr<T>(gamma), p.beta = cptr<T>(beta), p.y = mptr<T>(y);
  p.N = N, p.C = C, p.L = L, p.eps = eps;
  NormKernels<T>::bn_eval()(p, budget.threads());
  return y;
}

py::array batchnorm_forward_eval(const py::array& x, const py::array& running_mean,
                                 const py::array& running_var, const OptArray& gamma,
                                 const OptArray& beta, double eps) {
  const char* op = "batchnorm_eval";
  int64_t N, C, L;
  bn_input(op, x, N, C, L);
  require_vector(op, "running_mean", running_mean, x, C, "channels");
  require_vector(op, "running_var", running_var, x, C, "channels");
  if (gamma) require_vector(op, "gamma", *gamma, x, C, "channels");
  if (beta) require_vector(op, "beta", *beta, x, C, "channels");
  if (!(eps >= 0)) throw py::value_error(std::string(op) + ": eps must be >= 0, got " + std::to_string(eps));
  return is_f32(x) ? bn_eval_impl<float>(x, running_mean, running_var, gamma, beta, eps, N, C, L)
                   : bn_eval_impl<double>(x, running_mean, running_var, gamma, beta, eps, N, C, L);
}

template <typename T>
py::tuple bn_backward_impl(const py::array& dy, const py::array& x, const py::array& mean,
                           const py::array& invstd, const OptArray& gamma, int64_t N, int64_t C,
                           int64_t L) {
  py::array dx = empty_like(x);
  py::object dgamma = py::none(), dbeta = py::none();
  T *pg = nullptr, *pb = nullptr;
  if (gamma) {
    py::array g = empty_of(x, {py::ssize_t(C)}), b = empty_of(x, {py::ssize_t(C)});
    pg = mptr<T>(g), pb = mptr<T>(b);
    dgamma = g, dbeta = b;
  }
  if (C == 0) return py::make_tuple(dx, dgamma, dbeta);  // no channels: empty results
  {
    py::gil_scoped_release nogil;
    ThreadBudget budget(N * C * L, hw::kNormGrain);
    NormBackwardParams<T> p;
    p.dy = cptr<T>(dy), p.x = cptr<T>(x), p.mean = cptr<T>(mean), p.invstd = cptr<T>(invstd);
    p.gamma = cptr<T>(gamma), p.dx = mptr<T>(dx), p.dgamma = pg, p.dbeta = pb;
    p.N = N, p.C = C, p.L = L;
    NormKernels<T>::bn_backward()(p, budget.threads());
  }
  return py::make_tuple(dx, dgamma, dbeta);
}

py::tuple batchnorm_backward(const py::array& dy, const py::array& x, const py::array& mean,
                             const py::array& invstd, const OptArray& gamma) {
  const char* op = "batchnorm_backward";
  int64_t N, C, L;
  bn_input(op, x, N, C, L);
  require_like_x(op, "dy", dy, x);
  require_vector(op, "mean", mean, x, C, "channels");
  require_vector(op, "invstd", invstd, x, C, "channels");
  if (gamma) require_vector(op, "gamma", *gamma, x, C, "channels");
  if (N * L == 0) throw py::value_error(std::string(op) + ": x " + shape_str(x) + " has no values per channel");
  return is_f32(x) ? bn_backward_impl<float>(dy, x, mean, invstd, gamma, N, C, L)
                   : bn_backward_impl<double>(dy, x, mean, invstd, gamma, N, C, L);
}

// LayerNorm input: float, C-contiguous, at least 1-D (a last axis, possibly of size 0); returns
// rows (the product of shape[:-1]) and C.
void ln_input(const char* op, const py::array& x, int64_t& R, int64_t& C) {
  require_float(op, "x", x);
  if (x.ndim() == 0)
    throw py::value_error(std::string(op) + ": x must have a non-empty last axis, got shape " + shape_str(x));
  require_contiguous(op, "x", x);
  C = x.shape(x.ndim() - 1);
  R = 1;
  for (py::ssize_t i = 0; i + 1 < x.ndim(); ++i) R *= x.shape(i);
}

std::vector<py::ssize_t> row_shape(const py::array& x) {
  return std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim() - 1);
}

// A LayerNorm per-row statistic (mean, invstd): same dtype as x, C-contiguous, x.shape[:-1].
void require_rows(const char* op, const char* arg, const py::array& a, const py::array& x) {
  require_same_dtype(op, arg, a, "x", x);
  bool rows = a.ndim() == x.ndim() - 1;
  for (py::ssize_t i = 0; rows && i < a.ndim(); ++i) rows = a.shape(i) == x.shape(i);
  if (!rows)
    throw py::value_error(std::string(op) + ": " + arg + " has shape " + shape_str(a) +
                          ", expected x.shape[:-1] of x " + shape_str(x));
  require_contiguous(op, arg, a);
}

template <typename T>
py::tuple ln_forward_impl(const py::array& x, const OptArray& gamma, const OptArray& beta, double eps,
                          int64_t R, int64_t C) {
  py::array y = empty_like(x), mean = empty_of(x, row_shape(x)), invstd = empty_of(x, row_shape(x));
  if (C == 0) {  // rows of no features, as torch: y empty, mean 0, invstd NaN (no variance)
    std::fill_n(mptr<T>(mean), R, T(0));
    std::fill_n(mptr<T>(invstd), R, T(NAN));
    return py::make_tuple(y, mean, invstd);
  }
  {
    py::gil_scoped_release nogil;
    ThreadBudget budget(R * C, hw::kNormGrain);
    NormForwardParams<T> p;
    p.x = cptr<T>(x), p.gamma = cptr<T>(gamma), p.beta = cptr<T>(beta);
    p.y = mptr<T>(y), p.mean = mptr<T>(mean), p.invstd = mptr<T>(invstd);
    p.N = R, p.C = C, p.eps = eps;
    NormKernels<T>::ln_forward()(p, budget.threads());
  }
  return py::make_tuple(y, mean, invstd);
}

py::tuple layernorm_forward(const py::array& x, const OptArray& gamma, const OptArray& beta, double eps) {
  const char* op = "layernorm";
  int64_t R, C;
  ln_input(op, x, R, C);
  if (gamma) require_vector(op, "gamma", *gamma, x, C, "features in its last axis");
  if (beta) require_vector(op, "beta", *beta, x, C, "features in its last axis");
  if (!(eps >= 0)) throw py::value_error(std::string(op) + ": eps must be >= 0, got " + std::to_string(eps));
  return is_f32(x) ? ln_forward_impl<float>(x, gamma, beta, eps, R, C)
                   : ln_forward_impl<double>(x, gamma, beta, eps, R, C);
}

template <typename T>
py::tuple ln_backward_impl(const py::array& dy, const py::array& x, const py::array& mean,
                           const py::array& invstd, const OptArray& gamma, int64_t R, int64_t C) {
  py::array dx = empty_like(x);
  py::object dgamma = py::none(), dbeta = py::none();
  T *pg = nullptr, *pb = nullptr;
  if (gamma) {
    py::array g = empty_of(x, {py::ssize_t(C)}), b = empty_of(x, {py::ssize_t(C)});
    pg = mptr<T>(g), pb = mptr<T>(b);
    dgamma = g, dbeta = b;
  }
  if (C == 0) return py::make_tuple(dx, dgamma, dbeta);  // no features: empty results
  {
    py::gil_scoped_release nogil;
    ThreadBudget budget(R * C, hw::kNormGrain);
    NormBackwardParams<T> p;
    p.dy = cptr<T>(dy), p.x = cptr<T>(x), p.mean = cptr<T>(mean), p.invstd = cptr<T>(invstd);
    p.gamma = cptr<T>(gamma), p.dx = mptr<T>(dx), p.dgamma = pg, p.dbeta = pb;
    p.N = R, p.C = C;
    NormKernels<T>::ln_backward()(p, budget.threads());
  }
  return py::make_tuple(dx, dgamma, dbeta);
}

py::tuple layernorm_backward(const py::array& dy, const py::array& x, const py::array& mean,
                             const py::array& invstd, const OptArray& gamma) {
  const char* op = "layernorm_backward";
  int64_t R, C;
  ln_input(op, x, R, C);
  require_like_x(op, "dy", dy, x);
  require_rows(op, "mean", mean, x);
  require_rows(op, "invstd", invstd, x);
  if (gamma) require_vector(op, "gamma", *gamma, x, C, "features in its last axis");
  return is_f32(x) ? ln_backward_impl<float>(dy, x, mean, invstd, gamma, R, C)
                   : ln_backward_impl<double>(dy, x, mean, invstd, gamma, R, C);
}

// ---- forward-mode tangents (formulas in norm.h at NormJvpParams) ---------------------------------
// x, mean, invstd and gamma checked in the batch form (x (N, C) or (N, C, L), statistics (C,)) or
// the layer form (statistics x.shape[:-1], gamma over the last axis); sizes as the kernels take
// them (LayerNorm: N = rows, L = 1).
struct JvpLayout {
  const char* op;
  const char* what;  // what C counts, for require_vector
  int64_t N = 0, C = 0, L = 1;
};

JvpLayout jvp_input(const char* bn_op, const char* ln_op, const py::array& x, const py::array& mean,
                    const py::array& invstd, const OptArray& gamma, const OptArray& t_gamma,
                    bool batch) {
  JvpLayout s{batch ? bn_op : ln_op, batch ? "channels" : "features in its last axis"};
  if (batch) {
    bn_input(s.op, x, s.N, s.C, s.L);
    require_vector(s.op, "mean", mean, x, s.C, s.what);
    require_vector(s.op, "invstd", invstd, x, s.C, s.what);
  } else {
    ln_input(s.op, x, s.N, s.C);
    require_rows(s.op, "mean", mean, x);
    require_rows(s.op, "invstd", invstd, x);
  }
  if (gamma) require_vector(s.op, "gamma", *gamma, x, s.C, s.what);
  if (t_gamma) {
    if (!gamma)
      throw py::value_error(std::string(s.op) + ": t_gamma has shape " + shape_str(*t_gamma) +
                            " but gamma is None; a tangent needs its parameter");
    require_vector(s.op, "t_gamma", *t_gamma, x, s.C, s.what);
  }
  return s;
}

template <typename T>
py::array forward_jvp_impl(const py::array& x, const py::array& mean, const py::array& invstd,
                           const OptArray& gamma, const OptArray& t_x, const OptArray& t_gamma,
                           const OptArray& t_beta, const JvpLayout& s, bool batch) {
  py::array ty = empty_like(x);
  if (x.size() == 0) return ty;
  py::gil_scoped_release nogil;
  ThreadBudget budget(s.N * s.C * s.L, hw::kNormGrain);
  NormJvpParams<T> p;
  p.x = cptr<T>(x), p.mean = cptr<T>(mean), p.invstd = cptr<T>(invstd), p.gamma = cptr<T>(gamma);
  p.t_x = cptr<T>(t_x), p.t_gamma = cptr<T>(t_gamma), p.t_beta = cptr<T>(t_beta), p.t_y = mptr<T>(ty);
  p.N = s.N, p.C = s.C, p.L = s.L;
  (batch ? NormKernels<T>::bn_forward_jvp() : NormKernels<T>::ln_forward_jvp())(p, budget.threads());
  return ty;
}

py::array norm_forward_jvp(const py::array& x, const py::array& mean, const py::array& invstd,
                           const OptArray& gamma, const OptArray& t_x, const OptArray& t_gamma,
                           const OptArray& t_beta, bool batch) {
  const JvpLayout s = jvp_input("batchnorm_forward_jvp", "layernorm_forward_jvp", x, mean, invstd,
                                gamma, t_gamma, batch);
  if (t_x) require_like_x(s.op, "t_x", *t_x, x);
  if (t_beta) require_vector(s.op, "t_beta", *t_beta, x, s.C, s.what);
  return is_f32(x) ? forward_jvp_impl<float>(x, mean, invstd, gamma, t_x, t_gamma, t_beta, s, batch)
                   : forward_jvp_impl<double>(x, mean, invstd, gamma, t_x, t_gamma, t_beta, s, batch);
}

template <typename T>
py::tuple backward_jvp_impl(const py::array& dy, const py::array& x, const py::array& mean,
                            const py::array& invstd, const OptArray& gamma, const OptArray& t_dy,
                            const OptArray& t_x, const OptArray& t_gamma, const JvpLayout& s,
                            bool batch) {
  py::array tdx = empty_like(x);
  py::object tdgamma = py::none(), tdbeta = py::none();
  T *pg = nullptr, *pb = nullptr;
  if (gamma) {
    py::array g = empty_of(x, {py::ssize_t(s.C)}), b = empty_of(x, {py::ssize_t(s.C)});
    pg = mptr<T>(g), pb = mptr<T>(b);
    tdgamma = g, tdbeta = b;
  }
  if (x.size() == 0) {  // no values: parameter tangents are empty sums
    std::fill_n(pg, pg ? s.C : 0, T(0));
    std::fill_n(pb, pb ? s.C : 0, T(0));
    return py::make_tuple(tdx, tdgamma, tdbeta);
  }
  {
    py::gil_scoped_release nogil;
    ThreadBudget budget(s.N * s.C * s.L, hw::kNormGrain);
    NormJvpParams<T> p;
    p.dy = cptr<T>(dy), p.x = cptr<T>(x), p.mean = cptr<T>(mean), p.invstd = cptr<T>(invstd);
    p.gamma = cptr<T>(gamma), p.t_dy = cptr<T>(t_dy), p.t_x = cptr<T>(t_x), p.t_gamma = cptr<T>(t_gamma);
    p.t_dx = mptr<T>(tdx), p.t_dgamma = pg, p.t_dbeta = pb;
    p.N = s.N, p.C = s.C, p.L = s.L;
    (batch ? NormKernels<T>::bn_backward_jvp() : NormKernels<T>::ln_backward_jvp())(p, budget.threads());
  }
  return py::make_tuple(tdx, tdgamma, tdbeta);
}

py::tuple norm_backward_jvp(const py::array& dy, const py::array& x, const py::array& mean,
                            const py::array& invstd, const OptArray& gamma, const OptArray& t_dy,
                            const OptArray& t_x, const OptArray& t_gamma, bool batch) {
  const JvpLayout s = jvp_input("batchnorm_backward_jvp", "layernorm_backward_jvp", x, mean, invstd,
                                gamma, t_gamma, batch);
  require_like_x(s.op, "dy", dy, x);
  if (t_dy) require_like_x(s.op, "t_dy", *t_dy, x);
  if (t_x) require_like_x(s.op, "t_x", *t_x, x);
  return is_f32(x) ? backward_jvp_impl<float>(dy, x, mean, invstd, gamma, t_dy, t_x, t_gamma, s, batch)
                   : backward_jvp_impl<double>(dy, x, mean, invstd, gamma, t_dy, t_x, t_gamma, s, batch);
}

}  // namespace

void bind_norm(py::module_& m) {
  m.def("batchnorm_forward_train", &batchnorm_forward_train, py::arg("x"), py::arg("gamma"),
        py::arg("beta"), py::arg("eps"),
        "BatchNorm with batch statistics. x is (N, C) or (N, C, L), C-contiguous float32/float64;\n"
        "gamma/beta are (C,) or None. Returns (y, mean, invstd): mean and invstd = 1/sqrt(var + eps)\n"
        "per channel over N and L (biased var); y = (x - mean) * invstd * gamma + beta.");
  m.def("batchnorm_update_running", &batchnorm_update_running_stats, py::arg("running_mean"),
        py::arg("running_var"), py::arg("mean"), py::arg("invstd"), py::arg("count"),
        py::arg("momentum"), py::arg("eps"),
        "In place, torch's rule: running_mean = (1 - momentum) running_mean + momentum mean;\n"
        "running_var likewise with the unbiased batch variance (1/invstd^2 - eps) count/(count-1).");
  m.def("batchnorm_forward_eval", &batchnorm_forward_eval, py::arg("x"), py::arg("running_mean"),
        py::arg("running_var"), py::arg("gamma"), py::arg("beta"), py::arg("eps"),
        "BatchNorm with running statistics: y = (x - running_mean) / sqrt(running_var + eps) * gamma + beta.");
  m.def("batchnorm_backward", &batchnorm_backward, py::arg("dy"), py::arg("x"), py::arg("mean"),
        py::arg("invstd"), py::arg("gamma"),
        "Training-mode BatchNorm backward through the batch statistics. Returns (dx, dgamma, dbeta);\n"
        "dgamma = sum(dy * xhat), dbeta = sum(dy) per channel, both None when gamma is None.");
  m.def("layernorm_forward", &layernorm_forward, py::arg("x"), py::arg("gamma"), py::arg("beta"),
        py::arg("eps"),
        "LayerNorm over the last axis (size C) of a C-contiguous float array; gamma/beta (C,) or None.\n"
        "Returns (y, mean, invstd) with mean/invstd shaped x.shape[:-1].");
  m.def("layernorm_backward", &layernorm_backward, py::arg("dy"), py::arg("x"), py::arg("mean"),
        py::arg("invstd"), py::arg("gamma"),
        "LayerNorm backward. Returns (dx, dgamma, dbeta); dgamma/dbeta are reduced over all rows and\n"
        "are None when gamma is None.");
  m.def("norm_forward_jvp", &norm_forward_jvp, py::arg("x"), py::arg("mean"), py::arg("invstd"),
        py::arg("gamma"), py::arg("t_x"), py::arg("t_gamma"), py::arg("t_beta"), py::arg("batch"),
        "Tangent of the training-mode forward (batch: BatchNorm x (N, C) or (N, C, L), else LayerNorm\n"
        "over the last axis), mean/invstd from the forward. Per group, xhat = (x - mean) invstd:\n"
        "r = avg(xhat t_x), t_xhat = invstd (t_x - avg(t_x) - xhat r),\n"
        "t_y = gamma t_xhat + xhat t_gamma + t_beta. gamma None means 1; a None tangent is zero.");
  m.def("norm_backward_jvp", &norm_backward_jvp, py::arg("dy"), py::arg("x"), py::arg("mean"),
        py::arg("invstd"), py::arg("gamma"), py::arg("t_dy"), py::arg("t_x"), py::arg("t_gamma"),
        py::arg("batch"),
        "Tangent of batchnorm_backward / layernorm_backward in (dy, x, gamma). Returns\n"
        "(t_dx, t_dgamma, t_dbeta), the last two None when gamma is None; with h = gamma dy,\n"
        "th = gamma t_dy + t_gamma dy, m1 = avg(h xhat), dx the backward's output:\n"
        "t_dx = -invstd r dx + invstd (th - avg(th) - t_xhat m1 - xhat (avg(th xhat) + avg(h t_xhat))),\n"
        "t_dgamma = sumP(t_dy xhat + dy t_xhat), t_dbeta = sumP(t_dy).");
}

}  // namespace deepcalc::bind
