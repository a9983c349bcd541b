#pragma once

// Internal: the per-thread state of Python transactions and the access protocol every managed
// type follows. Only bindings/*.cpp include this.

#include <Python.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "py_ref.hpp"
#include "python_transaction.hpp"
#include "stm/stm.hpp"

namespace tmr::bindings {

namespace stm = tmr::stm;

/// What an operation does to shared managed state.
enum class Access {
  read,           ///< validated read (forces inevitability in irrevocable mode)
  write,          ///< read-modify-write or blind write (forces inevitability in irrevocable mode)
  conflict_free,  ///< commutative merge (Counter.add, Log.append, blind Set.add): deferred, never
                  ///< forces inevitability
};

/// A buffered operation of an irrevocable transaction that is not inevitable yet. It is blind (it
/// reads nothing the block could have observed), so it can be replayed on a fresh attempt.
using DeferredOp = std::function<void(stm::Transaction&)>;

struct TxState {
  // All fields: owner thread only.
  Mode mode = Mode::restartable;
  int depth = 0;         // nesting of Python-level transactions (flattened)
  bool driving = false;  // a bindings driver started the running transaction (own_ is valid)
  bool doomed = false;   // the abort signal was raised in this attempt (maybe swallowed)
  stm::AbortCause doomed_cause = stm::AbortCause::read_write;
  int snapshot = 0;        // > 0: reads are snapshot reads (never validated)
  bool body_done = false;  // irrevocable: the Python body ran; later attempts replay `deferred`
  // Payloads this attempt stored, by cell: private drafts that may be mutated in place.
  std::unordered_map<stm::Cell*, void*> own;
  std::vector<DeferredOp> deferred;
  // Managed objects this transaction accessed: its read, write and merge sets point into them, so
  // they live until it ends (cleared by the driver at the end of the transaction).
  std::vector<PyRef> keep;
  // Conflict log on: where and why this transaction became inevitable and since when (see
  // note_inevitable; folded into the inevitability sites when the transaction ends).
  bool inev_noted = false;
  std::string inev_site, inev_cause, inev_detail;
  std::chrono::steady_clock::time_point inev_since;
  // A timed wait's deadline (retry_waiting), kept across the reruns it causes so that a rerun
  // does not restart the timeout; cleared when the transaction ends.
  std::optional<std::chrono::steady_clock::time_point> wait_deadline;

  void begin_attempt() noexcept {
    doomed = false;
    // clear() writes every bucket, and the table keeps the buckets of its largest transaction:
    // most attempts stored nothing.
    if (!own.empty()) own.clear();
  }
};
TxState& tx_state() noexcept;

/// The Python class of the internal abort signal (derives from BaseException).
PyObject* abort_exception() noexcept;
/// Marks the attempt doomed and raises the Python abort signal (returns nullptr-style: sets the
/// error indicator).
void raise_abort(stm::AbortCause cause) noexcept;
/// True if the pending Python error is the abort signal (the error indicator is left as it is).
bool abort_pending() noexcept;

/// The running transaction prepared for an access of kind `a`, or nullptr when none runs. In an
/// irrevocable transaction a read or write first makes it inevitable (flushing deferred ops).
/// Raises the abort signal again (as stm::AbortSignal) if the attempt is already doomed.
stm::Transaction* enter_access(Access a);

/// Makes the running transaction inevitable (detached while waiting for the token) and flushes
/// the deferred ops of an irrevocable transaction. `cause` and `detail` name why, for the
/// inevitability sites of the conflict log ("first_access", "io", "explicit").
void make_inevitable(stm::Transaction& tx, const char* cause, const char* detail = "");

/// Runs the deferred conflict-free operations of an irrevocable transaction in `tx` (they are
/// replayed on every attempt of its commit); keep=false forgets them afterwards (the transaction
/// has turned inevitable and will not abort).
void flush_deferred(stm::Transaction& tx, bool keep);

/// The transaction of this thread has ended: folds the time it held the inevitable token into its
/// inevitability site (conflict log on).
void settle_inevitable() noexcept;

/// Runs f(tx) as a small restartable transaction of its own (no transaction is running).
void run_small(const std::function<void(stm::Transaction&)>& f);

/// The deadline of a wait of `timeout` seconds (none: no deadline) from now, or, when this
/// transaction is being rerun by such a wait, the deadline its first attempt set. A negative
/// timeout is queue.Queue's ValueError.
std::optional<std::chrono::steady_clock::time_point> timed_wait_deadline(
    std::optional<double> timeout);

/// Aborts the running restartable attempt with retry: it reruns once a value it read changed,
/// or at `deadline`. A signal handler that raises (Ctrl-C's KeyboardInterrupt) ends the wait
/// with its exception: it runs here, and the main thread waits in slices so that it gets to.
[[noreturn]] void retry_waiting(
    stm::Transaction& tx,
    std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt);

/// f(tx) in the running transaction (prepared for `a`) or as a small transaction of its own.
template <class F>
void transact(Access a, F&& f) {
  if (stm::Transaction* tx = enter_access(a)) {
    f(*tx);
    return;
  }
  run_small([&](stm::Transaction& tx) { f(tx); });
}

/// Keeps the Python object of a managed C++ object alive until the running transaction ends.
void keep_alive_handle(PyObject* self);
template <class T>
void keep_alive(const T* self) {
  if (stm::current_transaction() == nullptr) return;  // a small transaction ends within the call
  py::handle h = py::detail::get_object_handle(self, py::detail::get_type_info(typeid(T)));
  if (h) keep_alive_handle(h.ptr());
}

/// transact() for a method of a managed C++ object.
template <class T, class F>
void transact(const T* self, Access a, F&& f) {
  keep_alive(self);
  transact(a, std::forward<F>(f));
}

/// Irrevocable and not yet inevitable: conflict-free ops must be deferred (see DeferredOp).
inline bool must_defer(stm::Transaction& tx) noexcept {
  const TxState& st = tx_state();
  return st.mode == Mode::irrevocable && !tx.is_inevitable() && !st.body_done;
}

/// Reads a cell for the current access: a snapshot read (unvalidated, never forcing
/// inevitability) inside tm.snapshot(), otherwise a transactional load.
void* load_cell(stm::Transaction& tx, stm::Cell& cell);
/// Stores a payload (one reference handed to the cell) and records it as this attempt's draft.
void store_cell(stm::Transaction& tx, stm::Cell& cell, void* payload);
/// The cell's payload if it is this attempt's own private draft (mutable in place), else nullptr.
void* own_draft(stm::Cell& cell) noexcept;

/// Conflict log: when on, accesses tag the transaction with the Python file:line.
extern std::atomic<bool> g_conflict_log;
void tag_site(stm::Transaction& tx) noexcept;

/// Conflict log on: records that the running transaction just became inevitable, at the Python
/// file:line running now (or, given `fn`, where fn is defined), for `cause`. Once per transaction.
void note_inevitable(const char* cause, const std::string& detail, PyObject* fn = nullptr);
/// One row per (site, cause, detail): how often and how long transactions held the token.
struct InevitabilitySite {
  std::string site, cause, detail;
  std::uint64_t count = 0, ns_held = 0, ns_max = 0;
};
std::vector<InevitabilitySite> inevitability_sites();
void reset_inevitability_sites();
/// Frames whose file name starts with `prefix` (the tm package) are skipped when a site is named.
void set_internal_prefix(const std::string& prefix);

}  // namespace tmr::bindings
