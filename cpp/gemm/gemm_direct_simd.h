// Unpacked ("direct") GEMM for products too small to pay for packing: a short inner dimension
// (k <= kDirectMaxK, e.g. dZ @ W of a 10-class layer) or few rows (m <= MR, e.g. dZ^T @ X of that
// layer). B is read in place, rows contiguous along n; A is read in place when it is stored
// transposed (op(A)[i, p] = a[p * lda + i]) and otherwise copied tile by tile into that layout.
// Same semantics as gemm.h, epilogue included; written over the vector traits V.
#pragma once
#include <algorithm>
#include <array>
#include <utility>

#include "common/hw.h"
#include "gemm/gemm_microkernel.h"

namespace deepcalc::gemm_direct {

using gemm_kernel::Epilogue;

// Thresholds, from direct vs packed (1 thread, AVX-512 f32, Zen 4 VM; medians, noisy +-15%):
// - kDirectMaxK: any m takes this path when k <= 16. Packing pays when each packed value feeds
//   many FMAs; here a B panel (k x NR) is at most 2 KiB, re-read from L1 by every row tile, and
//   B rows are streamed in order, so packing only adds passes. Direct / packed time: 128x256 at
//   k = 10 0.76, k = 16 0.85, 64x64x16 0.95, 512x512x16 0.82, 2048x2048x16 0.39. At k = 24 and
//   32 the gain (0.89, 0.91) is within the run-to-run noise, so the cap stays at 16. Narrow
//   outputs (n <= NR / 2) are left to the packed 2MR x NR/2 tile, whose lanes they fill: direct
//   / packed 128x10x10 1.65, 1000x10x16 2.00, 128x16x16 2.34.
// - m <= MR (one row tile, any k): packing B cannot be reused by a second row tile. Direct /
//   packed: 10x256x128 TN 0.57, 10x256x784 NN 0.56, 12x1024x1024 TN 0.72, 8x2048x512 NN 0.55;
//   but 12x4096x512 TN (B 8 MiB) 1.47, 8x2048x2048 NN (16 MiB) 1.57, 10x1024x4096 TN (16 MiB) 1.95:
//   walking B a 32-column strip at a time down all k rows misses caches once B is far beyond L2,
//   so that rule is capped at hw::kGemmDirectMaxBBytes of B. Few rows win at narrow n too (10x10x128
//   TN 0.44, 12x12x500 NN 0.83).
constexpr int64_t kDirectMaxK = 16;

// Whether the direct path (row tiles of up to mr rows, nr columns) computes this product: B rows
// must be contiguous along n (no trans_b), and either k is short and the output not narrow, or
// op(A) has at most one tile of rows and B is at most hw::kGemmDirectMaxBBytes.
inline bool applies(int64_t m, int64_t n, int64_t k, bool trans_b, int mr, int nr, int64_t elem_bytes) {
  if (k < 1 || trans_b) return false;
  return (k <= kDirectMaxK && n > nr / 2) || (m <= mr && k * n * elem_bytes <= hw::kGemmDirectMaxBBytes);
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

  // One GEMM split across threads: into equal row ranges when there is at least a row tile per
  // thread (the last tile of a range may be short; with 2 threads 128 rows split 64 + 64, not
  // 60 + 68 by whole tiles), else into column blocks (m <= MR: each thread reads all of A, a
  // k x m sliver, and its own columns of B).
  static void one(const GemmParams<T>& p, const T* a, const T* b, T* c, T* z, int threads) {
    const int64_t row_tiles = (p.m + MR - 1) / MR, col_blocks = (p.n + NR - 1) / NR;
    const bool by_rows = row_tiles >= threads;
    threads = int(std::min<int64_t>(threads, by_rows ? row_tiles : col_blocks));
    if (threads <= 1) return block(p, a, b, c, z, 0, p.m, 0, p.n);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int t = 0; t < threads; ++t) {
      if (by_rows) block(p, a, b, c, z, p.m * t / threads, p.m * (t + 1) / threads, 0, p.n);
      else block(p, a, b, c, z, 0, p.m, col_blocks * t / threads * NR, std::min(p.n, col_blocks * (t + 1) / threads * NR));
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
