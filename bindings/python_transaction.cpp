// The Python transaction drivers: thread-state discipline, the abort signal at the boundary,
// irrevocable mode (inevitable at the first shared access, deferred conflict-free ops replayed).
//
// Why the drivers detach around stm::atomically(): begin() may block (escalation takes the
// inevitable token), commit() may block (the on-commit hook turnstile, an inevitable committer
// waiting for locks), handle_abort() blocks (retry, backoff behind the inevitable transaction).
// Blocking with the thread state attached deadlocks a GIL build (the holder of what we wait for
// needs the GIL) and a free-threaded build's stop-the-world. So the driver detaches, and the body
// lambda re-attaches only for the Python code it runs.

#include "python_transaction.hpp"

#include <frameobject.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "tx_state.hpp"

namespace tmr::bindings {

// ---- ownership and thread states -------------------------------------------------------------

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
  return !Py_IsFinalizing();
#else
  return !_Py_IsFinalizing();
#endif
}

void safe_decref(PyObject* o) noexcept {
  if (attached()) {
    Py_DECREF(o);
    return;
  }
  ThreadStateSlot& slot = thread_slot();
  if (slot.saved != nullptr) {
    slot.pending.push_back(o);  // drained when the driver re-attaches
    return;
  }
  if (!python_alive()) return;  // the interpreter is gone: leak rather than crash
  PyGILState_STATE g = PyGILState_Ensure();
  Py_DECREF(o);
  PyGILState_Release(g);
}

void drain_pending() noexcept {
  ThreadStateSlot& slot = thread_slot();
  while (!slot.pending.empty()) {
    std::vector<PyObject*> batch;
    batch.swap(slot.pending);
    for (PyObject* o : batch) Py_DECREF(o);  // may run __del__, which may queue more
  }
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
  if (!slot.pending.empty()) drain_pending();
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

// ---- per-thread transaction state -----------------------------------------------------------

TxState& tx_state() noexcept {
  thread_local TxState st;
  return st;
}

std::atomic<bool> g_conflict_log{false};

namespace {

// The tm package's own directory: its frames (tm.Dict's Python methods, the tm.atomic wrapper,
// TransactionQueue's worker loop) are skipped so that a site names the user's line. Set once at
// import; never freed, so readers need no lock.
std::atomic<const std::string*> g_internal_prefix{nullptr};

// "file:line" of the innermost Python frame outside the tm package (the innermost frame when all
// are inside it), or "" when this thread runs no Python frame.
std::string python_site() {
  PyFrameObject* frame = PyEval_GetFrame();  // borrowed
  Py_XINCREF(frame);
  const std::string* skip = g_internal_prefix.load(std::memory_order_acquire);
  std::string fallback;
  while (frame != nullptr) {
    PyCodeObject* code = PyFrame_GetCode(frame);
    const char* file = PyUnicode_AsUTF8(code->co_filename);
    if (file == nullptr) {
      PyErr_Clear();
    } else {
      std::string site = std::string(file) + ":" + std::to_string(PyFrame_GetLineNumber(frame));
      if (skip == nullptr || std::strncmp(file, skip->c_str(), skip->size()) != 0) {
        Py_DECREF(code);
        Py_DECREF(frame);
        return site;
      }
      if (fallback.empty()) fallback = std::move(site);
    }
    Py_DECREF(code);
    PyFrameObject* back = PyFrame_GetBack(frame);  // new reference
    Py_DECREF(frame);
    frame = back;
  }
  return fallback;
}

// "file:firstline" where fn (a function, a bound method or a partial of one) is defined, or "".
std::string definition_site(PyObject* fn) {
  py::handle f(fn);
  for (int i = 0; i < 3 && f; ++i) {
    if (py::hasattr(f, "__code__")) {
      py::object code = f.attr("__code__");
      std::string file = py::str(code.attr("co_filename")).cast<std::string>();
      const std::string* skip = g_internal_prefix.load(std::memory_order_acquire);
      if (skip != nullptr && file.compare(0, skip->size(), *skip) == 0) return {};  // tm's own
      return file + ":" + std::to_string(code.attr("co_firstlineno").cast<long>());
    }
    if (py::hasattr(f, "__func__"))
      f = f.attr("__func__");
    else if (py::hasattr(f, "func"))
      f = f.attr("func");  // functools.partial
    else
      break;
  }
  return {};
}

struct SiteTotals {
  std::uint64_t count = 0, ns_held = 0, ns_max = 0;
};
std::mutex g_inev_mu;
std::map<std::tuple<std::string, std::string, std::string>, SiteTotals> g_inev_sites;

// The transaction has ended (committed or abandoned): the token is released.
void settle_inevitable() noexcept {
  TxState& st = tx_state();
  if (!st.inev_noted) return;
  st.inev_noted = false;
  const auto ns = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                 std::chrono::steady_clock::now() - st.inev_since)
                                                 .count());
  try {
    std::lock_guard<std::mutex> lock(g_inev_mu);
    SiteTotals& t = g_inev_sites[{std::move(st.inev_site), std::move(st.inev_cause),
                                  std::move(st.inev_detail)}];
    ++t.count;
    t.ns_held += ns;
    t.ns_max = std::max(t.ns_max, ns);
  } catch (...) {  // out of memory: a diagnostic row is lost, the transaction is not
  }
}

}  // namespace

