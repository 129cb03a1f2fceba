// Fast reachability kernels (compiled with -mavx2 -mfma; only called after the CPU check).
// Deterministic: one BFS per source row over successor lists without self-loops or repeats,
// rows spread over OpenMP threads, each thread with its own distance and queue buffers; a row
// is then written in one sequential pass from a table of gamma^d. Stochastic: Gauss-Seidel value iteration on blocks of kBlock target columns at once,
// blocks spread over threads; the block's columns are adjacent in the working array, so each
// successor's contribution is one vector multiply-add over the block.
#include <algorithm>
#include <cmath>
#include <vector>

#include "impact/reach.h"

namespace deepcalc {
namespace {

constexpr int64_t kBlock = 16;  // target columns per value-iteration block (two cache lines of double)

// next is (S, A); out is (S, S)
template <typename T>
void deterministic_fast(const ReachDeterministicParams<T>& p, int threads) {
  const int64_t S = p.S, A = p.A;
  // pow[d] = gamma^d for d < S (a shortest path has at most S - 1 steps); pow[S] = 0 marks
  // "not reached", which is the distance every entry starts at.
  std::vector<T> pow(S + 1);
  for (int64_t d = 0; d < S; ++d) pow[d] = T(std::pow(p.gamma, double(d)));
  pow[S] = T(0);
  // Successor lists without self-loops and repeats (in a gridworld, walls and the no-op send
  // most actions back to the same cell): CSR adj[begin[u] .. begin[u + 1]).
  std::vector<int64_t> begin(S + 1, 0);
  std::vector<int32_t> adj;
  adj.reserve(S * A);
  for (int64_t u = 0; u < S; ++u) {
    const int64_t* nu = p.next + u * A;
    for (int64_t a = 0; a < A; ++a) {
      const int64_t v = nu[a];
      bool seen = v == u;
      for (int64_t b = 0; b < a && !seen; ++b) seen = nu[b] == v;
      if (!seen) adj.push_back(int32_t(v));
    }
    begin[u + 1] = int64_t(adj.size());
  }
#pragma omp parallel num_threads(threads)
  {
    std::vector<int32_t> dist(S);
    std::vector<int32_t> queue(S);
#pragma omp for schedule(dynamic, 16)
    for (int64_t x = 0; x < S; ++x) {
      std::fill(dist.begin(), dist.end(), int32_t(S));
      int64_t head = 0, tail = 0;
      dist[x] = 0;
      queue[tail++] = int32_t(x);
      while (head < tail) {
        const int32_t u = queue[head++];
        const int32_t du = dist[u] + 1;
        for (int64_t k = begin[u]; k < begin[u + 1]; ++k) {
          const int32_t v = adj[k];
          if (dist[v] == S) {
            dist[v] = du;
            queue[tail++] = v;
          }
        }
      }
      T* row = p.out + x * S;
      const T* table = pow.data();
      for (int64_t y = 0; y < S; ++y) row[y] = table[dist[y]];
    }
  }
}

// One Gauss-Seidel sweep over the block of columns y0 .. y0 + kBlock - 1 (w is (S, kBlock));
// columns past the last state target nothing and stay 0. Returns the largest change.
double sweep_block(const int64_t* indptr, const int64_t* indices, const double* probs, int64_t S,
                   int64_t A, double gamma, int64_t y0, double* w) {
  double diff = 0;
  for (int64_t x = 0; x < S; ++x) {
    double best[kBlock] = {0};
    for (int64_t a = 0; a < A; ++a) {
      double acc[kBlock] = {0};
      for (int64_t k = indptr[x * A + a]; k < indptr[x * A + a + 1]; ++k) {
        const double pk = probs[k];
        const double* wz = w + indices[k] * kBlock;
        for (int64_t j = 0; j < kBlock; ++j) acc[j] += pk * wz[j];
      }
      for (int64_t j = 0; j < kBlock; ++j) best[j] = std::max(best[j], acc[j]);
    }
    double* wx = w + x * kBlock;
    for (int64_t j = 0; j < kBlock; ++j) {
      const double nv = (x == y0 + j) ? 1.0 : gamma * best[j];
      diff = std::max(diff, std::abs(nv - wx[j]));
      wx[j] = nv;
    }
  }
  return diff;
}

// CSR rows r = x * A + a; out is (S, S)
template <typename T>
void stochastic_fast(const ReachStochasticParams<T>& p, int threads) {
  const int64_t S = p.S, A = p.A;
  const int64_t blocks = (S + kBlock - 1) / kBlock;
  int64_t most_iters = 0;
  double worst = 0;
#pragma omp parallel num_threads(threads) reduction(max : most_iters, worst)
  {
    std::vector<double> w(S * kBlock);
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t y0 = b * kBlock, nb = std::min(kBlock, S - y0);
      std::fill(w.begin(), w.end(), 0.0);
      for (int64_t j = 0; j < nb; ++j) w[(y0 + j) * kBlock + j] = 1.0;
      int64_t it = 0;
      double diff = 0;
      while (it < p.max_iter) {
        ++it;
        diff = sweep_block(p.indptr, p.indices, p.probs, S, A, p.gamma, y0, w.data());
        if (diff <= p.tol) break;
      }
      most_iters = std::max(most_iters, it);
      worst = std::max(worst, diff);
      for (int64_t x = 0; x < S; ++x)
        for (int64_t j = 0; j < nb; ++j) p.out[x * S + y0 + j] = T(w[x * kBlock + j]);
    }
  }
  if (p.iterations) *p.iterations = most_iters;
  if (p.residual) *p.residual = worst;
}

}  // namespace

void reach_deterministic_f32_avx2(const ReachDeterministicParams<float>& p, int t) { deterministic_fast(p, t); }
void reach_deterministic_f64_avx2(const ReachDeterministicParams<double>& p, int t) { deterministic_fast(p, t); }
void reach_stochastic_f32_avx2(const ReachStochasticParams<float>& p, int t) { stochastic_fast(p, t); }
void reach_stochastic_f64_avx2(const ReachStochasticParams<double>& p, int t) { stochastic_fast(p, t); }

}  // namespace deepcalc
