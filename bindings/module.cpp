// tm._core: one init_<concept>() per bound concept, each in its own file.
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace tmr::bindings {
void init_build_info(py::module_& m);
}  // namespace tmr::bindings

// The module holds no state that needs the GIL: every bound type synchronises through the STM.
PYBIND11_MODULE(_core, m, py::mod_gil_not_used()) {
  m.doc() = "tm-reactor's engine: the STM and the reactor, bound for Python";
  tmr::bindings::init_build_info(m);
}
