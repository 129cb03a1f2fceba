// deepcalc._core: one pybind11 module; each kernel family adds its functions in bind_<family>.cpp.
#include <pybind11/pybind11.h>

#include "common/cpu.h"
#include "common/threads.h"

namespace py = pybind11;

namespace deepcalc::bind {
void bind_softmax(py::module_& m);
void bind_special(py::module_& m);
void bind_norm(py::module_& m);
void bind_optim(py::module_& m);
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
  bind::bind_softmax(m);
  bind::bind_special(m);
  bind::bind_norm(m);
  bind::bind_optim(m);
}
