// All-pairs discounted reachability of a tabular MDP (Krakovna et al. 2019, "Penalizing side
// effects using stepwise relative reachability", section 3):
//   R(x; y) = max over policies of E[gamma^N(x -> y)],  N the first step at which y is reached,
// which is the least fixed point of
//   R(y; y) = 1,   R(x; y) = gamma * max_a sum_z P(z | x, a) R(z; y)   (x != y).
// Deterministic MDPs: R(x; y) = gamma^d(x, y) with d the shortest-path length (0 if y cannot be
// reached; gamma = 1 gives 1 where y is reachable), computed by one breadth-first search per
// source row. Stochastic MDPs: value iteration over target columns from R = I (a lower bound; the
// iterates rise monotonically to the fixed point), stopped when no entry moves by more than tol.
// Output out is (S, S) row-major: out[x * S + y] = R(x; y).
#pragma once
#include <cstdint>

namespace deepcalc {

// next is (S, A): next[x * A + a] is the state after action a in state x, each in [0, S).
template <typename T>
struct ReachDeterministicParams {
  const int64_t* next = nullptr;
  T* out = nullptr;
  int64_t S = 0, A = 0;
  double gamma = 1.0;
};

// Transitions in CSR form over the S * A (state, action) rows: row r = x * A + a holds the
// successors indices[indptr[r] .. indptr[r + 1]) with probabilities probs[...] (each row sums
// to 1; the binding checks). Value iteration stops after the first sweep whose largest change
// is <= tol or after max_iter sweeps; iterations and residual (that largest change) report
// which (over all target blocks: the largest of each).
template <typename T>
struct ReachStochasticParams {
  const int64_t* indptr = nullptr;
  const int64_t* indices = nullptr;
  const double* probs = nullptr;
  T* out = nullptr;
  int64_t S = 0, A = 0;
  double gamma = 1.0, tol = 1e-10;
  int64_t max_iter = 100000;
  int64_t* iterations = nullptr;
  double* residual = nullptr;
};

template <typename T>
using reach_deterministic_fn = void (*)(const ReachDeterministicParams<T>& p, int threads);
template <typename T>
using reach_stochastic_fn = void (*)(const ReachStochasticParams<T>& p, int threads);

// Scalar references (always built; define correctness): one serial BFS per source; Jacobi value
// iteration one target column at a time, accumulated in double.
void reach_deterministic_f32_ref(const ReachDeterministicParams<float>& p, int threads);
void reach_deterministic_f64_ref(const ReachDeterministicParams<double>& p, int threads);
void reach_stochastic_f32_ref(const ReachStochasticParams<float>& p, int threads);
void reach_stochastic_f64_ref(const ReachStochasticParams<double>& p, int threads);

// Fast kernels (reach_avx2.cpp, compiled for AVX2): sources (BFS) or blocks of target columns
// (value iteration, Gauss-Seidel in place, the block's columns updated together so that the
// inner loop is a vector loop) spread over OpenMP threads.
void reach_deterministic_f32_avx2(const ReachDeterministicParams<float>& p, int threads);
void reach_deterministic_f64_avx2(const ReachDeterministicParams<double>& p, int threads);
void reach_stochastic_f32_avx2(const ReachStochasticParams<float>& p, int threads);
void reach_stochastic_f64_avx2(const ReachStochasticParams<double>& p, int threads);

// Chosen once from cpu_capability() (reach_dispatch.cpp); the scalar path runs the references.
reach_deterministic_fn<float> reach_deterministic_f32();
reach_deterministic_fn<double> reach_deterministic_f64();
reach_stochastic_fn<float> reach_stochastic_f32();
reach_stochastic_fn<double> reach_stochastic_f64();

}  // namespace deepcalc
