// Fused Jacobian-penalty microbenchmark: time of one jacobian_penalty call (v^T J, the penalty
// and its gradient in every weight and bias) and GFLOP/s against the FLOP count of its GEMMs
// (jacobian_penalty_flops), per MLP shape, projections and thread count; the dispatched GEMM's
// GFLOP/s on the largest layer's shape for scale. Median of repeats.
// Usage: jacobian_bench [threads]   (default: 1 and 2)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "common/cpu.h"
#include "gemm/gemm.h"
#include "jacobian/jacobian.h"

namespace {

double median_seconds(const std::function<void()>& f) {
  f();
  auto t0 = std::chrono::steady_clock::now();
  f();
  const double once = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int inner = std::max(1, int(0.05 / std::max(once, 1e-7)));
  std::vector<double> samples;
  for (int s = 0; s < 9; ++s) {
    t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < inner; ++i) f();
    samples.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / inner);
  }
  std::nth_element(samples.begin(), samples.begin() + 4, samples.end());
  return samples[4];
}

std::vector<float> randn(size_t n, std::mt19937& g, float scale) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

void bench(const std::vector<int64_t>& dims, deepcalc::Activation hidden, int64_t B, int64_t P,
           bool grads, int threads) {
  using namespace deepcalc;
  std::mt19937 g(0);
  const int64_t L = int64_t(dims.size()) - 1;
  std::vector<std::vector<float>> w, b, dw, db;
  std::vector<Activation> act;
  for (int64_t l = 0; l < L; ++l) {
    w.push_back(randn(dims[l + 1] * dims[l], g, 1.f / std::sqrt(float(dims[l]))));
    b.push_back(randn(dims[l + 1], g, 0.1f));
    dw.emplace_back(dims[l + 1] * dims[l]);
    db.emplace_back(dims[l + 1]);
    act.push_back(l + 1 < L ? hidden : Activation::None);
  }
  std::vector<float> x = randn(B * dims[0], g, 1.f), v = randn(P * B * dims[L], g, 1.f);
  std::vector<float> u(P * B * dims[0]), sq(B), pen(1);
  std::vector<const float*> wp, bp;
  std::vector<float*> dwp, dbp;
  for (int64_t l = 0; l < L; ++l) wp.push_back(w[l].data()), bp.push_back(b[l].data()),
                                  dwp.push_back(dw[l].data()), dbp.push_back(db[l].data());
  JacobianPenaltyParams<float> p;
  p.B = B, p.P = P, p.L = L, p.dims = dims.data(), p.w = wp.data(), p.b = bp.data(), p.act = act.data();
  p.x = x.data(), p.v = v.data(), p.scale = 0.01f, p.u = u.data(), p.sq = sq.data(), p.penalty = pen.data();
  if (grads) p.dw = dwp.data(), p.db = dbp.data();
  const auto fn = jacobian_penalty_f32();
  const double t = median_seconds([&] { fn(p, threads); });
  const double flops = jacobian_penalty_flops(B, P, L, dims.data(), act.data(), grads);
  std::string shape;
  for (size_t i = 0; i < dims.size(); ++i) shape += (i ? "-" : "") + std::to_string(dims[i]);
  const char* an = hidden == Activation::ReLU ? "relu" : hidden == Activation::Tanh ? "tanh" : "gelu";
  std::printf("%-16s %-4s B %4ld P %ld %-9s threads %d  %8.1f us  %6.1f MFLOP  %6.1f GFLOP/s\n",
              shape.c_str(), an, long(B), long(P), grads ? "+grads" : "penalty", threads, t * 1e6,
              flops * 1e-6, flops / t * 1e-9);
}

void bench_gemm(int64_t m, int64_t n, int64_t k, int threads) {
  std::mt19937 g(1);
  std::vector<float> a = randn(m * k, g, 1.f), b = randn(n * k, g, 1.f), c(m * n);
  deepcalc::GemmParams<float> p;
  p.m = m, p.n = n, p.k = k, p.a = a.data(), p.lda = k, p.b = b.data(), p.ldb = k, p.trans_b = true;
  p.c = c.data(), p.ldc = n;
  const auto fn = deepcalc::gemm_f32();
  const double t = median_seconds([&] { fn(p, threads); });
  std::printf("GEMM NT %ld x %ld x %ld (the largest layer)      threads %d  %8.1f us  %6.1f GFLOP/s\n",
              long(m), long(n), long(k), threads, t * 1e6, 2.0 * m * n * k / t * 1e-9);
}

}  // namespace

int main(int argc, char** argv) {
  using deepcalc::Activation;
  std::vector<int> threads = {1, 2};
  if (argc > 1) threads = {std::atoi(argv[1])};
  std::printf("kernels: %s\n", deepcalc::cpu_capability_name(deepcalc::cpu_capability()));
  const std::vector<int64_t> mlp = {784, 256, 256, 10};
  for (int th : threads) {
    bench_gemm(128, 256, 784, th);
    bench(mlp, Activation::ReLU, 128, 1, false, th);
    bench(mlp, Activation::ReLU, 128, 1, true, th);
    bench(mlp, Activation::ReLU, 128, 4, true, th);
    bench(mlp, Activation::Tanh, 128, 1, true, th);
    bench({64, 128, 128, 10}, Activation::ReLU, 64, 1, true, th);
  }
  return 0;
}
