// Packing routines and the register-tile microkernel of the packed GEMM, written once over the
// vector traits V and instantiated per ISA (gemm_avx2.cpp, gemm_avx512.cpp).
//
// Microkernel contract (microkernel<V, MR, NV>, NR = NV * V::width):
//   Ap  packed A micro-panel: kc x MR, element (i, p) at Ap[p * MR + i]; rows i >= mr are zero.
//   Bp  packed B micro-panel: kc x NR, element (p, j) at Bp[p * NR + j]; cols j >= nr are zero.
//   The full MR x NR tile acc = sum_p Ap[p, :]^T Bp[p, :] is kept in MR * NV registers
//   (rank-1 update per p: NV vector loads of B, MR broadcasts of A, MR * NV FMAs).
//   The epilogue then writes only the valid mr x nr corner of C: rows by a loop bound, columns
//   by masked vector loads/stores. Edge tiles therefore run the same code as interior ones and
//   never read or write outside C; the zero padding of the packed panels keeps the padded
//   lanes finite. kc >= 1.
// Tiles: AVX-512 f32 8x32, f64 8x16 (16 zmm accumulators); AVX2 f32 6x16, f64 6x8 (12 ymm);
// narrow and short outputs spend the same accumulators as 2MR x NR/2 or MR/2 x 2NR.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "gemm/gemm_epilogue.h"

