// deepcalc._core: one pybind11 module; each kernel family adds its functions in bind_<family>.cpp.
#include <pybind11/pybind11.h>

#include <string>

#include "common/cpu.h"
#include "common/host_cache.h"
#include "common/threads.h"

namespace py = pybind11;

namespace deepcalc::bind {
void bind_softmax(py::module_& m);
void bind_special(py::module_& m);
void bind_norm(py::module_& m);
void bind_optim(py::module_& m);
void bind_gemm(py::module_& m);
void bind_impact(py::module_& m);
void bind_jacobian(py::module_& m);
void bind_attention(py::module_& m);
}  // namespace deepcalc::bind

PYBIND11_MODULE(_core, m) {
  using namespace deepcalc;
  m.doc() = "deepcalc native kernels (validated bindings; kernels release the GIL)";
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("get_num_threads", &get_num_threads);
  m.def("cpu_capability", [] { return cpu_capability_name(cpu_capability()); },
        "The instruction set the kernels use (after DEEPCALC_CPU_CAPABILITY).");
  m.def("cpu_detected_capability", [] { return cpu_capability_name(cpu_detected_capability()); },
        "The best instruction set this CPU and OS support.");
  m.def("cpu_capability_error", [] { return std::string(cpu_capability_error()); });
  m.def("host_cache_empty", &host_cache_empty, "Frees the idle blocks of the output-buffer cache.");
  m.def("host_cache_set_limit", [](long long bytes) {
    if (bytes < 0) throw py::value_error("host_cache_set_limit: bytes must be >= 0, got " + std::to_string(bytes));
    host_cache_set_limit(std::size_t(bytes));
  }, py::arg("bytes"));
  m.def("host_cache_stats", [] {
    const HostCacheStats s = host_cache_stats();
    py::dict d;
    d["idle_bytes"] = s.idle_bytes;
    d["live_bytes"] = s.live_bytes;
    d["limit_bytes"] = s.limit_bytes;
    d["idle_blocks"] = s.idle_blocks;
    d["hits"] = s.hits;
    d["misses"] = s.misses;
    d["evictions"] = s.evictions;
    d["min_cached_bytes"] = kMinCachedBytes;
    return d;
  });
  bind::bind_softmax(m);
  bind::bind_special(m);
  bind::bind_norm(m);
  bind::bind_optim(m);
  bind::bind_gemm(m);
  bind::bind_impact(m);
  bind::bind_jacobian(m);
  bind::bind_attention(m);
}
