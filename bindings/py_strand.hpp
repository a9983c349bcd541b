#pragma once

// tm._core.Strand: a reactor::Strand as a plain CPython type, and pybind11's caster for it.
//
// Callbacks ask for strands several times per event (current_strand(), a transport's strand, a
// Cooperator's check). As a pybind11 class every such object was registered in and removed from
// pybind11's instance map, and on a free-threaded interpreter that map, like pybind11's type
// lookups, sits behind one mutex of the whole process: with two workers, `perf` found a contended
// PyMutex there (40 sched_yield calls a spin) about once per request of an asyncio server. A
// Strand needs none of that: it is a value (a shared_ptr to the strand), so the object is an
// allocation and a reference count, and pybind11 converts through the caster below.

#include <pybind11/pybind11.h>

#include "reactor/strand.hpp"

namespace tmr::bindings {

namespace py = pybind11;

/// A new tm._core.Strand holding `strand`; nullptr with an exception set on failure.
PyObject* new_py_strand(reactor::Strand strand);

/// The strand a tm._core.Strand holds; nullptr (no exception set) for any other object.
const reactor::Strand* py_strand_value(PyObject* object);

/// Creates the type tm._core.Strand and adds it to m.
void init_strand_type(py::module_& m);

}  // namespace tmr::bindings

namespace pybind11::detail {

// Arguments and results of type reactor::Strand (also in std::optional) convert to and from
// tm._core.Strand; every translation unit that binds them includes this header.
template <>
struct type_caster<tmr::reactor::Strand> {
  PYBIND11_TYPE_CASTER(tmr::reactor::Strand, const_name("tm._core.Strand"));

  bool load(handle source, bool /*convert*/) {
    const tmr::reactor::Strand* strand = tmr::bindings::py_strand_value(source.ptr());
    if (strand == nullptr) return false;
    value = *strand;
    return true;
  }

  static handle cast(const tmr::reactor::Strand& strand, return_value_policy /*policy*/,
                     handle /*parent*/) {
    PyObject* object = tmr::bindings::new_py_strand(strand);
    if (object == nullptr) throw error_already_set();
    return object;
  }
};

}  // namespace pybind11::detail
