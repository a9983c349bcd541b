// The Python transaction drivers: the abort signal at the boundary, restartable transactions,
// and irrevocable ones (a body that runs once, inevitable at its first shared access, its
// deferred conflict-free operations replayed when its commit aborts: stm::run_once). The drivers
// detach the thread state around every blocking engine step (thread_state.cpp says why).

#include "python_transaction.hpp"

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <utility>

#include "tx_state.hpp"

namespace tmr::bindings {

TxState& tx_state() noexcept {
  thread_local TxState st;
  return st;
}

namespace {

// Escalation: the engine began this attempt inevitable (after escalation_threshold() aborts).
void note_escalation(stm::Transaction& tx, PyObject* fn) {
  if (!tx.is_inevitable() || !g_conflict_log.load(std::memory_order_relaxed)) return;
  note_inevitable("escalation", "after " + std::to_string(tx.attempt_aborts()) + " aborts", fn);
}

}  // namespace

// Irrevocable and not inevitable: nothing shared was read, so the deferred ops may run now.
void flush_deferred(stm::Transaction& tx, bool keep) {
  TxState& st = tx_state();
  for (DeferredOp& op : st.deferred) op(tx);
  if (!keep) st.deferred.clear();
}

namespace {

// Turns the pending Python error of the body into the engine's abort (the signal never leaves the
// runtime) or into error_already_set for a user exception.
[[noreturn]] void throw_body_error() {
  TxState& st = tx_state();
  if (abort_pending()) {
    PyErr_Clear();
    throw stm::AbortSignal{st.doomed_cause};
  }
  throw py::error_already_set();
}

void finish_top_level() {
  TxState& st = tx_state();
  st.depth = 0;
  st.driving = false;
  st.body_done = false;
  st.doomed = false;
  st.snapshot = 0;
  if (!st.own.empty()) st.own.clear();  // see TxState::begin_attempt
  st.deferred.clear();
  st.keep.clear();
  st.wait_deadline.reset();
  settle_inevitable();
  drain_pending();
  if (stm::reclaim_pending()) stm::reclaim();
}

struct DepthGuard {
  TxState& st;
  explicit DepthGuard(TxState& s) : st(s) { ++st.depth; }
  DepthGuard(const DepthGuard&) = delete;
  DepthGuard& operator=(const DepthGuard&) = delete;
  ~DepthGuard() { --st.depth; }
};

}  // namespace

namespace {
// How often a main thread blocked in a retry looks at pending signals (Ctrl-C's latency).
constexpr std::chrono::milliseconds kSignalCheckInterval{100};

bool on_main_thread() {
  static const auto main_ident =
      py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
  return PyThread_get_thread_ident() == main_ident;
}
}  // namespace

std::optional<std::chrono::steady_clock::time_point> timed_wait_deadline(
    std::optional<double> timeout) {
  if (!timeout) return std::nullopt;
  if (*timeout < 0) throw py::value_error("'timeout' must be a non-negative number");
  if (stm::current_transaction() != nullptr && tx_state().wait_deadline)
    return tx_state().wait_deadline;
  return std::chrono::steady_clock::now() +
         std::chrono::duration_cast<std::chrono::steady_clock::duration>(
             std::chrono::duration<double>(*timeout));
}

void retry_waiting(stm::Transaction& tx,
                   std::optional<std::chrono::steady_clock::time_point> deadline) {
  if (deadline) tx_state().wait_deadline = deadline;
  if (PyErr_CheckSignals() < 0) throw py::error_already_set();
  if (on_main_thread()) {
    const auto next_check = std::chrono::steady_clock::now() + kSignalCheckInterval;
    tx.retry_until(deadline ? std::min(*deadline, next_check) : next_check);
  }
  if (deadline) tx.retry_until(*deadline);
  tx.retry();
}

void run_small(const std::function<void(stm::Transaction&)>& f) {
  TxState& st = tx_state();
  const Mode saved_mode = st.mode;
  st.mode = Mode::restartable;
  st.driving = true;
  try {
    Detach d;
    stm::atomically([&](stm::Transaction& tx) {
      Attach a;
      st.begin_attempt();
      note_escalation(tx, nullptr);
      try {
        f(tx);
      } catch (py::error_already_set& e) {
        if (e.matches(abort_exception())) throw stm::AbortSignal{st.doomed_cause};
        throw;
      }
      if (st.doomed) throw stm::AbortSignal{st.doomed_cause};
    });
  } catch (...) {
    st.mode = saved_mode;
    finish_top_level();
    throw;
  }
  st.mode = saved_mode;
  finish_top_level();
}

namespace {

/// The replay of an irrevocable transaction whose commit aborted: a fresh attempt that performs
/// the body's deferred conflict-free operations again (stm::commit_once carries its hooks over).
/// The first call is the body's own attempt, which needs no fresh state.
auto replay_deferred(PyObject* site) {
  return [site, first = true](stm::Transaction& tx) mutable {
    TxState& st = tx_state();
    // The body's own attempt with nothing deferred: nothing to run, no thread state to attach.
    if (first && st.deferred.empty()) {
      first = false;
      return;
    }
    Attach a;
    if (!std::exchange(first, false)) {
      st.begin_attempt();
      note_escalation(tx, site);
    }
    flush_deferred(tx, true);
  };
}

/// One attempt of a Python transaction's body, attached: `*out` gets its result (assigned while
/// attached, since it drops the previous attempt's; with no `out` the result is dropped here). A
/// Python error becomes the engine's abort or error_already_set; an abort signal the body
/// swallowed aborts a restartable attempt and is a logic error in an irrevocable one, which is
/// never asked to abort.
void run_attempt(stm::Transaction& tx, const std::function<PyObject*()>& body, PyObject* site,
                 Mode mode, py::object* out) {
  TxState& st = tx_state();
  Attach a;
  st.begin_attempt();
  note_escalation(tx, site);
  if (g_conflict_log.load(std::memory_order_relaxed)) tag_site(tx);
  DepthGuard g(st);
  PyObject* r = body();
  if (r == nullptr) throw_body_error();
  if (out != nullptr) {
    *out = py::reinterpret_steal<py::object>(r);
  } else {
    Py_DECREF(r);
  }
  if (st.doomed) {
    if (mode == Mode::irrevocable)
      throw std::logic_error("tm: an irrevocable transaction was asked to abort");
    throw stm::AbortSignal{st.doomed_cause};
  }
}

/// run_python_transaction's engine: `body` runs the Python code and returns a new reference, or
/// null with the Python error set. `site` is what an escalation is reported against.
py::object run_body(const std::function<PyObject*()>& body, PyObject* site, Mode mode) {
  TxState& st = tx_state();
  if (stm::current_transaction() != nullptr) {  // flattened into the running transaction
    DepthGuard g(st);
    PyObject* r = body();
    if (r == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(r);
  }
  st.mode = mode;
  st.driving = true;
  st.body_done = false;
  st.deferred.clear();
  py::object out;
  try {
    Detach d;
    if (mode == Mode::irrevocable) {
      // The body runs once; a commit that aborts replays its deferred operations, and the hooks
      // it registered (native writes, timers, posts, Python on-commit hooks) carry over.
      stm::run_once(
          [&](stm::Transaction& tx) {
            run_attempt(tx, body, site, mode, &out);
            st.body_done = true;
          },
          replay_deferred(site));
    } else {
      stm::atomically([&](stm::Transaction& tx) { run_attempt(tx, body, site, mode, &out); });
    }
  } catch (...) {
    finish_top_level();
    throw;
  }
  finish_top_level();
  return out;
}

}  // namespace

py::object run_python_transaction(py::handle fn, py::handle args, py::handle kwargs, Mode mode) {
  PyObject* kw = kwargs.ptr() == Py_None ? nullptr : kwargs.ptr();
  return run_body([&] { return PyObject_Call(fn.ptr(), args.ptr(), kw); }, fn.ptr(), mode);
}

namespace {

/// The body of run_irrevocable: calls the callback in the running transaction.
auto irrevocable_body(const std::function<void(stm::Transaction&)>& callback) {
  return [&callback]() -> PyObject* {
    try {
      callback(*stm::current_transaction());
    } catch (py::error_already_set& error) {
      error.restore();  // as if a Python function had raised it
      return nullptr;
    }
    return Py_NewRef(Py_None);
  };
}

}  // namespace

void run_irrevocable(const std::function<void(stm::Transaction&)>& callback) {
  run_body(irrevocable_body(callback), nullptr, Mode::irrevocable);
}

void run_irrevocable_detached(const std::function<void(stm::Transaction&)>& callback,
                              PyThreadState* state) {
  ThreadStateSlot& slot = thread_slot();
  TxState& st = tx_state();
  // As a Detach scope leaves the thread: Attach scopes restore `state` from the slot, and
  // references dropped while detached queue there. Cleared again on the way out.
  slot.saved = state;
  struct ClearSaved {
    ThreadStateSlot& slot;
    explicit ClearSaved(ThreadStateSlot& s) : slot(s) {}
    ~ClearSaved() { slot.saved = nullptr; }
    ClearSaved(const ClearSaved&) = delete;
    ClearSaved& operator=(const ClearSaved&) = delete;
    ClearSaved(ClearSaved&&) = delete;
    ClearSaved& operator=(ClearSaved&&) = delete;
  } clear{slot};
  st.mode = Mode::irrevocable;
  st.driving = true;
  st.body_done = false;
  const std::function<PyObject*()> body = irrevocable_body(callback);
  try {
    stm::run_once(
        [&](stm::Transaction& tx) {
          run_attempt(tx, body, nullptr, Mode::irrevocable, nullptr);
          st.body_done = true;
        },
        replay_deferred(nullptr));
  } catch (...) {
    Attach a;
    finish_top_level();
    throw;
  }
  // What finish_top_level releases needs the thread state: the objects the transaction kept, its
  // deferred operations, references queued while detached, payloads to reclaim. A callback that
  // touched nothing managed leaves none of them.
  if (st.keep.empty() && st.deferred.empty() && !releases_queued() && !stm::reclaim_pending()) {
    finish_top_level();
  } else {
    Attach a;
    finish_top_level();
  }
}

// ---- the `with tm.atomic():` block: begin and end split across Python frames -----------------

void begin_block() {
  TxState& st = tx_state();
  if (stm::current_transaction() != nullptr) {
    ++st.depth;
    return;
  }
  st.mode = Mode::irrevocable;
  st.driving = true;
  st.body_done = false;
  st.deferred.clear();
  st.depth = 1;
  // The engine counts consecutive aborts per Transaction object and only atomically() resets the
  // count; a stale count would make the block start inevitable. Blocks use a Transaction object
  // of their own, replaced once an abort made its count non-zero.
  thread_local std::unique_ptr<stm::Transaction> block_tx;
  if (!block_tx || block_tx->attempt_aborts() != 0) block_tx = std::make_unique<stm::Transaction>();
  stm::Transaction& tx = *block_tx;
  {
    Detach d;
    tx.begin();  // may still escalate when the threshold is 0 (take the inevitable token)
  }
  tx.defer_injection_to_commit();  // the block is irrevocable: it is never rerun
  st.begin_attempt();
  note_escalation(tx, nullptr);
  if (g_conflict_log.load(std::memory_order_relaxed)) tag_site(tx);
}

/// Ends the block: commits (ok) or abandons. Returns false when the block was nested.
bool end_block(bool ok) {
  TxState& st = tx_state();
  stm::Transaction* tx = stm::current_transaction();
  if (tx == nullptr) throw std::logic_error("tm: atomic block ended outside a transaction");
  if (st.depth > 1) {
    --st.depth;
    return false;
  }
  try {
    Detach d;
    if (!ok || st.mode != Mode::irrevocable) {
      tx->abandon();  // the on-abort hooks run
    } else {
      st.body_done = true;
      stm::commit_once(*tx, replay_deferred(nullptr));
    }
  } catch (...) {
    finish_top_level();
    throw;
  }
  finish_top_level();
  return true;
}

}  // namespace tmr::bindings
