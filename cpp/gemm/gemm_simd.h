// The packed GEMM driver (cache blocking, packing, OpenMP over a grid of C blocks, batching, tile
// choice) and the fused activation backward, written once over the vector traits V and a register
// tile of MR rows x NV vectors; instantiated in gemm_avx2.cpp / gemm_avx512.cpp with their ISA flags.
#pragma once
#include <algorithm>
#include <cstdlib>
#include <vector>

#include "common/hw.h"
#include "gemm/gemm_direct_simd.h"
#include "gemm/gemm_microkernel.h"
#include "gemm/gemv_simd.h"

namespace deepcalc::gemm_simd {

using gemm_kernel::Epilogue;

// Cache blocking for the caches of common/hw.h, budgets in bytes (hw::kGemm*Bytes):
//   KC: a packed B micro-panel (KC x NR) of 64 KiB, i.e. KC = 512 for the 8x32 f32 tile. It does
//       not fit L1, but Zen 4 runs a 512-bit FMA per cycle (two 256-bit halves), so one 8x32
//       rank-1 update takes 16 cycles and needs only 160 bytes of A and B, ~10 B/cycle, well
//       within L2 bandwidth. A long KC amortizes the C tile's load+store (a cache miss per row)
//       over more FMAs; measured single-thread n = 2048: KC 128 -> 83, 192 -> 100, 384 -> 104-107,
//       512 -> 108 GFLOP/s (peak 117).
//   MC: the packed A block (MC x KC, <= 384 KiB, f32 MC = 192) stays in L2 next to the streaming
//       B micro-panel.
//   NC: the packed B block (KC x NC, <= 4 MiB) lives in L3.
// K, M and N are split into equal blocks (rounded to the tile) so no block is a sliver.

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

template <class V, int MR, int NV>
struct Gemm {
  using T = typename V::T;
  static constexpr int NR = NV * V::width;

  // Pointers of one GEMM of the batch.
  struct Op {
    const T* a;
    const T* b;
    T* c;
    T* z;
  };

  // k == 0: C = act(beta*C + bias) (and z), no products.
  static void epilogue_only(const GemmParams<T>& p, const Op& o, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < p.m; ++i)
      for (int64_t j = 0; j < p.n; ++j) {
        T v = p.beta != T(0) ? p.beta * o.c[i * p.ldc + j] : T(0);
        if (p.bias) v += p.bias[j];
        if (o.z) o.z[i * p.ldz + j] = v;
        o.c[i * p.ldc + j] = act_forward(v, p.act);
      }
  }

  // One thread, one GEMM. Loop nest jc (NC) -> pc (KC) -> ic (MC) -> jr (NR) -> ir (MR): the
  // B micro-panel is reused across consecutive ir, the A block across all jr.
  static void single(const GemmParams<T>& p, const Op& o) {
    const int64_t m = p.m, n = p.n, k = p.k;
    constexpr int64_t kc_cap = hw::kGemmPanelBytes / (NR * int64_t(sizeof(T)));
    constexpr int64_t mc_cap = hw::kGemmABlockBytes / (kc_cap * int64_t(sizeof(T)));
    constexpr int64_t nc_cap = hw::kGemmBBlockBytes / (kc_cap * int64_t(sizeof(T)));
    const int64_t kc_step = ceil_div(k, ceil_div(k, kc_cap));
    const int64_t mc_step = round_up(ceil_div(m, ceil_div(m, mc_cap)), MR);
    const int64_t nc_step = round_up(ceil_div(n, ceil_div(n, nc_cap)), NR);
    T* ap = gemm_kernel::scratch<T>(0, mc_step * kc_step);
    T* bp = gemm_kernel::scratch<T>(1, nc_step * kc_step);
    for (int64_t jc = 0; jc < n; jc += nc_step) {
      const int64_t nc = std::min(nc_step, n - jc);
      for (int64_t pc = 0; pc < k; pc += kc_step) {
        const int64_t kc = std::min(kc_step, k - pc);
        for (int64_t j = jc; j < jc + nc; j += NR) {
          const int cols = int(std::min<int64_t>(NR, n - j));
          T* dst = bp + (j - jc) * kc;
          if (p.trans_b) gemm_kernel::pack_rows<T, NR>(o.b + j * p.ldb + pc, p.ldb, cols, kc, dst);
          else gemm_kernel::pack_cols<T, NR>(o.b + pc * p.ldb + j, p.ldb, cols, kc, dst);
        }
        const Epilogue<T> e{p.alpha, p.beta, pc == 0, pc + kc == k, nullptr, p.act, nullptr, p.ldz};
        for (int64_t ic = 0; ic < m; ic += mc_step) {
          const int64_t mc = std::min(mc_step, m - ic);
          for (int64_t i = ic; i < ic + mc; i += MR) {
            const int rows = int(std::min<int64_t>(MR, m - i));
            T* dst = ap + (i - ic) * kc;
            if (p.trans_a) gemm_kernel::pack_cols<T, MR>(o.a + pc * p.lda + i, p.lda, rows, kc, dst);
            else gemm_kernel::pack_rows<T, MR>(o.a + i * p.lda + pc, p.lda, rows, kc, dst);
          }
          for (int64_t j = jc; j < jc + nc; j += NR) {
            for (int64_t i = ic; i < ic + mc; i += MR) {
              Epilogue<T> et = e;
              et.bias = p.bias ? p.bias + j : nullptr;
              et.z = o.z ? o.z + i * p.ldz + j : nullptr;
              gemm_kernel::microkernel<V, MR, NV>(kc, ap + (i - ic) * kc, bp + (j - jc) * kc, o.c + i * p.ldc + j,
                                                  p.ldc, int(std::min<int64_t>(MR, m - i)),
                                                  std::min<int64_t>(NR, n - j), et);
            }
          }
        }
      }
    }
  }

