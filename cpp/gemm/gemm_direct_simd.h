// Unpacked ("direct") GEMM for products too small to pay for packing: a short inner dimension
// (k <= kDirectMaxK, e.g. dZ @ W of a 10-class layer) or few rows (m <= MR, e.g. dZ^T @ X of that
// layer). B is read in place, rows contiguous along n; A is read in place when it is stored
// transposed (op(A)[i, p] = a[p * lda + i]) and otherwise copied tile by tile into that layout.
// Same semantics as gemm.h, epilogue included; written over the vector traits V.
#pragma once
#include <algorithm>
#include <array>
#include <utility>

#include "gemm/gemm_microkernel.h"

namespace deepcalc::gemm_direct {

using gemm_kernel::Epilogue;

// The largest k that takes this path whatever m is. Packing pays when each packed value feeds
// many FMAs; with k <= 16 a B panel (k x NR) is at most 2 KiB, re-read from L1 by every row tile,
// and the A tile copy is MR * k values, so packing only adds passes. Measured (AVX-512, 1 thread,
// 128 x 256 output): k = 10 packed 10.4 us, direct 4.9 us; see the commit message for more.
constexpr int64_t kDirectMaxK = 16;

// Whether the direct path computes this product: B rows must be contiguous along n (no trans_b),
// and either k is short or op(A) has at most one tile of rows (then packing B cannot be reused).
inline bool applies(int64_t m, int64_t k, bool trans_b, int mr) {
  return k >= 1 && !trans_b && (k <= kDirectMaxK || m <= mr);
}

// Epilogue of a staged tile (rows x NR values, row stride NR): the valid rows x nr corner of C.
template <class V, int NV>
__attribute__((noinline)) void store_tile(const typename V::T* staged, int rows, typename V::T* c, int64_t ldc,
                                          int64_t nr, const Epilogue<typename V::T>& e) {
  constexpr int W = V::width, NR = NV * W;
  for (int i = 0; i < rows; ++i)
    for (int v = 0; v < NV && v * W < nr; ++v)
      gemm_kernel::store_one<V>(V::load(staged + i * NR + v * W), c + i * ldc + v * W, nr - v * W, e,
                                i * e.ldz + v * W, v * W);
}

// C tile: ROWS x nr (nr <= NV * width; FULL: nr == NV * width) at c (row stride ldc) from op(A)
// rows at ap, element (i, p) at ap[p * lda + i], and B (k x nr) at b (row stride ldb).
// Accumulators stay in ROWS * NV registers for the whole k; columns past nr are masked.
template <class V, int ROWS, int NV, bool FULL>
__attribute__((always_inline)) inline void tile_cols(int64_t k, const typename V::T* ap, int64_t lda,
                                                     const typename V::T* b, int64_t ldb, typename V::T* c,
                                                     int64_t ldc, int64_t nr, const Epilogue<typename V::T>& e) {
  using R = typename V::reg;
  constexpr int W = V::width, NR = NV * W;
  long cnt[NV];
  #pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) cnt[v] = FULL ? W : long(std::clamp<int64_t>(nr - v * W, 0, W));
  R acc[ROWS][NV];
  #pragma GCC unroll 16
  for (int i = 0; i < ROWS; ++i)
    #pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) acc[i][v] = V::zero();
  for (int64_t p = 0; p < k; ++p) {
    R bv[NV];
    #pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) bv[v] = FULL ? V::load(b + p * ldb + v * W) : V::load_tail(b + p * ldb + v * W, cnt[v], 0);
    #pragma GCC unroll 16
    for (int i = 0; i < ROWS; ++i) {
      const R a = V::set1(ap[p * lda + i]);
      #pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[i][v] = V::fmadd(a, bv[v], acc[i][v]);
    }
  }
  const bool plain = e.alpha == 1 && e.beta == 0 && !e.bias && !e.z && e.act == Activation::None;
  if (FULL && plain) {
    #pragma GCC unroll 16
    for (int i = 0; i < ROWS; ++i)
      #pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) V::store(c + i * ldc + v * W, acc[i][v]);
    return;
  }
  // Anything else goes through a staging copy: indexing acc with run-time bounds here would make
  // the compiler keep acc in memory on the plain path too.
  alignas(64) typename V::T staged[ROWS][NR];
  #pragma GCC unroll 16
  for (int i = 0; i < ROWS; ++i)
    #pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) V::store(&staged[i][v * W], acc[i][v]);
  store_tile<V, NV>(&staged[0][0], ROWS, c, ldc, nr, e);
}

template <class V, int ROWS, int NV>
void tile(int64_t k, const typename V::T* ap, int64_t lda, const typename V::T* b, int64_t ldb,
          typename V::T* c, int64_t ldc, int64_t nr, const Epilogue<typename V::T>& e) {
  if (nr == NV * V::width) tile_cols<V, ROWS, NV, true>(k, ap, lda, b, ldb, c, ldc, nr, e);
  else tile_cols<V, ROWS, NV, false>(k, ap, lda, b, ldb, c, ldc, nr, e);
}

template <class V, int MR, int NV>
struct Direct {
  using T = typename V::T;
  static constexpr int NR = NV * V::width;
  using TileFn = void (*)(int64_t, const T*, int64_t, const T*, int64_t, T*, int64_t, int64_t, const Epilogue<T>&);

