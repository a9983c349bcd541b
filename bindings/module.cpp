// tm._core: one init_<concept>() per bound concept, each in its own file.
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace tmr::bindings {
void init_build_info(py::module_& m);
void init_errors(py::module_& m);
void init_transaction(py::module_& m);
void init_stats(py::module_& m);
void init_var(py::module_& m);
void init_counter(py::module_& m);
void init_log(py::module_& m);
void init_list(py::module_& m);
void init_dict(py::module_& m);
void init_set(py::module_& m);
void init_object(py::module_& m);
void init_managed_object(py::module_& m);
void init_reactor(py::module_& m);
void init_stream_transport(py::module_& m);
void init_shared_types(py::module_& m);
void init_race_report(py::module_& m);
}  // namespace tmr::bindings

// The module holds no state that needs the GIL: every bound type synchronises through the STM.
PYBIND11_MODULE(_core, m, py::mod_gil_not_used()) {
  m.doc() = "tm-reactor's engine: the STM and the reactor, bound for Python";
  tmr::bindings::init_build_info(m);
  tmr::bindings::init_errors(m);  // first: the other concepts raise its exceptions
  tmr::bindings::init_transaction(m);
  tmr::bindings::init_stats(m);
  tmr::bindings::init_var(m);
  tmr::bindings::init_counter(m);
  tmr::bindings::init_log(m);
  tmr::bindings::init_list(m);
  tmr::bindings::init_dict(m);
  tmr::bindings::init_set(m);
  tmr::bindings::init_object(m);
  tmr::bindings::init_managed_object(m);
  tmr::bindings::init_reactor(m);
  tmr::bindings::init_stream_transport(m);
  tmr::bindings::init_shared_types(m);
  tmr::bindings::init_race_report(m);
}
