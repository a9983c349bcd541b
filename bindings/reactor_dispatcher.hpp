#pragma once

// How the C++ reactor runs Python: every event becomes one Python transaction on a worker thread
// that holds a thread state of its own for its whole life.

#include <pybind11/pybind11.h>

#include <memory>
#include <mutex>

#include "reactor/dispatcher.hpp"
#include "reactor/exclusive_gate.hpp"
#include "reactor/reactor.hpp"

namespace tmr::bindings {

namespace py = pybind11;

/// A Python callable owned from C++. Copies share it; the last copy drops the reference with a
/// thread state attached, whichever thread (worker, timer, Asio internals) that happens on.
class PyCallable {
 public:
  explicit PyCallable(py::object fn);
  /// Calls it; the caller has a thread state attached. Python exceptions propagate as
  /// py::error_already_set.
  void operator()() const;
  py::handle get() const noexcept { return holder_->fn.ptr(); }
  /// Drops the reference now, for every copy; the caller has a thread state attached.
  void release() const noexcept;

 private:
  struct Holder {
    explicit Holder(py::object f) : fn(std::move(f)) {}
    Holder(const Holder&) = delete;
    Holder& operator=(const Holder&) = delete;
    ~Holder();
    py::object fn;
  };
  std::shared_ptr<Holder> holder_;
};

/// The reactor's Dispatcher for Python programs. Attaches the worker's thread state, and on an
/// interpreter with the GIL serialises Python callbacks (DESIGN.md section 6: interleaving them
/// at the eval loop's switch points would break "same program, same meaning").
class PythonDispatcher final : public reactor::Dispatcher {
 public:
  void dispatch(const reactor::DispatchInfo& info, reactor::EventCallback callback) override;

  /// The thread that called run() (a threading.Thread), which the workers of this run present
  /// themselves as; None between runs. Set by that thread, attached, while no worker runs.
  void set_loop_thread(py::object thread) { loop_thread_ = std::move(thread); }

  /// Every Python callback passes through this gate: a thread that closes it runs Python with no
  /// callback of this reactor running (Reactor.begin_exclusive).
  reactor::ExclusiveGate& gate() noexcept { return gate_; }

 private:
  py::object loop_thread_;
  reactor::ExclusiveGate gate_;
  // Held for the whole of one Python callback on GIL builds; waited for with the GIL released.
  std::mutex serial_;
};

/// Wraps a Python callable as a reactor callback: runs it inside the dispatched transaction and
/// reports an exception that escapes it through sys.unraisablehook (the adapters catch and
/// report user exceptions the way their stock loops do before this point).
reactor::Callback python_callback(py::object fn);

/// As python_callback, for a callable the reactor runs once (Reactor.post): the reference is
/// dropped inside the transaction, right after the call, rather than wherever the reactor lets go
/// of the callback after the commit. asyncio drops a handle it ran before its next callback; the
/// commit can wake another strand, which must not find the finished callable (a task, its
/// exception) still referenced from here.
reactor::Callback python_callback_once(py::object fn);

/// For a reactor::ReadyQueue of Python objects (owned references): calls `item()`, or
/// `runner(item)` with a runner (the queue's context), as python_callback_once's callback calls
/// its callable, and drops the item's reference inside the transaction.
void run_ready_callable(void* runner, void*& item, stm::Transaction& tx);
/// Drops a callable of a reactor::ReadyQueue that will not run, attached or not.
void drop_ready_callable(void* item) noexcept;

}  // namespace tmr::bindings
