#include "stream_errors.hpp"

#include <Python.h>

#include <string>
#include <string_view>

#include "tx_state.hpp"

namespace tmr::bindings {

namespace {

// The errno an error code stands for, or 0. Boost's codes reach us wrapped in categories of their
// own, named like the standard ones, so the name is what tells an errno apart.
int errno_of(const std::error_code& ec) {
  const std::string_view category = ec.category().name();
  return category == "system" || category == "generic" ? ec.value() : 0;
}

}  // namespace

py::object os_error(const std::error_code& ec) {
  const int err = errno_of(ec);
  const py::handle os_error_type(PyExc_OSError);
  return err != 0 ? os_error_type(err, std::system_category().message(err))
                  : os_error_type(ec.message());
}

void raise_os_error(const std::error_code& ec) {
  py::object exc = os_error(ec);
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
  throw py::error_already_set();
}

void raise_errno(int err) {
  raise_os_error(std::error_code(err, std::system_category()));
}

void report_unraisable(py::error_already_set& error, py::handle where) {
  if (error.matches(abort_exception())) throw error;  // also outside a catch block (on_eof)
  error.discard_as_unraisable(py::reinterpret_borrow<py::object>(where));
}

}  // namespace tmr::bindings
