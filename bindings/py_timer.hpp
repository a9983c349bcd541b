#pragma once

// tm._core.Timer: a reactor::Timer as a plain CPython type.
//
// A Twisted server makes and cancels a timer per request (twisted.web's idle timeout), an asyncio
// loop one per wake-up. As a pybind11 class each Timer object was registered in and removed from
// pybind11's instance map, which sits behind one mutex of the whole process on a free-threaded
// interpreter, and each call went through pybind11's dispatch (bindings/builtin_calls.hpp). The
// object needs neither: it is a value (a shared_ptr to the timer), its methods builtins.

#include <pybind11/pybind11.h>

#include "reactor/timer.hpp"

namespace tmr::bindings {

namespace py = pybind11;

/// A new tm._core.Timer holding `timer`; nullptr with an exception set on failure.
PyObject* new_py_timer(reactor::Timer timer);

/// Creates the type tm._core.Timer and adds it to m.
void init_timer_type(py::module_& m);

}  // namespace tmr::bindings
