#pragma once

// Builtin functions and methods for the calls a reactor makes per event, registered without
// pybind11's dispatch.
//
// A pybind11 call runs generic code (the overload loop, the argument casters, the type lookups
// of each caster, a function_call record) of about 800 instructions, and that code is not in the
// instruction cache when a callback makes the call between stretches of interpreter: callgrind's
// cache simulation put about 50 instruction-cache misses on each of the 11 calls tm_twisted makes
// per twisted.web request, half of the misses of all of tm._core (docs/BENCHMARKS.md, "Where
// the CPU goes at one worker"). A PyMethodDef is called by the interpreter directly: METH_NOARGS
// and METH_O take no argument parsing at all.
//
// The PyMethodDef and PyGetSetDef given here must outlive the module (static storage).

#include <pybind11/pybind11.h>

namespace tmr::bindings {

namespace py = pybind11;

// The C++ value of an instance of a pybind11 class whose holder is constructed; nullptr (with
// TypeError set) otherwise. Reads the instance's simple layout, without pybind11's type lookup:
// the method descriptors below have checked the instance's type already.
template <class T>
T* instance_value(PyObject* self) {
  if (!py::detail::is_holder_constructed(self)) {
    PyErr_SetString(PyExc_TypeError, "the tm._core object is not initialized");
    return nullptr;
  }
  auto* instance = reinterpret_cast<py::detail::instance*>(self);
  return instance->get_value_and_holder().template value_ptr<T>();
}

// Adds def as a function of the module m.
inline void add_builtin_function(py::module_& m, PyMethodDef* def) {
  auto fn =
      py::reinterpret_steal<py::object>(PyCFunction_NewEx(def, m.ptr(), m.attr("__name__").ptr()));
  if (!fn) throw py::error_already_set();
  m.add_object(def->ml_name, fn);
}

// Adds def as a method of the class cls (the descriptor checks the instance's type).
inline void add_builtin_method(py::handle cls, PyMethodDef* def) {
  auto* type = reinterpret_cast<PyTypeObject*>(cls.ptr());
  auto descr = py::reinterpret_steal<py::object>(PyDescr_NewMethod(type, def));
  if (!descr) throw py::error_already_set();
  if (PyObject_SetAttrString(cls.ptr(), def->ml_name, descr.ptr()) != 0) {
    throw py::error_already_set();
  }
}

// Adds def as a property of the class cls (read-only unless def has a setter).
inline void add_builtin_property(py::handle cls, PyGetSetDef* def) {
  auto* type = reinterpret_cast<PyTypeObject*>(cls.ptr());
  auto descr = py::reinterpret_steal<py::object>(PyDescr_NewGetSet(type, def));
  if (!descr) throw py::error_already_set();
  if (PyObject_SetAttrString(cls.ptr(), def->name, descr.ptr()) != 0) {
    throw py::error_already_set();
  }
}

// Runs body() for a builtin's C entry point: a C++ exception becomes the Python exception that
// pybind11's dispatch would have raised for it (its registered translators, stm::AbortSignal's
// among them), and the function returns nullptr.
template <class Body>
PyObject* builtin_call(Body&& body) {
  try {
    return body();
  } catch (py::error_already_set& error) {
    error.restore();
  } catch (...) {
    py::detail::try_translate_exceptions();
  }
  return nullptr;
}

// builtin_call for a builtin method of T: body(value) with self's C++ value, or nullptr (with
// TypeError set) when self's holder is not constructed.
template <class T, class Body>
PyObject* method_call(PyObject* self, Body&& body) {
  return builtin_call([&]() -> PyObject* {
    T* value = instance_value<T>(self);
    return value == nullptr ? nullptr : body(*value);
  });
}

}  // namespace tmr::bindings