  static Op op_at(const GemmParams<T>& p, int64_t bt) {
    return {p.a + bt * p.stride_a, p.b + bt * p.stride_b, p.c + bt * p.stride_c,
            p.preact ? p.preact + bt * p.stride_z : nullptr};
  }

  // Parallel GEMM: C is cut into a grid of pr x pc blocks, one per thread, each computed by the
  // serial blocked loop with that thread's own packing buffers, so only fork and join
  // synchronize (no barriers between packing and compute; measured 10-25% faster than shared
  // packing for 64..512 on 2 threads, equal at 2048). The price is that the operand not split
  // is packed by every thread in its grid row/column; the grid minimizes that packing,
  // (m/pr) k + k (n/pc) weighted by pack cost, e.g. with 2 threads it halves the larger of m, n.
  static void grid(const GemmParams<T>& p, const Op& o, int threads) {
    int pr = 1;
    double best = -1;
    const double wa = p.trans_a ? 1 : 2, wb = p.trans_b ? 2 : 1;  // a transposing pack costs ~2x a copy
    for (int r = 1; r <= threads; ++r) {
      if (threads % r) continue;
      const double cost = wa * double(ceil_div(p.m, r)) * p.k + wb * double(p.k) * ceil_div(p.n, threads / r);
      if (best < 0 || cost < best) best = cost, pr = r;
    }
    const int pc = threads / pr;
    const int64_t mchunk = round_up(ceil_div(p.m, pr), MR), nchunk = round_up(ceil_div(p.n, pc), NR);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int t = 0; t < threads; ++t) {
      const int64_t i0 = (t / pc) * mchunk, j0 = (t % pc) * nchunk;
      if (i0 >= p.m || j0 >= p.n) continue;  // rounding to tiles can leave a block empty
      GemmParams<T> q = p;
      q.m = std::min(mchunk, p.m - i0), q.n = std::min(nchunk, p.n - j0);
      if (q.bias) q.bias += j0;
      Op u = o;
      u.a += p.trans_a ? i0 : i0 * p.lda;
      u.b += p.trans_b ? j0 * p.ldb : j0;
      u.c += i0 * p.ldc + j0;
      if (u.z) u.z += i0 * p.ldz + j0;
      single(q, u);
    }
  }

  static void run(const GemmParams<T>& p, int threads) {
    if (p.m == 0 || p.n == 0 || p.batch == 0) return;
    const double flops = 2.0 * double(p.m) * double(p.n) * double(p.k);
    if (flops < hw::kGemmSerialFlops) threads = 1;
    if (p.k == 0) {
      for (int64_t bt = 0; bt < p.batch; ++bt) epilogue_only(p, op_at(p, bt), threads);
      return;
    }
    if (p.batch > 1 && threads > 1 && flops < hw::kGemmPerBatchParallelFlops) {
#pragma omp parallel for num_threads(threads) schedule(static)
      for (int64_t bt = 0; bt < p.batch; ++bt) single(p, op_at(p, bt));  // one GEMM per thread
      return;
    }
    for (int64_t bt = 0; bt < p.batch; ++bt) {
      if (threads > 1) grid(p, op_at(p, bt), threads);
      else single(p, op_at(p, bt));
    }
  }
};