void tag_site(stm::Transaction& tx) noexcept {
  std::string site = python_site();
  if (!site.empty()) tx.set_site(stm::intern_site(site));
}

void set_internal_prefix(const std::string& prefix) {
  g_internal_prefix.store(new std::string(prefix), std::memory_order_release);  // kept for good
}

void note_inevitable(const char* cause, const std::string& detail, PyObject* fn) {
  if (!g_conflict_log.load(std::memory_order_relaxed)) return;
  TxState& st = tx_state();
  if (st.inev_noted) return;
  st.inev_since = std::chrono::steady_clock::now();
  std::string site;
  if (fn != nullptr) {
    try {
      site = definition_site(fn);
    } catch (py::error_already_set&) {  // an odd callable: name the running line instead
    }
  }
  if (site.empty()) site = python_site();
  st.inev_site = site.empty() ? "(no Python frame)" : std::move(site);
  st.inev_cause = cause;
  st.inev_detail = detail;
  st.inev_noted = true;
}

std::vector<InevitabilitySite> inevitability_sites() {
  std::vector<InevitabilitySite> out;
  {
    std::lock_guard<std::mutex> lock(g_inev_mu);
    for (const auto& [key, t] : g_inev_sites)
      out.push_back(
          {std::get<0>(key), std::get<1>(key), std::get<2>(key), t.count, t.ns_held, t.ns_max});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return std::tie(a.ns_held, a.count) > std::tie(b.ns_held, b.count);
  });
  return out;
}

void reset_inevitability_sites() {
  std::lock_guard<std::mutex> lock(g_inev_mu);
  g_inev_sites.clear();
}

namespace {

// Escalation: the engine began this attempt inevitable (after escalation_threshold() aborts).
void note_escalation(stm::Transaction& tx, PyObject* fn) {
  if (!tx.is_inevitable() || !g_conflict_log.load(std::memory_order_relaxed)) return;
  note_inevitable("escalation", "after " + std::to_string(tx.attempt_aborts()) + " aborts", fn);
}

}  // namespace

namespace {

// Irrevocable and not inevitable: nothing shared was read, so the deferred ops may run now.
void flush_deferred(stm::Transaction& tx, bool keep) {
  TxState& st = tx_state();
  for (DeferredOp& op : st.deferred) op(tx);
  if (!keep) st.deferred.clear();
}

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
  st.own.clear();
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
  ~DepthGuard() { --st.depth; }
};

}  // namespace

void make_inevitable(stm::Transaction& tx, const char* cause, const char* detail) {
  if (tx.is_inevitable()) return;
  {
    Detach d;
    tx.become_inevitable();  // may throw AbortSignal (stale reads): the scope re-attaches first
  }
  note_inevitable(cause, detail);
  TxState& st = tx_state();
  if (st.mode == Mode::irrevocable && !st.body_done) flush_deferred(tx, false);
}

