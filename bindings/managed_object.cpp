// Attribute access of the objects tm.manage() manages, in C.
//
// tm/_managed.py switches a managed object to a subclass of its class whose __getattribute__ and
// __setattr__ route the instance's attributes through a tm.Object table. Written in Python, each
// access of a managed factory (`self.factory.clients`, `self.factory.deliver(...)`) ran two or
// three Python frames and a walk of the class's MRO: 1.0-2.4 us an access, against 20-60 ns on a
// plain object (docs/BENCHMARKS.md, "Managed attributes"). Here the class lookup is
// _PyType_Lookup, which the type's method cache answers, and the table is read without a frame.
// The Python functions stay the reference: the rare cases (a container value to convert, a method
// shadowed by an instance attribute) still go through them.
//
// __getattribute__ is the managed class's tp_getattro slot itself, as it would be for a C type;
// __setattr__ is a method descriptor in the class's dict, so that tp_setattro stays CPython's
// slot_tp_setattro and object.__setattr__ keeps working on the object (its "hackcheck" refuses a
// type whose C-level setattro it would skip).

#include <Python.h>
#include <pybind11/pybind11.h>

#include "builtin_calls.hpp"
#include "type_lookup.hpp"

namespace tmr::bindings {

namespace {

// Interned strings, made at module init and never released.
PyObject* g_state_key = nullptr;     // "_tm_state": the instance __dict__'s tm.Object table
PyObject* g_shadows_key = nullptr;   // "_tm_shadows": method names an instance attribute shadows
PyObject* g_getattr_name = nullptr;  // "__getattr__"
// tm/_managed.py's _setattr, for the values it converts and the methods it records as shadowed.
PyObject* g_setattr_fallback = nullptr;

// dict[key] (new reference), nullptr without an error when absent, nullptr with one on failure.
PyObject* dict_get(PyObject* dict, PyObject* key) {
#if PY_VERSION_HEX >= 0x030D0000
  PyObject* value = nullptr;
  PyDict_GetItemRef(dict, key, &value);
  return value;
#else
  PyObject* value = PyDict_GetItemWithError(dict, key);
  Py_XINCREF(value);
  return value;
#endif
}

bool is_dunder(PyObject* name) {
  return PyUnicode_GET_LENGTH(name) >= 2 && PyUnicode_READ_CHAR(name, 0) == '_' &&
         PyUnicode_READ_CHAR(name, 1) == '_';
}

bool is_data_descriptor(PyObject* found) {
  return found != nullptr && Py_TYPE(found)->tp_descr_set != nullptr;
}

// What _getattribute does before object.__getattribute__: the table answers for a name unless
// the class does (a data descriptor, or a method no instance attribute ever shadowed). Returns
// the table's value (new reference), or nullptr: with an error set, the access failed; without
// one, object.__getattribute__ answers.
PyObject* table_value(PyObject* self, PyObject* name) {
  const py::object found = class_lookup(Py_TYPE(self), name);
  const bool descriptor = found && Py_TYPE(found.ptr())->tp_descr_get != nullptr;
  if (descriptor && is_data_descriptor(found.ptr())) return nullptr;
  auto dict = py::reinterpret_steal<py::object>(PyObject_GenericGetDict(self, nullptr));
  if (!dict) return nullptr;
  if (descriptor) {
    auto shadows = py::reinterpret_steal<py::object>(dict_get(dict.ptr(), g_shadows_key));
    if (!shadows) return nullptr;  // a method no instance attribute shadows (or an error)
    const int shadowed = PySequence_Contains(shadows.ptr(), name);
    if (shadowed <= 0) return nullptr;
  }
  auto table = py::reinterpret_steal<py::object>(dict_get(dict.ptr(), g_state_key));
  if (!table) return nullptr;
  PyObject* value = PyObject_GetAttr(table.ptr(), name);
  if (value == nullptr && PyErr_ExceptionMatches(PyExc_AttributeError) != 0) PyErr_Clear();
  return value;  // an abort signal, or any other error, propagates
}

PyObject* managed_getattribute(PyObject* self, PyObject* name) {
  if (!PyUnicode_Check(name) || is_dunder(name)) return PyObject_GenericGetAttr(self, name);
  PyObject* value = table_value(self, name);
  if (value != nullptr || PyErr_Occurred() != nullptr) return value;
  return PyObject_GenericGetAttr(self, name);
}

// The managed class's tp_getattro: as CPython's slot for a class with __getattribute__, a
// missing attribute then asks the class's __getattr__, if it has one.
PyObject* managed_getattro(PyObject* self, PyObject* name) {
  PyObject* value = managed_getattribute(self, name);
  if (value != nullptr || PyErr_ExceptionMatches(PyExc_AttributeError) == 0) return value;
  PyTypeObject* type = Py_TYPE(self);
  py::object getattr;
  {
    // _PyType_Lookup must not run with an error set (3.11's clears it): the AttributeError waits.
    const py::error_scope missing;
    getattr = class_lookup(type, g_getattr_name);
  }
  if (!getattr) return nullptr;  // the AttributeError stands
  PyErr_Clear();                 // __getattr__ answers instead
  descrgetfunc bind = Py_TYPE(getattr.ptr())->tp_descr_get;
  if (bind == nullptr) return PyObject_CallOneArg(getattr.ptr(), name);
  auto bound = py::reinterpret_steal<py::object>(
      bind(getattr.ptr(), self, reinterpret_cast<PyObject*>(type)));
  return bound ? PyObject_CallOneArg(bound.ptr(), name) : nullptr;
}

// __setattr__(self, name, value): _setattr's common case, a value stored in the table as it is.
PyObject* managed_setattr(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 2) {
    PyErr_SetString(PyExc_TypeError, "__setattr__ expected 2 arguments");
    return nullptr;
  }
  PyObject* name = args[0];
  PyObject* value = args[1];
  if (!PyUnicode_Check(name) || is_dunder(name)) {
    return PyObject_GenericSetAttr(self, name, value) == 0 ? Py_NewRef(Py_None) : nullptr;
  }
  const py::object found = class_lookup(Py_TYPE(self), name);
  if (is_data_descriptor(found.ptr())) {
    return PyObject_GenericSetAttr(self, name, value) == 0 ? Py_NewRef(Py_None) : nullptr;
  }
  PyTypeObject* kind = Py_TYPE(value);
  const bool container = kind == &PyList_Type || kind == &PyDict_Type || kind == &PySet_Type;
  const bool shadows_method = found && Py_TYPE(found.ptr())->tp_descr_get != nullptr;
  if (!container && !shadows_method) {
    auto dict = py::reinterpret_steal<py::object>(PyObject_GenericGetDict(self, nullptr));
    if (!dict) return nullptr;
    auto table = py::reinterpret_steal<py::object>(dict_get(dict.ptr(), g_state_key));
    if (table) {
      return PyObject_SetAttr(table.ptr(), name, value) == 0 ? Py_NewRef(Py_None) : nullptr;
    }
    if (PyErr_Occurred() != nullptr) return nullptr;
  }
  PyObject* const call[] = {self, name, value};
  return PyObject_Vectorcall(g_setattr_fallback, call, 3, nullptr);
}

PyMethodDef g_setattr_def = {
    "__setattr__", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&managed_setattr)),
    METH_FASTCALL, "Implement setattr(self, name, value)."};

