// tm.Var: one transactional reference to a Python object.

#include <pybind11/pybind11.h>

#include "gc.hpp"
#include "tx_state.hpp"

namespace tmr::bindings {

namespace {

class Var {
 public:
  explicit Var(py::object value) : cell_(value.release().ptr(), &release_pyobject, "tm.Var") {}

  py::object get() {
    py::object out;
    transact(this, Access::read, [&](stm::Transaction& tx) {
      out = py::reinterpret_borrow<py::object>(static_cast<PyObject*>(load_cell(tx, cell_)));
    });
    return out;
  }
  void set(const py::object& value) {
    transact(this, Access::write, [&](stm::Transaction& tx) {
      store_cell(tx, cell_, value.inc_ref().ptr());  // the engine owns this reference now
    });
  }
  /// Stores value and returns the previous one (one read-modify-write).
  py::object exchange(const py::object& value) {
    py::object out;
    transact(this, Access::write, [&](stm::Transaction& tx) {
      out = py::reinterpret_borrow<py::object>(static_cast<PyObject*>(tx.load(cell_)));
      store_cell(tx, cell_, value.inc_ref().ptr());
    });
    return out;
  }

  /// tp_traverse: the committed value (a value buffered by a running transaction is not
  /// visited, which only keeps a cycle through it alive until that transaction ends).
  int gc_traverse(visitproc visit, void* arg) const {
    Py_VISIT(static_cast<PyObject*>(cell_.unsafe_peek()));
    return 0;
  }
  /// tp_clear: the collector found this Var unreachable, so no transaction can reach its cell.
  void gc_clear() { cell_.unsafe_reset(py::none().release().ptr()); }

 private:
  stm::Cell cell_;  // payload: one owned PyObject reference
};

}  // namespace

void init_var(py::module_& m) {
  py::class_<Var>(m, "Var", "A transactional reference to a Python object.", gc_support<Var>())
      .def(py::init<py::object>(), py::arg("value") = py::none())
      .def("get", &Var::get, "The value (a transactional read).")
      .def("set", &Var::set, py::arg("value"), "Replaces the value (a transactional write).")
      .def("swap", &Var::exchange, py::arg("value"), "Replaces the value and returns the old one.")
      .def_property("value", &Var::get, &Var::set, "The value.")
      .def("__repr__",
           [](Var& v) { return "tm.Var(" + py::repr(v.get()).cast<std::string>() + ")"; })
      .def("__reduce__", [](const py::object& self) {
        return py::make_tuple(self.get_type(), py::make_tuple(self.cast<Var&>().get()));
      });
}

}  // namespace tmr::bindings
