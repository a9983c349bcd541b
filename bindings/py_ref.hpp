#pragma once

// Python object ownership across the engine's threads and thread-state transitions.
//
// The engine releases payloads (retired values, aborted drafts, discarded merges) from commit,
// abort and reclamation paths that the bindings run with the thread state *detached* (they can
// block). Releasing a PyObject needs an attached thread state, so every release goes through
// safe_decref(): immediate when attached, queued on the thread and drained when the driver
// re-attaches, or (a thread with no saved state, e.g. a C++ worker) through PyGILState.

#include <Python.h>

#include <utility>
#include <vector>

namespace tmr::bindings {

/// Per-thread thread-state bookkeeping of the bindings.
struct ThreadStateSlot {
  // The thread state this thread detached while inside a bindings driver, or nullptr. Invariant:
  // non-null exactly while the thread is detached by a Detach scope (owner thread only).
  PyThreadState* saved = nullptr;
  // References whose release was requested while detached; drained on re-attach.
  std::vector<PyObject*> pending;
};
ThreadStateSlot& thread_slot() noexcept;

/// True when this thread's Python thread state is attached.
bool attached() noexcept;
/// False once the interpreter has finalized: releases then leak instead of crashing.
bool python_alive() noexcept;

/// Releases one reference from any thread and any thread-state condition.
void safe_decref(PyObject* o) noexcept;
/// Releases one reference without ever waiting: at once when attached, otherwise queued (on this
/// thread while a driver has detached it, else process-wide) until the end of a Python event or a
/// drain_pending(). For releases under a lock that a thread holding the GIL may wait for, where
/// safe_decref's PyGILState_Ensure could deadlock.
void release_without_waiting(PyObject* o) noexcept;
/// True when this thread or the process has queued references for drain_pending().
bool releases_queued() noexcept;
/// Releases the queued references: this thread's (needs an attached thread state when there are
/// any) and, when attached, the process-wide ones.
void drain_pending() noexcept;

/// The ReleaseFn of cells whose payload is one owned PyObject reference.
void release_pyobject(void* payload);

/// Detaches the (attached) thread state for a blocking engine call; re-attaches at scope end.
class Detach {
 public:
  Detach() noexcept;
  ~Detach();
  Detach(const Detach&) = delete;
  Detach& operator=(const Detach&) = delete;
};

/// Makes sure the thread state is attached for the scope (no-op when it already is).
class Attach {
 public:
  Attach() noexcept;
  ~Attach();
  Attach(const Attach&) = delete;
  Attach& operator=(const Attach&) = delete;

 private:
  enum class How { none, saved, gilstate } how_;
  PyGILState_STATE gstate_{};
};

/// An owned reference that may be destroyed on any thread (see safe_decref). Copies incref and
/// therefore happen with the thread state attached (the bindings only copy while attached).
class PyRef {
 public:
  PyRef() noexcept = default;
  static PyRef steal(PyObject* o) noexcept {
    PyRef r;
    r.p_ = o;
    return r;
  }
  static PyRef borrow(PyObject* o) noexcept {
    Py_XINCREF(o);
    return steal(o);
  }
  PyRef(const PyRef& o) noexcept : p_(o.p_) { Py_XINCREF(p_); }
  PyRef(PyRef&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  PyRef& operator=(const PyRef& o) noexcept {
    PyRef copy(o);
    std::swap(p_, copy.p_);
    return *this;
  }
  PyRef& operator=(PyRef&& o) noexcept {
    PyRef moved(std::move(o));
    std::swap(p_, moved.p_);
    return *this;
  }
  ~PyRef() {
    if (p_ != nullptr) safe_decref(p_);
  }
  PyObject* get() const noexcept { return p_; }
  PyObject* release() noexcept { return std::exchange(p_, nullptr); }
  /// A new reference for returning to Python.
  PyObject* new_ref() const noexcept {
    Py_XINCREF(p_);
    return p_;
  }
  explicit operator bool() const noexcept { return p_ != nullptr; }

 private:
  PyObject* p_ = nullptr;
};

}  // namespace tmr::bindings
