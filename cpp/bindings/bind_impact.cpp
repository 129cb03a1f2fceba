// Bindings for the all-pairs reachability kernels (cpp/impact): validate the transition arrays
// (dtype, shape, every successor index in range, probabilities a distribution), release the
// GIL, dispatch. Errors name the op, the argument, its shape and what was expected.
#include <pybind11/stl.h>

#include <cmath>
#include <limits>
#include <string>
#include <tuple>

#include "bindings/checks.h"
#include "common/threads.h"
#include "impact/reach.h"

namespace deepcalc::bind {
namespace {

// Work units (state-action-target triples) per thread, at least: a 100-state MDP is done on one.
// hw.h holds the other families' grains; this one is local to the family.
constexpr int64_t kReachGrain = int64_t(1) << 18;

void require_int64(const char* op, const char* arg, const py::array& a) {
  if (!a.dtype().is(py::dtype::of<int64_t>()))
    throw py::type_error(std::string(op) + ": " + arg + " must be int64, got " + dtype_str(a) +
                         " with shape " + shape_str(a));
}

void require_gamma(const char* op, double gamma) {
  if (!(gamma >= 0.0 && gamma <= 1.0))
    throw py::value_error(std::string(op) + ": gamma must be in [0, 1], got " + std::to_string(gamma));
}

bool want_f64(const char* op, const py::dtype& dt) {
  if (dt.is(py::dtype::of<double>())) return true;
  if (dt.is(py::dtype::of<float>())) return false;
  throw py::type_error(std::string(op) + ": dtype must be float32 or float64, got " +
                       py::str(dt).cast<std::string>());
}

// indices in [0, S): a successor outside would be read out of bounds.
void require_states(const char* op, const char* arg, const py::array& a, int64_t S) {
  const int64_t* v = cptr<int64_t>(a);
  for (py::ssize_t i = 0; i < a.size(); ++i)
    if (v[i] < 0 || v[i] >= S)
      throw py::value_error(std::string(op) + ": " + arg + " with shape " + shape_str(a) +
                            " holds state " + std::to_string(v[i]) + " at flat index " +
                            std::to_string(i) + "; states must be in [0, " + std::to_string(S) + ")");
}

py::array reach_deterministic(const py::array& next, double gamma, const py::dtype& dtype) {
  const char* op = "reach_deterministic";
  require_int64(op, "next", next);
  if (next.ndim() != 2)
    throw py::value_error(std::string(op) + ": next must be (S, A), got shape " + shape_str(next));
  require_contiguous(op, "next", next);
  require_gamma(op, gamma);
  const bool f64 = want_f64(op, dtype);
  const int64_t S = next.shape(0), A = next.shape(1);
  if (S > 0 && A == 0)
    throw py::value_error(std::string(op) + ": next has shape " + shape_str(next) + "; an MDP with states needs at least one action");
  if (S >= std::numeric_limits<int32_t>::max())
    throw py::value_error(std::string(op) + ": " + std::to_string(S) + " states; at most 2^31 - 2 are supported");
  require_states(op, "next", next, S);
  py::array out = new_array(f64 ? py::dtype::of<double>() : py::dtype::of<float>(), {S, S});
  if (S == 0) return out;
  py::gil_scoped_release nogil;
  ThreadBudget budget(S * S * A, kReachGrain);
  if (f64) {
    const ReachDeterministicParams<double> p{cptr<int64_t>(next), mptr<double>(out), S, A, gamma};
    reach_deterministic_f64()(p, budget.threads());
  } else {
    const ReachDeterministicParams<float> p{cptr<int64_t>(next), mptr<float>(out), S, A, gamma};
    reach_deterministic_f32()(p, budget.threads());
  }
  return out;
}

std::tuple<py::array, int64_t, double> reach_stochastic(const py::array& indptr, const py::array& indices,
                                                        const py::array& probs, int64_t S, int64_t A,
                                                        double gamma, double tol, int64_t max_iter,
                                                        const py::dtype& dtype) {
  const char* op = "reach_stochastic";
  require_int64(op, "indptr", indptr);
  require_int64(op, "indices", indices);
  if (!is_f64(probs))
    throw py::type_error(std::string(op) + ": probs must be float64, got " + dtype_str(probs) +
                         " with shape " + shape_str(probs));
  for (const auto& [name, a] : {std::pair<const char*, const py::array*>{"indptr", &indptr},
                                {"indices", &indices}, {"probs", &probs}}) {
    if (a->ndim() != 1)
      throw py::value_error(std::string(op) + ": " + name + " must be 1-D, got shape " + shape_str(*a));
    require_contiguous(op, name, *a);
  }
  if (S < 0 || A < 0 || (S > 0 && A == 0))
    throw py::value_error(std::string(op) + ": S = " + std::to_string(S) + ", A = " + std::to_string(A) +
                          "; expected S >= 0 and A >= 1");
  require_gamma(op, gamma);
  if (!(tol >= 0.0) || std::isinf(tol))
    throw py::value_error(std::string(op) + ": tol must be finite and >= 0, got " + std::to_string(tol));
  if (max_iter < 1)
    throw py::value_error(std::string(op) + ": max_iter must be >= 1, got " + std::to_string(max_iter));
  const bool f64 = want_f64(op, dtype);
  if (indptr.size() != S * A + 1)
    throw py::value_error(std::string(op) + ": indptr has shape " + shape_str(indptr) + ", expected (" +
                          std::to_string(S * A + 1) + ",) for S * A + 1 with S = " + std::to_string(S) +
                          ", A = " + std::to_string(A));
  if (probs.size() != indices.size())
    throw py::value_error(std::string(op) + ": probs has shape " + shape_str(probs) +
                          ", expected the shape of indices " + shape_str(indices));
  const int64_t* ip = cptr<int64_t>(indptr);
  const double* pr = cptr<double>(probs);
  if (ip[0] != 0 || ip[S * A] != int64_t(indices.size()))
    throw py::value_error(std::string(op) + ": indptr must start at 0 and end at len(indices) = " +
                          std::to_string(indices.size()) + ", got " + std::to_string(ip[0]) + " ... " +
                          std::to_string(ip[S * A]));
  require_states(op, "indices", indices, S);
  for (int64_t r = 0; r < S * A; ++r) {
    if (ip[r + 1] < ip[r])
      throw py::value_error(std::string(op) + ": indptr decreases at row " + std::to_string(r));
    double sum = 0;
    for (int64_t k = ip[r]; k < ip[r + 1]; ++k) {
      if (!(pr[k] >= 0.0) || std::isinf(pr[k]))
        throw py::value_error(std::string(op) + ": probs[" + std::to_string(k) + "] = " + std::to_string(pr[k]) +
                              "; probabilities must be finite and >= 0");
      sum += pr[k];
    }
    if (std::abs(sum - 1.0) > 1e-9)
      throw py::value_error(std::string(op) + ": the probabilities of state " + std::to_string(r / A) +
                            ", action " + std::to_string(r % A) + " sum to " + std::to_string(sum) +
                            ", expected 1");
  }
  py::array out = new_array(f64 ? py::dtype::of<double>() : py::dtype::of<float>(), {S, S});
  int64_t iterations = 0;
  double residual = 0;
  if (S == 0) return {out, iterations, residual};
  {
    py::gil_scoped_release nogil;
    ThreadBudget budget(S * int64_t(indices.size()), kReachGrain);
    if (f64) {
      const ReachStochasticParams<double> p{ip, cptr<int64_t>(indices), pr, mptr<double>(out), S, A,
                                            gamma, tol, max_iter, &iterations, &residual};
      reach_stochastic_f64()(p, budget.threads());
    } else {
      const ReachStochasticParams<float> p{ip, cptr<int64_t>(indices), pr, mptr<float>(out), S, A,
                                           gamma, tol, max_iter, &iterations, &residual};
      reach_stochastic_f32()(p, budget.threads());
    }
  }
  return {out, iterations, residual};
}

}  // namespace

void bind_impact(py::module_& m) {
  m.def("reach_deterministic", &reach_deterministic, py::arg("next"), py::arg("gamma"), py::arg("dtype"),
        "All-pairs discounted reachability gamma^d(x, y) of a deterministic MDP, next (S, A) int64.");
  m.def("reach_stochastic", &reach_stochastic, py::arg("indptr"), py::arg("indices"), py::arg("probs"),
        py::arg("S"), py::arg("A"), py::arg("gamma"), py::arg("tol"), py::arg("max_iter"), py::arg("dtype"),
        "All-pairs discounted reachability of a stochastic MDP in CSR form by value iteration: "
        "(R, iterations, residual).");
}

}  // namespace deepcalc::bind
