// Thread count shared by every OpenMP kernel; set from Python with dc.set_num_threads.
#pragma once
#include <cstdint>

namespace deepcalc {

void set_num_threads(int n);
int get_num_threads();

// RAII share of the thread budget for one kernel call. Bindings release the GIL, so several
// Python threads can be inside kernels at once; each gets get_num_threads() / (calls in flight)
// threads (at least 1) so that together they do not oversubscribe the cores.
class ThreadBudget {
 public:
  ThreadBudget();
  // As above, but never more than one thread per `grain` units of `work`: waking and joining
  // a thread costs microseconds, more than small kernels take, and far more when the cores are
  // busy with other processes.
  ThreadBudget(int64_t work, int64_t grain);
  ~ThreadBudget();
  ThreadBudget(const ThreadBudget&) = delete;
  ThreadBudget& operator=(const ThreadBudget&) = delete;
  int threads() const { return threads_; }

 private:
  int threads_;
};

}  // namespace deepcalc
