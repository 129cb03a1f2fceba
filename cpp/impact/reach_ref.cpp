// Scalar reference reachability kernels, templated over float and double: one serial BFS per
// source row (deterministic) and Jacobi value iteration one target column at a time, in double
// (stochastic). They are the simple side of every comparison with reach_avx2.cpp.
#include <algorithm>
#include <cmath>
#include <vector>

#include "impact/reach.h"

namespace deepcalc {
namespace {

// next is (S, A); out is (S, S): out[x, y] = gamma^d(x, y), 0 where y is unreachable from x
template <typename T>
void deterministic_ref(const ReachDeterministicParams<T>& p, int /*threads*/) {
  const int64_t S = p.S, A = p.A;
  std::vector<int64_t> dist(S), queue(S);
  for (int64_t x = 0; x < S; ++x) {
    std::fill(dist.begin(), dist.end(), int64_t(-1));
    int64_t head = 0, tail = 0;
    dist[x] = 0;
    queue[tail++] = x;
    while (head < tail) {
      const int64_t u = queue[head++];
      for (int64_t a = 0; a < A; ++a) {
        const int64_t v = p.next[u * A + a];
        if (dist[v] < 0) {
          dist[v] = dist[u] + 1;
          queue[tail++] = v;
        }
      }
    }
    T* row = p.out + x * S;
    for (int64_t y = 0; y < S; ++y)
      row[y] = dist[y] < 0 ? T(0) : T(std::pow(p.gamma, double(dist[y])));
  }
}

// CSR rows r = x * A + a; out is (S, S). Column y: v = e_y, then
// v'(x) = gamma * max_a sum_k probs[k] v(indices[k]) for x != y, v'(y) = 1, until max |v' - v| <= tol.
template <typename T>
void stochastic_ref(const ReachStochasticParams<T>& p, int /*threads*/) {
  const int64_t S = p.S, A = p.A;
  std::vector<double> v(S), w(S);
  int64_t most_iters = 0;
  double worst = 0;
  for (int64_t y = 0; y < S; ++y) {
    std::fill(v.begin(), v.end(), 0.0);
    v[y] = 1.0;
    int64_t it = 0;
    double diff = 0;
    while (it < p.max_iter) {
      ++it;
      diff = 0;
      for (int64_t x = 0; x < S; ++x) {
        if (x == y) {
          w[x] = 1.0;
          continue;
        }
        double best = 0;
        for (int64_t a = 0; a < A; ++a) {
          double acc = 0;
          for (int64_t k = p.indptr[x * A + a]; k < p.indptr[x * A + a + 1]; ++k)
            acc += p.probs[k] * v[p.indices[k]];
          best = std::max(best, acc);
        }
        w[x] = p.gamma * best;
        diff = std::max(diff, std::abs(w[x] - v[x]));
      }
      std::swap(v, w);
      if (diff <= p.tol) break;
    }
    most_iters = std::max(most_iters, it);
    worst = std::max(worst, diff);
    for (int64_t x = 0; x < S; ++x) p.out[x * S + y] = T(v[x]);
  }
  if (p.iterations) *p.iterations = most_iters;
  if (p.residual) *p.residual = worst;
}

}  // namespace

void reach_deterministic_f32_ref(const ReachDeterministicParams<float>& p, int t) { deterministic_ref(p, t); }
void reach_deterministic_f64_ref(const ReachDeterministicParams<double>& p, int t) { deterministic_ref(p, t); }
void reach_stochastic_f32_ref(const ReachStochasticParams<float>& p, int t) { stochastic_ref(p, t); }
void reach_stochastic_f64_ref(const ReachStochasticParams<double>& p, int t) { stochastic_ref(p, t); }

}  // namespace deepcalc
