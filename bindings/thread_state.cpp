// Thread states around the engine's blocking steps (Detach, Attach) and references dropped by
// threads that may not be attached (safe_decref): the ownership rules of py_ref.hpp.
//
// Why the drivers detach around the engine (python_transaction.cpp): begin() may block
// (escalation takes the inevitable token), commit() may block (the on-commit hook turnstile, an
// inevitable committer waiting for locks), handle_abort() blocks (retry, backoff behind the
// inevitable transaction). Blocking with the thread state attached deadlocks a GIL build (the
// holder of what we wait for needs the GIL) and a free-threaded build's stop-the-world. So the
// driver detaches, and the body re-attaches only for the Python code it runs.

#include <Python.h>

#include <atomic>
#include <mutex>
#include <utility>
#include <vector>

#include "py_ref.hpp"

namespace tmr::bindings {

namespace {
std::atomic<bool> g_alive{true};
void on_python_exit() {
  g_alive.store(false, std::memory_order_release);
}
struct RegisterExit {
  RegisterExit() { Py_AtExit(&on_python_exit); }
};
}  // namespace

ThreadStateSlot& thread_slot() noexcept {
  thread_local ThreadStateSlot slot;
  return slot;
}

bool attached() noexcept {
#if PY_VERSION_HEX >= 0x030D0000
  return PyThreadState_GetUnchecked() != nullptr;
#else
  // Before 3.12 _PyThreadState_UncheckedGet() answers for the GIL holder, whichever thread that
  // is, not for this one: with the GIL, "attached" means "this thread holds the GIL".
  return PyGILState_Check() != 0;
#endif
}

bool python_alive() noexcept {
  static RegisterExit once;
  if (!g_alive.load(std::memory_order_acquire)) return false;
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing() == 0;
#else
  return _Py_IsFinalizing() == 0;
#endif
}

namespace {
// Releases `o` at once when this thread is attached, or queues it on the thread while a driver
// has detached it (drained when the driver re-attaches). False when neither can be done here.
bool released_or_queued_here(PyObject* o) noexcept {
  if (attached()) {
    Py_DECREF(o);
    return true;
  }
  ThreadStateSlot& slot = thread_slot();
  if (slot.saved == nullptr) return false;
  slot.pending.push_back(o);
  return true;
}

// References released by release_without_waiting on a thread with no thread state to queue on
// (a worker flushing a connection between events): the next drain_pending on any thread takes
// them.
std::mutex g_queued_mu;
std::vector<PyObject*> g_queued;  // guarded by g_queued_mu
std::atomic<bool> g_any_queued{false};

void drain_process_wide() noexcept {
  std::vector<PyObject*> batch;
  {
    std::lock_guard lock(g_queued_mu);
    batch.swap(g_queued);
    g_any_queued.store(false, std::memory_order_relaxed);
  }
  for (PyObject* o : batch) Py_DECREF(o);
}
}  // namespace

void safe_decref(PyObject* o) noexcept {
  // Once the interpreter is gone, leak rather than crash.
  if (released_or_queued_here(o) || !python_alive()) return;
  PyGILState_STATE g = PyGILState_Ensure();
  Py_DECREF(o);
  PyGILState_Release(g);
}

void release_without_waiting(PyObject* o) noexcept {
  if (released_or_queued_here(o) || !python_alive()) return;
  std::lock_guard lock(g_queued_mu);
  g_queued.push_back(o);
  g_any_queued.store(true, std::memory_order_relaxed);
}

bool releases_queued() noexcept {
  return !thread_slot().pending.empty() || g_any_queued.load(std::memory_order_relaxed);
}

void drain_pending() noexcept {
  ThreadStateSlot& slot = thread_slot();
  while (!slot.pending.empty()) {
    std::vector<PyObject*> batch;
    batch.swap(slot.pending);
    for (PyObject* o : batch) Py_DECREF(o);  // may run __del__, which may queue more
  }
  // The process-wide queue can fill from another thread at any moment, also after a caller saw
  // nothing queued and went on detached (run_irrevocable_detached's end): only attached here.
  if (g_any_queued.load(std::memory_order_relaxed) && attached()) drain_process_wide();
}

void release_pyobject(void* payload) {
  if (payload != nullptr) safe_decref(static_cast<PyObject*>(payload));
}

Detach::Detach() noexcept {
  thread_slot().saved = PyEval_SaveThread();
}
Detach::~Detach() {
  ThreadStateSlot& slot = thread_slot();
  PyThreadState* ts = std::exchange(slot.saved, nullptr);
  PyEval_RestoreThread(ts);
  if (releases_queued()) drain_pending();
}

Attach::Attach() noexcept {
  if (attached()) {
    how_ = How::none;
    return;
  }
  ThreadStateSlot& slot = thread_slot();
  if (slot.saved != nullptr) {
    PyEval_RestoreThread(std::exchange(slot.saved, nullptr));
    how_ = How::saved;
    return;
  }
  gstate_ = PyGILState_Ensure();
  how_ = How::gilstate;
}
Attach::~Attach() {
  if (how_ == How::saved) {
    ThreadStateSlot& slot = thread_slot();
    if (!slot.pending.empty()) drain_pending();
    slot.saved = PyEval_SaveThread();
  } else if (how_ == How::gilstate) {
    PyGILState_Release(gstate_);
  }
}

}  // namespace tmr::bindings