// install_managed_access(cls, setattr_fallback): gives the managed class cls (tm/_managed.py's
// _managed_class, before any instance has it) the C attribute access above.
PyObject* install_managed_access(PyObject* /*module*/, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 2 || !PyType_Check(args[0]) || PyCallable_Check(args[1]) == 0) {
    PyErr_SetString(PyExc_TypeError,
                    "install_managed_access(cls, setattr_fallback): a class and a callable");
    return nullptr;
  }
  auto* type = reinterpret_cast<PyTypeObject*>(args[0]);
  if (g_setattr_fallback == nullptr) g_setattr_fallback = Py_NewRef(args[1]);
  auto setattr = py::reinterpret_steal<py::object>(PyDescr_NewMethod(type, &g_setattr_def));
  if (!setattr || PyObject_SetAttrString(args[0], "__setattr__", setattr.ptr()) != 0) {
    return nullptr;
  }
  type->tp_getattro = &managed_getattro;
  PyType_Modified(type);
  Py_RETURN_NONE;
}

PyObject* intern(const char* text) {
  PyObject* s = PyUnicode_InternFromString(text);
  if (s == nullptr) throw py::error_already_set();
  return s;
}

}  // namespace

void init_managed_object(py::module_& m) {
  g_state_key = intern("_tm_state");
  g_shadows_key = intern("_tm_shadows");
  g_getattr_name = intern("__getattr__");
  static PyMethodDef install_def = {
      "install_managed_access",
      reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&install_managed_access)),
      METH_FASTCALL,
      "install_managed_access($module, cls, setattr_fallback, /)\n--\n\nGives a managed class "
      "(tm.manage) its attribute access in C; setattr_fallback(obj, name, value) stores what "
      "needs converting or shadows a method."};
  add_builtin_function(m, &install_def);
}

}  // namespace tmr::bindings
