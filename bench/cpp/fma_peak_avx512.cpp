// Measured float32 FMA peak of one core: a tight loop of independent 512-bit FMAs (12 chains,
// more than latency x throughput of any AVX-512 core: 4 x 2), no memory traffic.
#include <immintrin.h>

#include <chrono>

double fma_peak_gflops_f32() {
  constexpr int kChains = 12;
  const long iters = 40'000'000;
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    __m512 c0 = a, c1 = b, c2 = a, c3 = b, c4 = a, c5 = b, c6 = a, c7 = b, c8 = a, c9 = b, c10 = a, c11 = b;
    const auto t0 = std::chrono::steady_clock::now();
    for (long it = 0; it < iters; ++it) {
      c0 = _mm512_fmadd_ps(c0, a, b), c1 = _mm512_fmadd_ps(c1, a, b), c2 = _mm512_fmadd_ps(c2, a, b);
      c3 = _mm512_fmadd_ps(c3, a, b), c4 = _mm512_fmadd_ps(c4, a, b), c5 = _mm512_fmadd_ps(c5, a, b);
      c6 = _mm512_fmadd_ps(c6, a, b), c7 = _mm512_fmadd_ps(c7, a, b), c8 = _mm512_fmadd_ps(c8, a, b);
      c9 = _mm512_fmadd_ps(c9, a, b), c10 = _mm512_fmadd_ps(c10, a, b), c11 = _mm512_fmadd_ps(c11, a, b);
      // keeps the chains in registers and the loop from being folded
      __asm__ volatile("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5));
      __asm__ volatile("" : "+v"(c6), "+v"(c7), "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11));
    }
    __m512 acc[kChains] = {c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11};
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    __m512 sum = acc[0];
    for (int i = 1; i < kChains; ++i) sum = _mm512_add_ps(sum, acc[i]);
    volatile float sink = _mm512_reduce_add_ps(sum);
    (void)sink;
    const double g = 2.0 * 16 * kChains * double(iters) / s * 1e-9;
    best = g > best ? g : best;
  }
  return best;
}
