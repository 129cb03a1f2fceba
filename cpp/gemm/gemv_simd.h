// Matrix-vector special case of the GEMM (m == 1 or n == 1, e.g. batch-1 inference): packing and
// a padded register tile would waste up to MR (or NR) times the work on a memory-bound product,
// so the matrix is streamed once in place. Same semantics as gemm.h, epilogue included.
#pragma once
#include <algorithm>
#include <vector>

#include "common/hw.h"
#include "gemm/gemm_microkernel.h"

namespace deepcalc::gemv_simd {

// Sum of a register's lanes.
template <class V>
typename V::T hsum(typename V::reg v) {
  alignas(64) typename V::T lanes[V::width];
  V::store(lanes, v);
  typename V::T s = 0;
  for (int i = 0; i < V::width; ++i) s += lanes[i];
  return s;
}

// out[l] = dot(M + l*ld, x) for l in [l0, l1): rows of M contiguous along k. Four rows at a time
// share each load of x and give four independent FMA chains.
template <class V>
void dots(const typename V::T* M, int64_t ld, const typename V::T* x, int64_t k, int64_t l0, int64_t l1,
          typename V::T* out) {
  using R = typename V::reg;
  constexpr int W = V::width, G = 4;
  for (int64_t l = l0; l < l1; l += G) {
    const int rows = int(std::min<int64_t>(G, l1 - l));
    const typename V::T* row[G];
    for (int r = 0; r < G; ++r) row[r] = M + (l + std::min(r, rows - 1)) * ld;  // short group: repeat
    R s[G] = {V::zero(), V::zero(), V::zero(), V::zero()};
    for (int64_t p = 0; p < k; p += W) {
      const int64_t n = std::min<int64_t>(W, k - p);
      const bool full = n == W;
      const R xv = full ? V::load(x + p) : V::load_tail(x + p, n, 0);
      for (int r = 0; r < G; ++r) s[r] = V::fmadd(full ? V::load(row[r] + p) : V::load_tail(row[r] + p, n, 0), xv, s[r]);
    }
    for (int r = 0; r < rows; ++r) out[l + r] = hsum<V>(s[r]);
  }
}

// out[l0:l1] = sum_p x[p] * (M + p*ld)[l0:l1]: rows of M contiguous along the output. Blocks of
// four vectors of out stay in registers across the whole k loop.
template <class V>
void axpys(const typename V::T* M, int64_t ld, const typename V::T* x, int64_t k, int64_t l0, int64_t l1,
           typename V::T* out) {
  using R = typename V::reg;
  constexpr int W = V::width, G = 4;
  for (int64_t l = l0; l < l1; l += G * W) {
    const int64_t len = std::min<int64_t>(G * W, l1 - l);
    R s[G] = {V::zero(), V::zero(), V::zero(), V::zero()};
    if (len == G * W) {
      for (int64_t p = 0; p < k; ++p) {
        const R xp = V::set1(x[p]);
        for (int g = 0; g < G; ++g) s[g] = V::fmadd(xp, V::load(M + p * ld + l + g * W), s[g]);
      }
      for (int g = 0; g < G; ++g) V::store(out + l + g * W, s[g]);
      continue;
    }
    for (int64_t p = 0; p < k; ++p) {
      const R xp = V::set1(x[p]);
      for (int g = 0; g < G && g * W < len; ++g)
        s[g] = V::fmadd(xp, V::load_tail(M + p * ld + l + g * W, std::min<int64_t>(W, len - g * W), 0), s[g]);
    }
    for (int g = 0; g < G && g * W < len; ++g) V::store_tail(out + l + g * W, s[g], std::min<int64_t>(W, len - g * W));
  }
}

// One GEMM of the batch with m == 1 or n == 1 (a, b, c, z already offset to it).
template <class V>
void one(const GemmParams<typename V::T>& p, const typename V::T* a, const typename V::T* b, typename V::T* c,
         typename V::T* z, int threads) {
  using T = typename V::T;
  const bool row_out = p.m == 1;  // C is a row (length n); otherwise a column (length m)
  const int64_t L = row_out ? p.n : p.m, k = p.k;
  // The vector operand, gathered contiguous: op(A)[0, :] or op(B)[:, 0].
  std::vector<T> x(k), acc(L);
  for (int64_t q = 0; q < k; ++q)
    x[q] = row_out ? (p.trans_a ? a[q * p.lda] : a[q]) : (p.trans_b ? b[q] : b[q * p.ldb]);
  const T* M = row_out ? b : a;
  const int64_t ld = row_out ? p.ldb : p.lda;
  const bool dot_form = row_out ? p.trans_b : !p.trans_a;
  const int64_t chunk = ((L + threads - 1) / threads + 4 * V::width - 1) / (4 * V::width) * (4 * V::width);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t l0 = 0; l0 < L; l0 += chunk) {
    const int64_t l1 = std::min(L, l0 + chunk);
    if (dot_form) dots<V>(M, ld, x.data(), k, l0, l1, acc.data());
    else axpys<V>(M, ld, x.data(), k, l0, l1, acc.data());
  }
  for (int64_t l = 0; l < L; ++l) {  // epilogue, O(L)
    T* cl = row_out ? c + l : c + l * p.ldc;
    T v = p.alpha * acc[l] + (p.beta != T(0) ? p.beta * *cl : T(0));
    if (p.bias) v += p.bias[row_out ? l : 0];
    if (z) z[row_out ? l : l * p.ldz] = v;
    *cl = act_forward(v, p.act);
  }
}

template <class V>
void run(const GemmParams<typename V::T>& p, int threads) {
  if (2.0 * double(p.m) * double(p.n) * double(p.k) < hw::kGemvSerialFlops) threads = 1;
  for (int64_t bt = 0; bt < p.batch; ++bt)
    one<V>(p, p.a + bt * p.stride_a, p.b + bt * p.stride_b, p.c + bt * p.stride_c,
           p.preact ? p.preact + bt * p.stride_z : nullptr, threads);
}

}  // namespace deepcalc::gemv_simd
