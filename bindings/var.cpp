// tm.Var: one transactional reference to a Python object.

#include <pybind11/pybind11.h>

#include "builtin_calls.hpp"
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

// get(), set() and the value property as builtins: without pybind11's dispatch a read inside a
// transaction costs what a tm.Dict lookup does (builtin_calls.hpp).

PyObject* var_get(PyObject* self, PyObject* /*unused*/) {
  return method_call<Var>(self, [](Var& v) { return v.get().release().ptr(); });
}

PyObject* var_set(PyObject* self, PyObject* value) {
  return method_call<Var>(self, [value](Var& v) {
    v.set(py::reinterpret_borrow<py::object>(value));
    Py_RETURN_NONE;
  });
}

PyObject* var_value_get(PyObject* self, void* /*closure*/) {
  return var_get(self, nullptr);
}

int var_value_set(PyObject* self, PyObject* value, void* /*closure*/) {
  if (value == nullptr) {
    PyErr_SetString(PyExc_AttributeError, "tm.Var's value cannot be deleted");
    return -1;
  }
  PyObject* none = var_set(self, value);
  if (none == nullptr) return -1;
  Py_DECREF(none);
  return 0;
}

PyMethodDef g_get_def = {"get", var_get, METH_NOARGS, "The value (a transactional read)."};
PyMethodDef g_set_def = {"set", var_set, METH_O,
                         "set($self, value, /)\n--\n\nReplaces the value (a transactional write)."};
PyGetSetDef g_value_def = {"value", var_value_get, var_value_set, "The value.", nullptr};

}  // namespace

void init_var(py::module_& m) {
  auto cls =
      py::class_<Var>(m, "Var", "A transactional reference to a Python object.", gc_support<Var>());
  cls.def(py::init<py::object>(), py::arg("value") = py::none())
      .def("swap", &Var::exchange, py::arg("value"), "Replaces the value and returns the old one.")
      .def("__repr__",
           [](Var& v) { return "tm.Var(" + py::repr(v.get()).cast<std::string>() + ")"; })
      .def("__reduce__", [](const py::object& self) {
        return py::make_tuple(self.get_type(), py::make_tuple(self.cast<Var&>().get()));
      });
  add_builtin_method(cls, &g_get_def);
  add_builtin_method(cls, &g_set_def);
  add_builtin_property(cls, &g_value_def);
}

}  // namespace tmr::bindings