// Entry point: picks the register tile with the least padding for this shape, all with the same
// MR * NV accumulators: MR x NV; for narrow outputs (n <= NR / 2, e.g. a 10-class logits layer)
// 2MR x NV/2; for short outputs whose rows pad badly (m = 10 pads to 16 rows with MR = 8 but to
// 12 with MR / 2 = 4; also m < MR such as small-batch inference) MR/2 x 2NV; m == 1 or n == 1
// goes to the unpacked matrix-vector path (gemv_simd.h), and short k or few rows (at most DMR,
// the direct tile's rows) to the unpacked direct path (gemm_direct_simd.h, see its thresholds).
template <class V, int MR, int NV, int DMR>
void gemm(const GemmParams<typename V::T>& p, int threads) {
  static_assert(NV % 2 == 0 && MR % 2 == 0, "the narrow and short tiles halve NV and MR");
  constexpr int64_t NR = NV * V::width;
  if (p.m == 0 || p.n == 0 || p.batch == 0) return;  // an empty C: no operand is read
  if ((p.m == 1 || p.n == 1) && p.k > 0) gemv_simd::run<V>(p, threads);  // matrix-vector
  else if (gemm_direct::applies(p.m, p.n, p.k, p.trans_b, DMR, NR, sizeof(typename V::T))) gemm_direct::Direct<V, DMR, NV>::run(p, threads);
  else if (p.n <= NR / 2) Gemm<V, 2 * MR, NV / 2>::run(p, threads);
  else if (p.n > NR && round_up(p.m, MR / 2) < round_up(p.m, MR)) Gemm<V, MR / 2, 2 * NV>::run(p, threads);
  else Gemm<V, MR, NV>::run(p, threads);
}

// dz = dy * act'(saved) and, if asked, db = column sums of dz, in one pass over dy.
// Without db the array is split flat across threads; with db each thread sums its rows into a
// private row of partial sums, and the partial rows are added column-wise afterwards.
template <class V>
void act_backward(const ActBackwardParams<typename V::T>& p, int threads) {
  using T = typename V::T;
  using R = typename V::reg;
  constexpr int W = V::width;
  auto span = [&](int64_t off, int64_t len, T* colsum) {
    int64_t j = 0;
    for (; j + W <= len; j += W) {
      const R s = p.act == Activation::None ? V::zero() : V::load(p.saved + off + j);
      const R d = gemm_epilogue::backward<V>(V::load(p.dy + off + j), s, p.act);
      if (p.dz) V::store(p.dz + off + j, d);
      if (colsum) V::store(colsum + j, V::add(V::load(colsum + j), d));
    }
    if (j < len) {
      const int64_t r = len - j;
      const R s = p.act == Activation::None ? V::zero() : V::load_tail(p.saved + off + j, r, 0);
      const R d = gemm_epilogue::backward<V>(V::load_tail(p.dy + off + j, r, 0), s, p.act);
      if (p.dz) V::store_tail(p.dz + off + j, d, r);
      if (colsum) V::store_tail(colsum + j, V::add(V::load_tail(colsum + j, r, 0), d), r);
    }
  };
  const int64_t total = p.rows * p.cols;
  if (total == 0) {
    for (int64_t j = 0; p.db && j < p.cols; ++j) p.db[j] = T(0);
    return;
  }
  if (total < hw::kActBackwardSerial) threads = 1;
  if (!p.db) {
    const int64_t chunk = round_up(ceil_div(total, 4 * threads), 64);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t off = 0; off < total; off += chunk) span(off, std::min(chunk, total - off), nullptr);
    return;
  }
  std::vector<T> partial(size_t(threads) * p.cols, T(0));
#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(static)
    for (int t = 0; t < threads; ++t) {
      const int64_t r0 = p.rows * t / threads, r1 = p.rows * (t + 1) / threads;
      for (int64_t i = r0; i < r1; ++i) span(i * p.cols, p.cols, partial.data() + t * p.cols);
    }
#pragma omp for schedule(static)
    for (int64_t j = 0; j < p.cols; ++j) {
      T s = 0;
      for (int t = 0; t < threads; ++t) s += partial[t * p.cols + j];
      p.db[j] = s;
    }
  }
}

}  // namespace deepcalc::gemm_simd
