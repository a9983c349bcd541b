#include <Python.h>
#include <pybind11/pybind11.h>

#include "stm/version.hpp"

namespace py = pybind11;

namespace tmr::bindings {

namespace {

bool interpreter_is_free_threaded() {
#ifdef Py_GIL_DISABLED
  return true;
#else
  return false;
#endif
}

// sys._is_gil_enabled() exists from 3.13; before that the GIL is always on.
bool gil_enabled_now() {
  py::module_ sys = py::module_::import("sys");
  if (!py::hasattr(sys, "_is_gil_enabled")) return true;
  return sys.attr("_is_gil_enabled")().cast<bool>();
}

py::dict build_info() {
  py::dict info;
  info["version"] = stm::version();
  info["compiler"] = TM_CXX_COMPILER;
  info["boost"] = TM_BOOST_VERSION;
  info["pybind11"] = std::to_string(PYBIND11_VERSION_MAJOR) + "." +
                     std::to_string(PYBIND11_VERSION_MINOR) + "." +
                     std::to_string(PYBIND11_VERSION_PATCH);
  info["python"] = py::module_::import("platform").attr("python_version")();
  info["free_threaded"] = interpreter_is_free_threaded();
  info["gil_enabled"] = gil_enabled_now();
  return info;
}

}  // namespace

void init_build_info(py::module_& m) {
  m.def("build_info", &build_info,
        "The compiler, Boost and pybind11 versions this extension was built with, whether the "
        "interpreter is free-threaded and whether the GIL is enabled now.");
}

}  // namespace tmr::bindings