  // tile<V, rows, NV> for rows = 1..MR: short row tiles do no padded work.
  template <size_t... I>
  static constexpr std::array<TileFn, MR> make_table(std::index_sequence<I...>) {
    return {&tile<V, int(I) + 1, NV>...};
  }
  static constexpr std::array<TileFn, MR> kTiles = make_table(std::make_index_sequence<MR>{});

  // Rows [i0, i1) x columns [j0, j1) of one GEMM of the batch (a, b, c, z offset to it).
  static void block(const GemmParams<T>& p, const T* a, const T* b, T* c, T* z, int64_t i0, int64_t i1,
                    int64_t j0, int64_t j1) {
    const int64_t k = p.k;
    T* buf = p.trans_a ? nullptr : gemm_kernel::scratch<T>(0, k * MR);
    for (int64_t i = i0; i < i1; i += MR) {
      const int rows = int(std::min<int64_t>(MR, i1 - i));
      const T* ap = a + i;  // op(A)[i + r, q] = a[q * lda + i + r]
      int64_t lda = p.lda;
      if (!p.trans_a) {  // rows of A contiguous along k: transpose the tile (rows x k) once
        gemm_kernel::pack_rows<T, MR>(a + i * p.lda, p.lda, rows, k, buf);
        ap = buf, lda = MR;
      }
      for (int64_t j = j0; j < j1; j += NR) {
        const Epilogue<T> e{p.alpha, p.beta, true, true, p.bias ? p.bias + j : nullptr, p.act,
                            z ? z + i * p.ldz + j : nullptr, p.ldz};
        kTiles[rows - 1](k, ap, lda, b + j, p.ldb, c + i * p.ldc + j, p.ldc, std::min<int64_t>(NR, j1 - j), e);
      }
    }
  }

  // One GEMM split across threads: by row tiles when there are enough of them, else by column
  // blocks (m <= MR: every thread reads all of A, a k x MR sliver, and its own columns of B).
  static void one(const GemmParams<T>& p, const T* a, const T* b, T* c, T* z, int threads) {
    const int64_t row_tiles = (p.m + MR - 1) / MR, col_blocks = (p.n + NR - 1) / NR;
    const bool by_rows = row_tiles >= threads;
    const int64_t units = by_rows ? row_tiles : col_blocks;
    threads = int(std::min<int64_t>(threads, units));
    if (threads <= 1) return block(p, a, b, c, z, 0, p.m, 0, p.n);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int t = 0; t < threads; ++t) {
      const int64_t u0 = units * t / threads, u1 = units * (t + 1) / threads;
      if (by_rows) block(p, a, b, c, z, u0 * MR, std::min(p.m, u1 * MR), 0, p.n);
      else block(p, a, b, c, z, 0, p.m, u0 * NR, std::min(p.n, u1 * NR));
    }
  }

  static void run(const GemmParams<T>& p, int threads) {
    auto at = [&](int64_t bt, int nt) {
      one(p, p.a + bt * p.stride_a, p.b + bt * p.stride_b, p.c + bt * p.stride_c,
          p.preact ? p.preact + bt * p.stride_z : nullptr, nt);
    };
    if (p.batch > 1 && threads > 1) {  // small GEMMs: one whole GEMM per thread
#pragma omp parallel for num_threads(threads) schedule(static)
      for (int64_t bt = 0; bt < p.batch; ++bt) at(bt, 1);
      return;
    }
    for (int64_t bt = 0; bt < p.batch; ++bt) at(bt, threads);
  }
};

}  // namespace deepcalc::gemm_direct
