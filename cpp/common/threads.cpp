// Kernels take their thread count from a ThreadBudget and pass it to
// `#pragma omp parallel num_threads(...)`, so dc.set_num_threads applies whichever Python thread
// calls in (omp_set_num_threads alone is per calling thread).
#include "common/threads.h"

#include <omp.h>

#include <algorithm>
#include <atomic>

namespace deepcalc {
namespace {
std::atomic<int> g_threads{0};
std::atomic<int> g_in_flight{0};
}  // namespace

void set_num_threads(int n) { g_threads.store(n > 0 ? n : 1); }

int get_num_threads() {
  const int n = g_threads.load();
  return n > 0 ? n : omp_get_max_threads();
}

ThreadBudget::ThreadBudget() {
  const int active = g_in_flight.fetch_add(1) + 1;
  threads_ = std::max(1, get_num_threads() / active);
}

ThreadBudget::ThreadBudget(int64_t work, int64_t grain) : ThreadBudget() {
  const int64_t useful = grain > 0 ? work / grain : threads_;
  threads_ = int(std::max<int64_t>(1, std::min<int64_t>(threads_, useful)));
}

ThreadBudget::~ThreadBudget() { g_in_flight.fetch_sub(1); }

}  // namespace deepcalc
