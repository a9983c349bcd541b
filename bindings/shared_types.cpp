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
// Only the owner thread writes ob_ref_local, so the owner may mark its own types immortal while
// other threads run: they see the mark on their next load and stop counting. What they added to
// the shared count before that no longer matters, because an immortal object is never freed.
#include <Python.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <string>

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

}  // namespace

void init_shared_types(py::module_& m) {
  m.def("_immortalize_types", &immortalize_types, py::arg("types"),
        "Makes the heap types among `types` that this thread owns immortal, on a free-threaded "
        "CPython 3.13 (elsewhere: nothing). Returns how many it changed.");
}

}  // namespace tmr::bindings
