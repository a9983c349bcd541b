#pragma once

// The class attribute that Python's attribute lookup finds along a type's MRO, for the bindings'
// own tp_getattro and tp_setattro (tm.Object, managed objects).

#include <Python.h>
#include <pybind11/pybind11.h>

namespace tmr::bindings {

namespace py = pybind11;

/// The attribute (a new reference) or an empty object, without an error; the type's method cache
/// answers. Must not be called with an error set (3.11's _PyType_Lookup clears it). On 3.13 the
/// reference is taken inside the lookup: a borrowed one could be freed by another thread that
/// replaces the class attribute before the caller increments it.
inline py::object class_lookup(PyTypeObject* type, PyObject* name) {
#if PY_VERSION_HEX >= 0x030D0000
  return py::reinterpret_steal<py::object>(_PyType_LookupRef(type, name));
#else
  return py::reinterpret_borrow<py::object>(_PyType_Lookup(type, name));
#endif
}

}  // namespace tmr::bindings
