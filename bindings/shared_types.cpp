// Extension types made immortal before parallel workers share them (CPython 3.13t only).
//
// On a free-threaded 3.13 an object's reference count has a part its owning thread changes
// without atomics and a shared part every other thread changes with an atomic add. Making an
// instance of a heap type takes a reference on the type, and freeing it drops one, so workers
// that make instances of one type (a hash object per round, a socket per connection, a
// functools.partial per callback) all add to that type's shared count: one cache line bouncing
// between cores. CPython makes the classes Python code defines immortal once a second thread
// exists (their counts are deferred); extension types (PyType_FromSpec's, pybind11's) it leaves
// counted, until 3.14 counts type references per thread. Measured in docs/TUNING.md.
//
// The same holds for the immutable objects a program builds before it serves and then reads on
// every worker: a compiled template's node tuples and strings, a routing table's keys. Each read
// of a tuple's item or a list's element takes and drops a reference, and two workers walking one
// such structure bounce its objects' cache lines between cores (measured in docs/TUNING.md).
// CPython 3.14 makes code constants immortal; here the immutable objects (str, bytes, int, float,
// complex, tuple, frozenset) that exist when a parallel run starts and that this thread owns are.
//
// Only the owner thread writes ob_ref_local, so the owner may mark its own objects immortal while
// other threads run: they see the mark on their next load and stop counting. What they added to
// the shared count before that no longer matters, because an immortal object is never freed.
#include <Python.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <string>
#include <vector>

namespace py = pybind11;

namespace tmr::bindings {

namespace {

std::size_t immortalize_types(const py::iterable& types) {
  std::size_t immortalized = 0;
  for (py::handle item : types) {
    if (!PyType_Check(item.ptr())) {
      throw py::type_error("immortalize_types() takes types, not " +
                           std::string(Py_TYPE(item.ptr())->tp_name));
    }
#if defined(Py_GIL_DISABLED) && PY_VERSION_HEX < 0x030E0000
    PyObject* type = item.ptr();
    // Static types are immortal already; a type owned by another thread is that thread's to mark.
    const bool heap_type =
        PyType_HasFeature(reinterpret_cast<PyTypeObject*>(type), Py_TPFLAGS_HEAPTYPE) != 0;
    if (!heap_type || _Py_IsImmortal(type) != 0 || _Py_IsOwnedByCurrentThread(type) == 0) {
      continue;
    }
    _Py_atomic_store_uint32_relaxed(&type->ob_ref_local, _Py_IMMORTAL_REFCNT_LOCAL);
    ++immortalized;
#endif
  }
  return immortalized;
}

#if defined(Py_GIL_DISABLED) && PY_VERSION_HEX < 0x030E0000
bool is_immutable_value(PyObject* object) {
  return PyUnicode_CheckExact(object) || PyBytes_CheckExact(object) || PyLong_CheckExact(object) ||
         PyFloat_CheckExact(object) || PyComplex_CheckExact(object) || PyTuple_CheckExact(object) ||
         PyFrozenSet_CheckExact(object);
}

// Marks `object` immortal if it is an immutable value this thread owns, and then the values
// inside it (a tuple's items, a frozenset's members: neither changes once made). Returns how many
// objects it marked.
std::size_t immortalize_value(PyObject* object) {
  std::size_t marked = 0;
  std::vector<PyObject*> pending{object};
  while (!pending.empty()) {
    PyObject* o = pending.back();
    pending.pop_back();
    if (!is_immutable_value(o) || _Py_IsImmortal(o) != 0 || _Py_IsOwnedByCurrentThread(o) == 0) {
      continue;
    }
    _Py_atomic_store_uint32_relaxed(&o->ob_ref_local, _Py_IMMORTAL_REFCNT_LOCAL);
    ++marked;
    if (PyTuple_CheckExact(o)) {
      for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(o); ++i)
        pending.push_back(PyTuple_GET_ITEM(o, i));
    } else if (PyFrozenSet_CheckExact(o)) {
      PyObject* members = PyObject_GetIter(o);
      if (members == nullptr) throw py::error_already_set();
      while (PyObject* member = PyIter_Next(members)) {
        pending.push_back(member);  // the frozenset keeps it alive
        Py_DECREF(member);
      }
      Py_DECREF(members);
      if (PyErr_Occurred() != nullptr) throw py::error_already_set();
    }
  }
  return marked;
}
#endif

std::size_t immortalize_values(const py::iterable& objects) {
  std::size_t immortalized = 0;
  for (py::handle item : objects) {
#if defined(Py_GIL_DISABLED) && PY_VERSION_HEX < 0x030E0000
    immortalized += immortalize_value(item.ptr());
#else
    static_cast<void>(item);
#endif
  }
  return immortalized;
}

}  // namespace

void init_shared_types(py::module_& m) {
  m.def("_immortalize_types", &immortalize_types, py::arg("types"),
        "Makes the heap types among `types` that this thread owns immortal, on a free-threaded "
        "CPython 3.13 (elsewhere: nothing). Returns how many it changed.");
  m.def("_immortalize_values", &immortalize_values, py::arg("objects"),
        "Makes the immutable values (exact str, bytes, int, float, complex, tuple, frozenset) "
        "among `objects` that this thread owns immortal, and those inside their tuples and "
        "frozensets, on a free-threaded CPython 3.13 (elsewhere: nothing). Returns how many it "
        "changed.");
}

}  // namespace tmr::bindings
