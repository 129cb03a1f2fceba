// GEMM microbenchmark: GFLOP/s of deepcalc's dispatched float32 GEMM vs Eigen's, per shape and
// thread count, plus the measured single-core float32 FMA peak. Median of repeats.
// Usage: gemm_bench [threads]   (default: 1 and 2);  gemm_bench --peak  (only the FMA peak)
#include <Eigen/Dense>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "common/cpu.h"
#include "gemm/gemm.h"

double fma_peak_gflops_f32();

namespace {

using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Median seconds of one call, with enough calls per sample to last ~20 ms.
double median_seconds(const std::function<void()>& f) {
  f();
  auto t0 = std::chrono::steady_clock::now();
  f();
  const double once = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int inner = std::max(1, int(0.02 / std::max(once, 1e-7)));
  std::vector<double> samples;
  for (int s = 0; s < 9; ++s) {
    t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < inner; ++i) f();
    samples.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / inner);
  }
  std::nth_element(samples.begin(), samples.begin() + 4, samples.end());
  return samples[4];
}

void bench_shape(int64_t m, int64_t n, int64_t k, bool tb, int threads) {
  Mat a = Mat::Random(m, k), b = tb ? Mat(Mat::Random(n, k)) : Mat(Mat::Random(k, n)), c(m, n);
  deepcalc::GemmParams<float> p;
  p.m = m, p.n = n, p.k = k;
  p.a = a.data(), p.lda = k, p.b = b.data(), p.ldb = tb ? k : n, p.trans_b = tb;
  p.c = c.data(), p.ldc = n;
  const auto fn = deepcalc::gemm_f32();
  const double t_dc = median_seconds([&] { fn(p, threads); });
  Eigen::setNbThreads(threads);
  const double t_eigen = median_seconds([&] {
    if (tb) c.noalias() = a * b.transpose();
    else c.noalias() = a * b;
  });
  const double gf = 2.0 * m * n * k * 1e-9;
  std::printf("%5ld x %5ld x %5ld %s  threads %d  deepcalc %7.1f  eigen %7.1f GFLOP/s  ratio %.2f\n", long(m),
              long(k), long(n), tb ? "NT" : "NN", threads, gf / t_dc, gf / t_eigen, t_eigen / t_dc);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--peak") {
    std::printf("float32 FMA peak, 1 core: %.1f GFLOP/s\n", fma_peak_gflops_f32());
    return 0;
  }
  std::vector<int> thread_counts = {1, 2};
  if (argc > 1) {
    const int t = std::atoi(argv[1]);
    if (t < 1) {
      std::fprintf(stderr, "usage: gemm_bench [threads >= 1]   (default: 1 and 2)\n"
                           "       gemm_bench --peak           (only the FMA peak)\n");
      return std::string(argv[1]) == "--help" ? 0 : 2;
    }
    thread_counts = {t};
  }
  std::printf("kernel path: %s\n", deepcalc::cpu_capability_name(deepcalc::cpu_capability()));
  const double peak = fma_peak_gflops_f32();
  std::printf("float32 FMA peak, 1 core: %.1f GFLOP/s\n", peak);
  const int64_t squares[] = {64, 128, 256, 512, 1024, 2048};
  for (int t : thread_counts) {
    for (int64_t s : squares) bench_shape(s, s, s, false, t);
    bench_shape(128, 256, 784, true, t);  // MLP layer 1 forward, x @ W.T
    bench_shape(128, 256, 256, true, t);
  }
  return 0;
}
