#pragma once

// The entry point the reactor bindings use to run Python code as transactions.

#include <pybind11/pybind11.h>

#include <functional>

namespace tmr::stm {
class Transaction;
}

namespace tmr::bindings {

namespace py = pybind11;

/// How a Python transaction may be retried.
enum class Mode {
  /// The callable promises to touch only managed state and objects it creates: it runs
  /// optimistically and is rerun on conflict (escalating to inevitable after K aborts).
  restartable,
  /// Ordinary Python code that cannot be rerun: it becomes inevitable at its first shared managed
  /// access (conflict-free operations are buffered and replayed instead) and is never rerun.
  irrevocable,
};

/// Runs fn(*args, **kwargs) as one transaction in `mode` and returns its result; nested in a
/// running transaction it is flattened into it (the outer mode wins). Requires the caller's
/// thread state attached; it is detached around every blocking engine step (inevitable token,
/// retry, hook turnstile, backoff). The abort signal never escapes: a Python exception other than
/// the internal abort abandons the attempt (no managed effect) and propagates as
/// py::error_already_set.
py::object run_python_transaction(py::handle fn, py::handle args, py::handle kwargs, Mode mode);

inline py::object run_python_transaction(py::handle fn, Mode mode) {
  return run_python_transaction(fn, py::tuple(), py::handle(), mode);
}

/// Runs callback(tx) as one irrevocable transaction, as run_python_transaction runs a Python
/// callable, but without a Python function object around it: the reactor's path for every event.
/// A py::error_already_set escaping the callback propagates as it would from a Python callable.
void run_irrevocable(const std::function<void(stm::Transaction&)>& callback);

/// run_irrevocable for a thread with no thread state attached and none saved by a driver (a
/// reactor worker between events): `state`, this thread's own, is attached for the Python code
/// only (the body, a replay of deferred operations, the release of what the transaction kept),
/// not around the engine's begin and commit. Leaves the thread detached.
void run_irrevocable_detached(const std::function<void(stm::Transaction&)>& callback,
                              PyThreadState* state);

}  // namespace tmr::bindings
