// Binding of the fused Jacobian penalty (cpp/jacobian): validates the layer chain (shapes,
// dtypes, activations, layout), allocates the outputs, releases the GIL and dispatches.
#include <pybind11/stl.h>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "bindings/checks.h"
#include "common/hw.h"
#include "common/threads.h"
#include "jacobian/jacobian.h"

namespace deepcalc::bind {
namespace {

Activation jacobian_activation(const std::string& name, size_t layer) {
  if (name == "none") return Activation::None;
  if (name == "relu") return Activation::ReLU;
  if (name == "gelu") return Activation::GELU;
  if (name == "tanh") return Activation::Tanh;
  if (name == "sigmoid") return Activation::Sigmoid;
  throw py::value_error("jacobian_penalty: unknown activation '" + name + "' of layer " +
                        std::to_string(layer) + "; expected one of none, relu, gelu, tanh, sigmoid");
}

template <typename T>
void run_typed(JacobianPenaltyParams<T>& p, const std::vector<py::array>& ws,
               const std::vector<std::optional<py::array>>& bs, std::vector<py::array>& dws,
               std::vector<py::array>& dbs, bool grads, double work,
               const std::optional<std::vector<py::array>>& fwd_y,
               const std::optional<std::vector<std::optional<py::array>>>& fwd_z) {
  std::vector<const T*> w, b, fy, fz;
  std::vector<T*> dw, db;
  for (size_t l = 0; fwd_y && l < ws.size(); ++l) {
    fy.push_back(cptr<T>((*fwd_y)[l]));
    fz.push_back(fwd_z ? cptr<T>((*fwd_z)[l]) : nullptr);
  }
  if (fwd_y) p.fwd_y = fy.data(), p.fwd_z = fz.data();
  for (size_t l = 0; l < ws.size(); ++l) {
    w.push_back(cptr<T>(ws[l]));
    b.push_back(cptr<T>(bs[l]));
    if (grads) {
      dw.push_back(mptr<T>(dws[l]));
      db.push_back(bs[l] ? mptr<T>(dbs[l]) : nullptr);
    }
  }
  p.w = w.data(), p.b = b.data();
  if (grads) p.dw = dw.data(), p.db = db.data();
  py::gil_scoped_release nogil;
  ThreadBudget budget(int64_t(work), hw::kGemmGrain);
  if constexpr (std::is_same_v<T, float>) jacobian_penalty_f32()(p, budget.threads());
  else jacobian_penalty_f64()(p, budget.threads());
}

// -> (penalty, sq (B,), u (P*B, IN), [dW_l] or None, [db_l or None] or None)
py::tuple jacobian_penalty(const py::array& x, const py::array& v, const std::vector<py::array>& weights,
                           const std::vector<std::optional<py::array>>& biases,
                           const std::vector<std::string>& activations, int64_t n_proj, double scale,
                           bool grads, std::optional<std::vector<py::array>> forward_outputs,
                           std::optional<std::vector<std::optional<py::array>>> forward_preacts) {
  const char* op = "jacobian_penalty";
  const size_t L = weights.size();
  if (L == 0) throw py::value_error("jacobian_penalty: at least one layer is needed, got 0 weights");
  if (biases.size() != L || activations.size() != L)
    throw py::value_error("jacobian_penalty: " + std::to_string(L) + " weights but " +
                          std::to_string(biases.size()) + " biases and " + std::to_string(activations.size()) +
                          " activations; give one of each per layer (None for no bias)");
  require_float(op, "x", x);
  require_same_dtype(op, "v", v, "x", x);
  if (x.ndim() != 2) throw py::value_error("jacobian_penalty: x must be (B, IN), got shape " + shape_str(x));
  require_contiguous(op, "x", x);
  require_contiguous(op, "v", v);
  const int64_t B = x.shape(0);
  if (n_proj < 1) throw py::value_error("jacobian_penalty: n_proj must be >= 1, got " + std::to_string(n_proj));
  std::vector<int64_t> dims{int64_t(x.shape(1))};
  std::vector<Activation> acts;
  for (size_t l = 0; l < L; ++l) {
    const std::string wn = "weights[" + std::to_string(l) + "]";
    const py::array& w = weights[l];
    require_same_dtype(op, wn.c_str(), w, "x", x);
    require_contiguous(op, wn.c_str(), w);
    if (w.ndim() != 2 || w.shape(1) != dims.back() || w.shape(0) < 1)
      throw py::value_error("jacobian_penalty: " + wn + " has shape " + shape_str(w) + ", expected (OUT, " +
                            std::to_string(dims.back()) + ") with OUT >= 1 (the previous layer's width)");
    dims.push_back(w.shape(0));
    if (biases[l]) {
      const std::string bn = "biases[" + std::to_string(l) + "]";
      require_same_dtype(op, bn.c_str(), *biases[l], "x", x);
      require_contiguous(op, bn.c_str(), *biases[l]);
      if (biases[l]->ndim() != 1 || biases[l]->shape(0) != w.shape(0))
        throw py::value_error("jacobian_penalty: " + bn + " has shape " + shape_str(*biases[l]) + ", expected (" +
                              std::to_string(w.shape(0)) + ",) for " + wn + " " + shape_str(w));
    }
    acts.push_back(jacobian_activation(activations[l], l));
  }
  if (dims[0] < 1) throw py::value_error("jacobian_penalty: x " + shape_str(x) + " has no input features");
  const int64_t C = dims.back();
  if (v.ndim() != 2 || v.shape(0) != n_proj * B || v.shape(1) != C)
    throw py::value_error("jacobian_penalty: v has shape " + shape_str(v) + ", expected (n_proj * B, C) = (" +
                          std::to_string(n_proj * B) + ", " + std::to_string(C) + ") for x " + shape_str(x) +
                          ", n_proj " + std::to_string(n_proj) + " and " + std::to_string(C) + " outputs");
  if (forward_outputs) {  // the caller's forward: outputs (B, d_l) per layer, z for gelu layers
    if (forward_outputs->size() != L || (forward_preacts && forward_preacts->size() != L))
      throw py::value_error("jacobian_penalty: forward_outputs / forward_preacts need one entry per layer (" +
                            std::to_string(L) + ")");
    for (size_t l = 0; l < L; ++l) {
      const std::string yn = "forward_outputs[" + std::to_string(l) + "]";
      const py::array& y = (*forward_outputs)[l];
      std::vector<const py::array*> arrs{&y};
      const bool need_z = acts[l] == Activation::GELU;
      if (need_z && !(forward_preacts && (*forward_preacts)[l]))
        throw py::value_error("jacobian_penalty: layer " + std::to_string(l) +
                              " is gelu: forward_preacts must hold its preactivation z");
      if (need_z) arrs.push_back(&*(*forward_preacts)[l]);
      for (const py::array* a : arrs) {
        require_same_dtype(op, yn.c_str(), *a, "x", x);
        require_contiguous(op, yn.c_str(), *a);
        if (a->ndim() != 2 || a->shape(0) != B || a->shape(1) != dims[l + 1])
          throw py::value_error("jacobian_penalty: " + yn + " (or its preactivation) has shape " +
                                shape_str(*a) + ", expected (" + std::to_string(B) + ", " +
                                std::to_string(dims[l + 1]) + ")");
      }
    }
  }
  py::array u = new_array(x.dtype(), {n_proj * B, dims[0]});
  py::array sq = py::array(x.dtype(), std::vector<py::ssize_t>{B});
  py::array pen = py::array(x.dtype(), std::vector<py::ssize_t>{1});
  std::vector<py::array> dws, dbs;
  for (size_t l = 0; grads && l < L; ++l) {
    dws.push_back(py::array(x.dtype(), std::vector<py::ssize_t>{dims[l + 1], dims[l]}));
    dbs.push_back(biases[l] ? py::array(x.dtype(), std::vector<py::ssize_t>{dims[l + 1]}) : py::array());
  }
  if (B == 0) {  // no samples: penalty and gradients are 0
    for (auto* arrs : {&dws, &dbs})
      for (auto& a : *arrs)
        if (a.size()) std::memset(a.mutable_data(), 0, a.nbytes());
    std::memset(pen.mutable_data(), 0, pen.nbytes());
  } else {
    double work = jacobian_penalty_flops(B, n_proj, int64_t(L), dims.data(), acts.data(), grads) / 2;
    auto fill = [&](auto& p) {
      p.B = B, p.P = n_proj, p.L = int64_t(L), p.dims = dims.data(), p.act = acts.data();
      using T = std::remove_const_t<std::remove_pointer_t<decltype(p.x)>>;
      p.x = cptr<T>(x), p.v = cptr<T>(v), p.scale = T(scale);
      p.u = mptr<T>(u), p.sq = mptr<T>(sq), p.penalty = mptr<T>(pen);
      run_typed<T>(p, weights, biases, dws, dbs, grads, work, forward_outputs, forward_preacts);
    };
    if (is_f32(x)) {
      JacobianPenaltyParams<float> p;
      fill(p);
    } else {
      JacobianPenaltyParams<double> p;
      fill(p);
    }
  }
  py::object penalty = pen[py::int_(0)];
  if (!grads) return py::make_tuple(penalty, sq, u, py::none(), py::none());
  py::list dw_list, db_list;
  for (size_t l = 0; l < L; ++l) {
    dw_list.append(dws[l]);
    db_list.append(biases[l] ? py::object(dbs[l]) : py::none());
  }
  return py::make_tuple(penalty, sq, u, dw_list, db_list);
}

}  // namespace

void bind_jacobian(py::module_& m) {
  m.def("jacobian_penalty", &jacobian_penalty, py::arg("x"), py::arg("v"), py::arg("weights"),
        py::arg("biases"), py::arg("activations"), py::arg("n_proj"), py::arg("scale"), py::arg("grads"),
        py::arg("forward_outputs") = py::none(), py::arg("forward_preacts") = py::none(),
        "Fused MLP Jacobian projection u = v^T J (v rows p*B + i), per-sample sq_i = sum_p ||u||^2, "
        "penalty = scale * sum sq, and its gradient in every weight and bias (cpp/jacobian/jacobian.h).");
}

}  // namespace deepcalc::bind
