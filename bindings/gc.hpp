#pragma once

// Cyclic garbage collection for the managed types' cores: a py::custom_type_setup that makes a
// pybind11 class GC-aware, with tp_traverse/tp_clear forwarding to the core's
// `int gc_traverse(visitproc, void*) const` and `void gc_clear()`.
//
// gc_traverse() visits the *committed* payloads (Cell::unsafe_peek): values buffered by a running
// transaction, retired values awaiting reclamation and deferred ops are not visited, which only
// keeps a cycle through them alive until they are gone (never frees anything early). gc_clear()
// runs only on objects the collector found unreachable, so no transaction can reach their cells; it
// replaces the payloads without a transaction (Cell::unsafe_reset).
//
// Commits and reclamation run with the thread state detached, so they go on while the collector
// runs: a stm::SnapshotPin keeps every payload the traversal can reach from being reclaimed under
// it.

#include <pybind11/pybind11.h>

#include <utility>

#include "stm/snapshot_pin.hpp"

namespace tmr::bindings {

// The C++ core of a managed type's instance, read from the instance itself. pybind11::cast would
// look the type up under pybind11's internals lock, and on the free-threaded build the collector
// calls tp_traverse with the world stopped: a thread stopped just after being handed that lock can
// never release it, and the collection waits for it forever (seen as a hung test run).
template <class T>
T& gc_core(PyObject* self) {
  auto* instance = reinterpret_cast<pybind11::detail::instance*>(self);
  return *instance->get_value_and_holder().template value_ptr<T>();
}

template <class T>
pybind11::custom_type_setup gc_support() {
  return pybind11::custom_type_setup([](PyHeapTypeObject* heap_type) {
    PyTypeObject* type = &heap_type->ht_type;
    type->tp_flags |= Py_TPFLAGS_HAVE_GC;
    type->tp_traverse = [](PyObject* self, visitproc visit, void* arg) -> int {
      Py_VISIT(Py_TYPE(self));
      if (!pybind11::detail::is_holder_constructed(self)) return 0;
      const stm::SnapshotPin pin;
      return std::as_const(gc_core<T>(self)).gc_traverse(visit, arg);
    };
    type->tp_clear = [](PyObject* self) -> int {
      if (pybind11::detail::is_holder_constructed(self)) gc_core<T>(self).gc_clear();
      return 0;
    };
  });
}

}  // namespace tmr::bindings
