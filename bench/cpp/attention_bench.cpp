// Fused attention kernels (cpp/attention): time, GFLOP/s and fraction of the float32 FMA peak for
// the forward, backward and forward-mode tangent, causal and not, at (B, H, L, D) = (4, 8, 512, 64)
// unless given. FLOPs: forward 4 B H Lq Lk D (S = Q K^T and O = P V), backward 2.5x that (S, dP,
// dV, dK, dQ), tangent along q, k, v 2.5x (S, tS twice, (P tS) V, P tV); causal halves each.
// Usage: attention_bench [threads [B H L D]] [--cpu]; the peak is measured (fma_peak_avx512.cpp)
// per core and also reported against the nominal 232 GFLOP/s of two Zen 4 cores. --cpu times by
// process CPU time / threads instead of wall time (for A/B runs on a busy machine; an OpenMP
// thread spinning at a barrier still counts).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "attention/attention.h"
#include "common/cpu.h"

double fma_peak_gflops_f32();

namespace {

double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// Median wall time of f, or (cpu) its process CPU time over `threads`: on a machine shared with
// other work, time spent descheduled counts in the wall time only.
template <class F>
double median_seconds(F&& f, int reps, bool cpu, int threads) {
  f();  // warm-up: packs, page faults, OpenMP pool
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = cpu_seconds();
    f();
    t.push_back(cpu ? (cpu_seconds() - c0) / threads
                    : std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  using namespace deepcalc;
  bool cpu = false;
  if (argc > 1 && std::string(argv[argc - 1]) == "--cpu") cpu = true, --argc;
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const int64_t B = argc > 5 ? std::atoll(argv[2]) : 4, H = argc > 5 ? std::atoll(argv[3]) : 8;
  const int64_t L = argc > 5 ? std::atoll(argv[4]) : 512, D = argc > 5 ? std::atoll(argv[5]) : 64;
  const double peak = fma_peak_gflops_f32() * threads;
  std::printf("attention (B, H, L, D) = (%ld, %ld, %ld, %ld), %d threads, path %s, %s time; "
              "measured FMA peak %.0f GFLOP/s (nominal 232 for 2 Zen 4 cores)\n", long(B), long(H),
              long(L), long(D), threads, cpu_capability_name(cpu_capability()),
              cpu ? "CPU" : "wall", peak);
  const size_t n = size_t(B * H * L * D);
  std::mt19937 gen(0);
  std::normal_distribution<float> nd;
  std::vector<float> q(n), k(n), v(n), o(n), dout(n), dq(n), dk(n), dv(n), tout(n), lse(size_t(B * H * L));
  for (auto* a : {&q, &k, &v, &dout}) for (float& x : *a) x = nd(gen);
  for (bool causal : {false, true}) {
    AttentionShape<float> s;
    s.B = B, s.H = H, s.Lq = L, s.Lk = L, s.D = D, s.Dv = D, s.scale = 0.125f, s.causal = causal;
    const AttentionForwardParams<float> f{s, q.data(), k.data(), v.data(), o.data(), lse.data()};
    const AttentionBackwardParams<float> b{s, q.data(), k.data(), v.data(), o.data(), lse.data(),
                                           dout.data(), dq.data(), dk.data(), dv.data()};
    const AttentionJvpParams<float> j{s, q.data(), k.data(), v.data(), o.data(), lse.data(),
                                      dout.data(), dq.data(), dk.data(), tout.data()};
    const double fl = 4.0 * B * H * L * L * D * (causal ? 0.5 : 1.0);
    const double tf = median_seconds([&] { attention_forward_f32()(f, threads); }, 15, cpu, threads);
    const double tb = median_seconds([&] { attention_backward_f32()(b, threads); }, 15, cpu, threads);
    const double tj = median_seconds([&] { attention_jvp_f32()(j, threads); }, 15, cpu, threads);
    for (auto [name, t, mult] : {std::tuple{"forward", tf, 1.0}, {"backward", tb, 2.5}, {"jvp", tj, 2.5}})
      std::printf("%-7s %-8s %7.2f ms %6.0f GFLOP/s  %3.0f%% of measured peak  %3.0f%% of 232\n",
                  causal ? "causal" : "full", name, t * 1e3, mult * fl / t * 1e-9,
                  100 * mult * fl / t * 1e-9 / peak, 100 * mult * fl / t * 1e-9 / 232);
  }
  return 0;
}