namespace deepcalc::gemm_kernel {

// Grow-only 64-byte aligned scratch, one per (thread, slot); each thread packs into its own.
template <typename T>
T* scratch(int slot, int64_t count) {
  struct Buf {
    void* p = nullptr;
    size_t bytes = 0;
    ~Buf() { std::free(p); }
  };
  thread_local Buf bufs[2];
  Buf& b = bufs[slot];
  const size_t need = (count * sizeof(T) + 64 + 63) / 64 * 64;
  if (need > b.bytes) {
    std::free(b.p);
    b.p = std::aligned_alloc(64, need);
    b.bytes = need;
  }
  return static_cast<T*>(b.p);
}

// What the microkernel does with its tile, by position of the K block:
//   first block: C = alpha*acc + beta*C (C not read when beta == 0); later blocks: C += alpha*acc;
//   last block additionally adds bias[j], stores the preactivation to z, applies act.
template <typename T>
struct Epilogue {
  T alpha, beta;
  bool first, last;
  const T* bias;  // already offset to the tile's first column, or null
  Activation act;
  T* z;  // already offset to the tile, or null
  int64_t ldz;
};

// 8x8 float transpose: rows r[0..7] in, columns out (c[j][i] = r[i][j]).
inline void transpose8x8(__m256 r[8]) {
  __m256 t[8], s[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int h = 0; h < 2; ++h) {
    const int o = 4 * h;
    s[o + 0] = _mm256_shuffle_ps(t[o + 0], t[o + 2], 0x44);
    s[o + 1] = _mm256_shuffle_ps(t[o + 0], t[o + 2], 0xEE);
    s[o + 2] = _mm256_shuffle_ps(t[o + 1], t[o + 3], 0x44);
    s[o + 3] = _mm256_shuffle_ps(t[o + 1], t[o + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    r[j] = _mm256_permute2f128_ps(s[j], s[j + 4], 0x20);
    r[j + 4] = _mm256_permute2f128_ps(s[j], s[j + 4], 0x31);
  }
}

// Packs R rows x kc of a panel whose element (r, p) sits at src[r * ld + p] (rows contiguous
// along k: A when not transposed, B when transposed) into dst[p * R + r]. This is a transpose;
// float panels with all R rows valid go through 8x8 register transposes, the rest is scalar.
template <typename T, int R>
void pack_rows(const T* src, int64_t ld, int rows, int64_t kc, T* dst) {
  int64_t p = 0;
  if constexpr (sizeof(T) == 4) {
    if (rows == R) {
      constexpr int G = (R + 7) / 8;
      const __m256i lanes = _mm256_cmpgt_epi32(_mm256_set1_epi32(R - 8 * (G - 1)),
                                               _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
      for (; p + 8 <= kc; p += 8) {
        for (int g = 0; g < G; ++g) {
          __m256 r[8];
          for (int i = 0; i < 8; ++i) {
            const int row = 8 * g + i < R ? 8 * g + i : R - 1;  // R % 8 rows: duplicate, not stored
            r[i] = _mm256_loadu_ps(src + row * ld + p);
          }
          transpose8x8(r);
          for (int j = 0; j < 8; ++j) {
            float* d = dst + (p + j) * R + 8 * g;
            if (8 * g + 8 <= R) _mm256_storeu_ps(d, r[j]);
            else _mm256_maskstore_ps(d, lanes, r[j]);
          }
        }
      }
    }
  }
  for (; p < kc; ++p)
    for (int r = 0; r < R; ++r) dst[p * R + r] = r < rows ? src[r * ld + p] : T(0);
}

// Packs a panel whose element (r, p) sits at src[p * ld + r] (A transposed, B not): a copy of
// R contiguous values per k, zero-filled past `rows`.
template <typename T, int R>
void pack_cols(const T* src, int64_t ld, int rows, int64_t kc, T* dst) {
  if (rows == R) {
    for (int64_t p = 0; p < kc; ++p) std::memcpy(dst + p * R, src + p * ld, sizeof(T) * R);
    return;
  }
  for (int64_t p = 0; p < kc; ++p) {
    for (int r = 0; r < rows; ++r) dst[p * R + r] = src[p * ld + r];
    for (int r = rows; r < R; ++r) dst[p * R + r] = T(0);
  }
}

// Epilogue for one register of C: c points at the row's columns [0, cols), cols may be < width.
template <class V>
__attribute__((always_inline)) inline void store_one(typename V::reg acc, typename V::T* c, int64_t cols, const Epilogue<typename V::T>& e,
               int64_t zoff, int64_t col0) {
  using R = typename V::reg;
  const bool full = cols >= V::width;
  auto ld = [&](const typename V::T* p) { return full ? V::load(p) : V::load_tail(p, cols, 0); };
  auto st = [&](typename V::T* p, R v) { full ? V::store(p, v) : V::store_tail(p, v, cols); };
  R x = V::mul(acc, V::set1(e.alpha));
  if (!e.first) x = V::add(x, ld(c));
  else if (e.beta != 0) x = V::fmadd(ld(c), V::set1(e.beta), x);
  if (e.last) {
    if (e.bias) x = V::add(x, ld(e.bias + col0));
    if (e.z) st(e.z + zoff, x);
    x = gemm_epilogue::forward<V>(x, e.act);
  }
  st(c, x);
}

// C tile (mr x nr, row stride ldc) from packed micro-panels Ap (kc x MR) and Bp (kc x NR).
template <class V, int MR, int NV>
void microkernel(int64_t kc, const typename V::T* Ap, const typename V::T* Bp, typename V::T* c,
                 int64_t ldc, int mr, int64_t nr, const Epilogue<typename V::T>& e) {
  using R = typename V::reg;
  constexpr int W = V::width, NR = NV * W;
  // C rows are ldc apart, which no hardware prefetcher follows: fetch the tile now, the
  // kc * MR * NV FMA cycles below hide the miss (too few of them for a short kc to gain).
  if (kc >= 64)
    for (int i = 0; i < mr; ++i)
      for (int64_t off = 0; off < NR * int64_t(sizeof(typename V::T)); off += 64)
        _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc) + off, _MM_HINT_T0);
  R acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = V::zero();
#pragma GCC unroll 4
  for (int64_t p = 0; p < kc; ++p) {
    R b[NV];
    for (int v = 0; v < NV; ++v) b[v] = V::load(Bp + v * W);
    for (int i = 0; i < MR; ++i) {
      const R a = V::set1(Ap[i]);
      for (int v = 0; v < NV; ++v) acc[i][v] = V::fmadd(a, b[v], acc[i][v]);
    }
    Ap += MR;
    Bp += NR;
  }
  // Plain C = alpha * acc on a full tile (the common case for k <= KC): no loads, no branches.
  const bool plain = mr == MR && nr == NR && e.first && e.beta == 0 &&
                     (!e.last || (!e.bias && !e.z && e.act == Activation::None));
  if (plain) {
    const R alpha = V::set1(e.alpha);
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v)
        V::store(c + i * ldc + v * W, e.alpha == 1 ? acc[i][v] : V::mul(acc[i][v], alpha));
    return;
  }
  for (int i = 0; i < MR; ++i) {
    if (i >= mr) break;
    for (int v = 0; v < NV; ++v) {
      const int64_t cols = nr - v * W;
      if (cols <= 0) break;
      store_one<V>(acc[i][v], c + i * ldc + v * W, cols, e, i * e.ldz + v * W, v * W);
    }
  }
}

}  // namespace deepcalc::gemm_kernel
