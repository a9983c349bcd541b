#include "reactor_dispatcher.hpp"

#include <Python.h>

#include "py_ref.hpp"
#include "python_transaction.hpp"
#include "released_gil.hpp"
#include "stm/stm.hpp"
#include "tx_state.hpp"
#include "worker_spans.hpp"

namespace tmr::bindings {

namespace {

// Py_IsFinalizing became public API in 3.13.
bool interpreter_finalizing() noexcept {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing() != 0;
#else
  return _Py_IsFinalizing() != 0;
#endif
}

constexpr bool kFreeThreaded =
#ifdef Py_GIL_DISABLED
    true;
#else
    false;
#endif

// Calls tm._thread_identity.<name>(thread); the caller has a thread state attached.
void call_thread_identity(const char* name, PyObject* thread) {
  PyObject* module = PyImport_ImportModule("tm._thread_identity");
  PyObject* fn = module == nullptr ? nullptr : PyObject_GetAttrString(module, name);
  PyObject* result = fn == nullptr ? nullptr : PyObject_CallOneArg(fn, thread);
  if (result == nullptr) PyErr_WriteUnraisable(fn);
  Py_XDECREF(result);
  Py_XDECREF(fn);
  Py_XDECREF(module);
}

// A worker thread's Python thread state, created at its first Python callback and kept until the
// thread ends, so that a callback costs an attach and a detach, not a thread state. A worker that
// is a Python thread (the caller of run() with one worker: the main thread, or a thread running a
// loop of its own) uses the state it has, which Python deletes when that thread's function returns,
// before this thread-local is destroyed: releasing it then was a fatal error ("PyGILState_Release:
// auto-releasing thread-state, but no thread-state for this thread").
class WorkerThreadState {
 public:
  WorkerThreadState() : state_(PyGILState_GetThisThreadState()) {
    if (state_ != nullptr) return;  // a Python thread's own, detached by run()
    gil_ = PyGILState_Ensure();
    state_ = PyEval_SaveThread();
    owned_ = true;
  }
  ~WorkerThreadState() {
    if (!owned_ || interpreter_finalizing())
      return;  // not ours; or the interpreter reclaims it, and touching it now would crash
    PyEval_RestoreThread(state_);
    drop_identity();
    PyGILState_Release(gil_);
  }
  WorkerThreadState(const WorkerThreadState&) = delete;
  WorkerThreadState& operator=(const WorkerThreadState&) = delete;

  PyThreadState* state() const noexcept { return state_; }

  // Presents this worker to Python as `thread` (the caller of run(): tm._thread_identity), once:
  // callbacks see the thread the stock loops would have run them on. Detached before and after.
  void present_as(PyObject* thread) {
    if (thread == identity_ || thread == nullptr || !owned_) return;
    PyEval_RestoreThread(state_);
    drop_identity();
    Py_INCREF(thread);
    identity_ = thread;
    call_thread_identity("adopt", thread);
    PyEval_SaveThread();
  }

 private:
  // Undoes present_as, if it was made; attached.
  void drop_identity() {
    if (identity_ == nullptr) return;
    call_thread_identity("release", identity_);
    Py_CLEAR(identity_);
  }

  PyGILState_STATE gil_ = PyGILState_UNLOCKED;
  PyThreadState* state_;
  bool owned_ = false;
  PyObject* identity_ = nullptr;  // strong, or none yet
};

WorkerThreadState& worker_thread_state() {
  thread_local WorkerThreadState worker;
  return worker;
}

// Attaches this thread's state for one scope: the worker's own, or the one a Python thread
// already has (a callback run inline by a Python caller).
class AttachedScope {
 public:
  AttachedScope() {
    if (PyGILState_Check()) return;  // already attached: nothing to undo
    WorkerThreadState& worker = worker_thread_state();
    PyEval_RestoreThread(worker.state());
    attached_ = worker.state();
  }
  ~AttachedScope() {
    if (attached_) PyEval_SaveThread();
  }
  AttachedScope(const AttachedScope&) = delete;
  AttachedScope& operator=(const AttachedScope&) = delete;