stm::Transaction* enter_access(Access a) {
  stm::Transaction* tx = stm::current_transaction();
  if (tx == nullptr) return nullptr;
  TxState& st = tx_state();
  if (st.doomed) throw stm::AbortSignal{st.doomed_cause};
  if (g_conflict_log.load(std::memory_order_relaxed)) tag_site(*tx);
  if (a != Access::conflict_free && st.mode == Mode::irrevocable && !tx->is_inevitable() &&
      !st.body_done && !(a == Access::read && st.snapshot > 0))
    make_inevitable(*tx, "first_access", a == Access::read ? "read" : "write");
  return tx;
}

void keep_alive_handle(PyObject* self) {
  TxState& st = tx_state();
  if (!st.keep.empty() && st.keep.back().get() == self) return;
  st.keep.push_back(PyRef::borrow(self));
}

void* own_draft(stm::Cell& cell) noexcept {
  TxState& st = tx_state();
  if (!st.driving) return nullptr;
  auto it = st.own.find(&cell);
  return it == st.own.end() ? nullptr : it->second;
}

void* load_cell(stm::Transaction& tx, stm::Cell& cell) {
  TxState& st = tx_state();
  if (st.snapshot > 0) {
    // Unvalidated: the latest committed payload (kept alive by this active transaction: its
    // replacement is retired with a stamp after our start), or our own write.
    if (st.driving) {
      auto it = st.own.find(&cell);
      if (it != st.own.end()) return it->second;
    }
    return cell.unsafe_peek();
  }
  return tx.load(cell);
}

void store_cell(stm::Transaction& tx, stm::Cell& cell, void* payload) {
  tx.store(cell, payload);
  TxState& st = tx_state();
  if (st.driving) st.own[&cell] = payload;
}

namespace {
// How often a main thread blocked in a retry looks at pending signals (Ctrl-C's latency).
constexpr std::chrono::milliseconds kSignalCheckInterval{100};

bool on_main_thread() {
  static const unsigned long main_ident =
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
    Attach a;
    TxState& st = tx_state();
    if (!std::exchange(first, false)) {
      st.begin_attempt();
      note_escalation(tx, site);
    }
    flush_deferred(tx, true);
  };
}

/// The body of an irrevocable transaction: runs it once, turning its Python error into the
/// engine's abort (an abort inside the body: the engine reruns it) or error_already_set.
py::object run_irrevocable_body(stm::Transaction& tx, const std::function<PyObject*()>& body,
                                PyObject* site) {
  TxState& st = tx_state();
  Attach a;
  st.begin_attempt();
  note_escalation(tx, site);
  if (g_conflict_log.load(std::memory_order_relaxed)) tag_site(tx);
  DepthGuard g(st);
  PyObject* r = body();
  if (r == nullptr) throw_body_error();
  py::object out = py::reinterpret_steal<py::object>(r);
  if (st.doomed) throw std::logic_error("tm: an irrevocable transaction was asked to abort");
  st.body_done = true;
  return out;
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
      stm::run_once([&](stm::Transaction& tx) { out = run_irrevocable_body(tx, body, site); },
                    replay_deferred(site));
    } else {
      stm::atomically([&](stm::Transaction& tx) {
        Attach a;
        st.begin_attempt();
        note_escalation(tx, site);
        if (g_conflict_log.load(std::memory_order_relaxed)) tag_site(tx);
        DepthGuard g(st);
        PyObject* r = body();
        if (r == nullptr) throw_body_error();
        out = py::reinterpret_steal<py::object>(r);
        if (st.doomed) throw stm::AbortSignal{st.doomed_cause};  // swallowed by user code
      });
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

void run_irrevocable(const std::function<void(stm::Transaction&)>& callback) {
  run_body(
      [&]() -> PyObject* {
        try {
          callback(*stm::current_transaction());
        } catch (py::error_already_set& error) {
          error.restore();  // as if a Python function had raised it
          return nullptr;
        }
        return Py_NewRef(Py_None);
      },
      nullptr, Mode::irrevocable);
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
