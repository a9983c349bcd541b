#pragma once

#include <Python.h>

#include "stm/stm.hpp"

namespace tmr::bindings {

/// Detaches this thread's Python state for a scope (releases the GIL), as py::gil_scoped_release
/// does, except that re-attaching may unwind the stack.
///
/// Before Python 3.13 a thread other than the main one that re-attaches while the interpreter
/// finalizes is ended inside PyEval_RestoreThread by pthread_exit, a forced unwind. A daemon
/// thread that calls into tm at that moment (asyncio's threaded child watcher handing a process's
/// exit to the loop with call_soon_threadsafe, a Twisted callFromThread) is ended this way, as it
/// is on the stock loops; py::gil_scoped_release's destructor is noexcept, so there the unwind
/// ended the whole process with std::terminate ("terminate called without an active exception").
class ReleasedGil {
 public:
  ReleasedGil() : state_(PyEval_SaveThread()) {}
  // NOLINTNEXTLINE(bugprone-exception-escape): the forced unwind of pthread_exit must pass
  ~ReleasedGil() noexcept(false) { PyEval_RestoreThread(state_); }
  ReleasedGil(const ReleasedGil&) = delete;
  ReleasedGil& operator=(const ReleasedGil&) = delete;
  ReleasedGil(ReleasedGil&&) = delete;
  ReleasedGil& operator=(ReleasedGil&&) = delete;

 private:
  PyThreadState* state_;
};

/// Runs f() with the GIL released, unless this thread runs a transaction: there the reactor's
/// calls (a post, a timer's arming or cancellation) only register a hook for the commit, which
/// takes no lock of the reactor, and releasing the GIL would cost more than the call.
template <class F>
decltype(auto) released_outside_transaction(F&& f) {
  if (stm::current_transaction() != nullptr) return f();
  ReleasedGil release;
  return f();
}

}  // namespace tmr::bindings
