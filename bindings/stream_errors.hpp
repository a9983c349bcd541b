#pragma once

// Errors crossing between the reactor's byte streams and Python: an error code of the reactor as
// the OSError that asyncio and Twisted expect, and an exception raised by a Python method that the
// reactor called.

#include <pybind11/pybind11.h>

#include <system_error>

namespace tmr::bindings {

namespace py = pybind11;

/// OSError(errno, strerror) for an errno (CPython picks the subclass: ConnectionRefusedError,
/// ...), else OSError(message).
py::object os_error(const std::error_code& ec);

/// Raises os_error(ec) as a Python exception.
[[noreturn]] void raise_os_error(const std::error_code& ec);

/// Raises OSError for an errno.
[[noreturn]] void raise_errno(int err);

/// Reports an exception from Python code the reactor called and goes on, as python_callback does;
/// the runtime's abort signal is never swallowed (rethrown).
void report_unraisable(py::error_already_set& error, py::handle where);

}  // namespace tmr::bindings