 private:
  PyThreadState* attached_ = nullptr;
};

}  // namespace

PyCallable::PyCallable(py::object fn) : holder_(std::make_shared<Holder>(std::move(fn))) {}

PyCallable::Holder::~Holder() {
  if (!fn || interpreter_finalizing()) {
    fn.release();
    return;
  }
  AttachedScope attach;
  fn = py::object();
}

void PyCallable::operator()() const {
  holder_->fn();
}

void PyCallable::release() const noexcept {
  holder_->fn = py::object();
}

void PythonDispatcher::dispatch(const reactor::DispatchInfo& /*info*/,
                                reactor::EventCallback callback) {
  reactor::ExclusiveGate::Pass pass(gate_);
  if (!pass.entered()) {
    // A thread runs Python alone (begin_exclusive): wait detached, since it may need us to be.
    if (attached()) {
      ReleasedGil release;
      pass.wait_open();
    } else {
      pass.wait_open();
    }
  }
  if (!attached() && thread_slot().saved == nullptr) {
    // A worker between events, the usual case: the transaction driver attaches the worker's
    // thread state for the Python code only, not also around the engine's begin and commit
    // (one attach and detach per event instead of four).
    WorkerThreadState& worker = worker_thread_state();
    worker.present_as(loop_thread_.ptr());
    PyThreadState* state = worker.state();
    std::unique_lock<std::mutex> serial;
    if constexpr (!kFreeThreaded) serial = std::unique_lock(serial_);
    WorkerSpanScope span;
    run_irrevocable_detached(callback, state);
    return;
  }
  AttachedScope attach;
  std::unique_lock<std::mutex> serial;
  if constexpr (!kFreeThreaded) {
    ReleasedGil release;
    serial = std::unique_lock(serial_);
  }
  WorkerSpanScope span;  // the report's timeline, while the conflict log is on
  // Python callbacks are ordinary, irrevocable code (DESIGN.md section 4): they run in parallel
  // until their first shared managed access, become inevitable there, and are never rerun.
  run_irrevocable(callback);
}

namespace {

void call_reporting(const PyCallable& callable) {
  try {
    callable();
  } catch (py::error_already_set& error) {
    if (error.matches(abort_exception())) throw;  // the runtime's own signal: never swallowed
    error.discard_as_unraisable(py::reinterpret_borrow<py::object>(callable.get()));
  }
}

}  // namespace

reactor::Callback python_callback(py::object fn) {
  return [callable = PyCallable(std::move(fn))](stm::Transaction& /*tx*/) {
    call_reporting(callable);
  };
}

reactor::Callback python_callback_once(py::object fn) {
  return [callable = PyCallable(std::move(fn))](stm::Transaction& /*tx*/) {
    // An abort signal propagates with the reference kept: the reactor's own path drops it.
    call_reporting(callable);
    callable.release();
  };
}

void run_ready_callable(void* runner, void*& item, stm::Transaction& /*tx*/) {
  auto* fn = static_cast<PyObject*>(item);
  PyObject* result = runner == nullptr
                         ? PyObject_CallNoArgs(fn)
                         : PyObject_Vectorcall(static_cast<PyObject*>(runner), &fn, 1, nullptr);
  if (result != nullptr) {
    Py_DECREF(result);
  } else if (abort_pending()) {
    // The runtime's own signal: it propagates with the reference kept, for the rerun.
    throw py::error_already_set();
  } else {
    PyErr_WriteUnraisable(fn);
  }
  item = nullptr;
  Py_DECREF(fn);
}

void drop_ready_callable(void* item) noexcept {
  safe_decref(static_cast<PyObject*>(item));
}

}  // namespace tmr::bindings
