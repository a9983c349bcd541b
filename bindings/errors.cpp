// Every exception the extension raises, registered in one place.
//
// The abort signal: the engine throws stm::AbortSignal (a C++ exception) from loads, stores and
// commits. It must never cross a Python frame as a C++ exception, so pybind11's dispatcher turns
// it into tm._core.TransactionAbort (a BaseException: `except Exception` in user code cannot
// swallow it) and marks the attempt doomed; the driver at the transaction boundary turns it back
// into stm::AbortSignal for stm::atomically(). A doomed attempt raises it again on its next
// access, and is aborted at the boundary even if user code swallowed the signal.

#include <pybind11/pybind11.h>

#include "tx_state.hpp"

namespace tmr::bindings {

namespace {
PyObject* g_abort = nullptr;  // set once at import, then read-only
}  // namespace

PyObject* abort_exception() noexcept {
  return g_abort;
}

void raise_abort(stm::AbortCause cause) noexcept {
  TxState& st = tx_state();
  st.doomed = true;
  st.doomed_cause = cause;
  PyObject* arg = PyUnicode_FromString(stm::to_string(cause));
  PyErr_SetObject(g_abort, arg);
  Py_XDECREF(arg);
}

bool abort_pending() noexcept {
  return PyErr_Occurred() != nullptr && PyErr_ExceptionMatches(g_abort) != 0;
}

void init_errors(py::module_& m) {
  g_abort = PyErr_NewExceptionWithDoc(
      "tm._core.TransactionAbort",
      "Internal: unwinds an aborted transaction attempt to its boundary. Never catch it.",
      PyExc_BaseException, nullptr);
  if (g_abort == nullptr) throw py::error_already_set();
  m.attr("TransactionAbort") =
      py::handle(g_abort);  // the module keeps a reference; g_abort another
  // pybind11's translators take the exception_ptr by value (void (*)(std::exception_ptr)).
  // NOLINTNEXTLINE(performance-unnecessary-value-param)
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const stm::AbortSignal& s) {
      raise_abort(s.cause);
    }
  });
}

}  // namespace tmr::bindings
