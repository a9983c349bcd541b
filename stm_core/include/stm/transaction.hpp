#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <unordered_map>
#include <vector>

#include "stm/abort_cause.hpp"
#include "stm/cell.hpp"
#include "stm/detail/runtime.hpp"

namespace tmr::stm {

/// A commutative update applied at commit on the latest committed payload: returns the new payload
/// (the old one is retired if it differs and the cell has a ReleaseFn). Never conflicts.
using MergeFn = void* (*)(void* current, std::uintptr_t arg);
/// Called on `arg` of a merge whose attempt aborted (to free what arg owns); may be null.
using MergeDiscardFn = void (*)(std::uintptr_t arg);

/// One attempt's context (reused by the thread across attempts). Never copied. Obtain it from
/// atomically() or current_transaction(); the reactor drives it through begin()/commit().
class Transaction {
 public:
  Transaction() = default;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();

  /// Runs once, after the commit is visible, in commit order, only if the attempt commits.
  void on_commit(std::function<void()> hook);
  /// Runs once if this attempt aborts (or is abandoned by an exception).
  void on_abort(std::function<void()> hook);
  /// Validates the reads so far, then takes the single inevitable token (blocking, without
  /// spinning, while another holds it). May abort (read_write) if validation fails; never aborts
  /// because of a conflict afterwards.
  void become_inevitable();
  bool is_inevitable() const noexcept { return inevitable_; }
  /// For an attempt whose body must not run again (an irrevocable driver, see run_once()): when
  /// abort injection (config.hpp) chose this attempt, the injected abort happens at its commit,
  /// where a commit-time conflict would, never inside the body. The inevitable one is never chosen.
  void defer_injection_to_commit() noexcept {
    if (inject_countdown_ >= 0) {
      inject_countdown_ = INT64_MAX;
    }
  }
  /// Aborts this attempt; atomically() reruns it.
  [[noreturn]] void abort(AbortCause cause = AbortCause::explicit_abort);
  /// Aborts and blocks until a cell this attempt read has changed, then reruns (STM Haskell retry).
  [[noreturn]] void retry();
  /// retry() that stops waiting at `deadline`: the attempt then reruns although nothing it read
  /// changed, so that the body can check the clock and give up (a blocking get with a timeout).
  [[noreturn]] void retry_until(std::chrono::steady_clock::time_point deadline);

  /// Site tag (e.g. "file.py:42", must outlive the process: see intern_site) attributed to the
  /// following accesses in conflict reports.
  void set_site(const char* site) noexcept { site_.store(site, std::memory_order_relaxed); }
  const char* site() const noexcept { return site_.load(std::memory_order_relaxed); }

  /// Buffers a commutative update of `cell` (Counter::add, Log::append, blind Set::add).
  void merge(Cell& cell, MergeFn fn, std::uintptr_t arg, MergeDiscardFn discard = nullptr);

  /// `value` with this attempt's own pending merges of `cell` applied, in order (for pure merge
  /// functions such as Counter's add).
  void* apply_own_merges(Cell& cell, void* value) const;

  /// The run-once driver (run_once(), commit_once()): every hook registered so far belongs to the
  /// body, which never runs again. They survive the aborts of this and later attempts of the same
  /// transaction, so each on-commit hook runs exactly once at the commit that happens and each
  /// on-abort hook exactly once if the transaction is abandoned; hooks registered after this call
  /// (by the replayed operations) are per attempt, as usual. Ends with the commit or the abandon.
  void keep_body_hooks() noexcept;

  /// Number of attempts of the current atomically() call that aborted so far.
  std::uint32_t attempt_aborts() const noexcept { return consecutive_aborts_; }
  bool active() const noexcept { return active_; }

  // ---- driving API (atomically() and the reactor use it; user code does not) ----
  /// Starts an attempt on this thread (becomes current_transaction()).
  void begin();
  /// Commits (may throw AbortSignal), then runs the on-commit hooks. Leaves the attempt ended.
  void commit();
  /// Ends an aborted attempt: discards writes, runs on-abort hooks, records statistics, then
  /// (for retry) blocks until a read cell changed and otherwise backs off. Never throws except
  /// from user abort hooks.
  void handle_abort(AbortCause cause);
  /// Ends the attempt because a user exception escapes: discards writes, runs on-abort hooks.
  void abandon();

  // Hot paths (inline, in detail/transaction_inline.hpp).
  void* load(Cell& cell);
  void store(Cell& cell, void* payload);

  /// or_else support: run `first`; if it calls retry(), undo its effects and run `second`.
  template <class F1, class F2>
  decltype(auto) or_else(F1&& first, F2&& second);

 private:
  struct ReadEntry {
    Cell* cell;
    std::uint64_t version;
  };
  struct WriteEntry {
    Cell* cell;
    void* value;
    const char* site;
    std::uint64_t old_lock;  // lock word before this transaction locked it (commit only)
  };
  struct MergeEntry {
    Cell* cell;
    MergeFn fn;
    std::uintptr_t arg;
    MergeDiscardFn discard;
    std::uint64_t old_lock;
  };
  struct Draft {
    void* payload;
    ReleaseFn release;
  };
  struct UndoEntry {
    std::uint32_t index;
    void* value;
    const char* site;
  };
  struct Checkpoint {
    std::size_t writes, merges, commit_hooks, abort_hooks, drafts, undo;
  };

  void* load_slow(Cell& cell);
  void store_slow(Cell& cell, void* payload);
  void* load_inevitable(Cell& cell);
  WriteEntry* find_write(Cell* cell) noexcept;
  bool extend() noexcept;
  bool validate() noexcept;
  bool validate_entry(const ReadEntry& e) noexcept;
  std::uint64_t own_old_lock(Cell* cell) const noexcept;
  [[noreturn]] void conflict(AbortCause cause, Cell* cell, const char* other_site);
  void maybe_inject();
  void commit_update();
  void release_inevitable() noexcept;
  void unlock_all(std::size_t writes_locked, std::size_t merges_locked) noexcept;
  void write_back(std::uint64_t wv);
  static void run_commit_hooks(std::vector<std::function<void()>>& hooks, std::uint64_t ticket,
                               bool ticketed);
  void finish_attempt() noexcept;
  void release_drafts(bool committed) noexcept;
  static void wait_for_change(const std::vector<ReadEntry>& reads);
  static void wait_for_change_until(const std::vector<ReadEntry>& reads,
                                    std::chrono::steady_clock::time_point deadline);
  static bool any_changed(const std::vector<ReadEntry>& reads) noexcept;
  void backoff(AbortCause cause);
  void record_conflict(AbortCause cause, std::uint64_t ns);
  void rollback_to(const Checkpoint& cp);
  void rebuild_index();

  detail::ThreadRecord* rec_ = nullptr;
  std::uint64_t rv_ = 0;  // read version (snapshot time), extended by extend()
  bool active_ = false;
  bool inevitable_ = false;
  bool escalated_ = false;
  bool want_ticket_ = false;
  std::uint64_t hook_ticket_ = 0;
  std::uint64_t inev_gen_ = 0;
  std::uint64_t start_ns_ = 0;
  std::uint64_t inev_start_ns_ = 0;
  std::uint32_t consecutive_aborts_ = 0;
  std::uint32_t or_else_depth_ = 0;
  // keep_body_hooks(): how many of the first commit and abort hooks survive aborts; -1: none.
  std::ptrdiff_t body_commit_hooks_ = -1;
  std::ptrdiff_t body_abort_hooks_ = -1;
  std::int64_t inject_countdown_ = -1;  // accesses until an injected abort; -1: none
  std::uint64_t rng_ = 0;
  std::uint64_t rng_generation_ = ~0ull;
  std::uint64_t bloom_ = 0;  // bit (cell >> 4) & 63 set for every cell in writes_
  std::vector<ReadEntry> reads_;
  std::vector<WriteEntry> writes_;
  std::vector<MergeEntry> merges_;
  std::vector<Draft> drafts_;
  std::vector<UndoEntry> undo_;
  std::vector<std::function<void()>> commit_hooks_;
  std::vector<std::function<void()>> abort_hooks_;
  std::unordered_map<Cell*, std::uint32_t> windex_;  // cell -> writes_ index once writes_ is large
  std::vector<ReadEntry> retry_reads_;
  std::optional<std::chrono::steady_clock::time_point> retry_deadline_;
  // The access site tag; read by other threads for conflict reports (relaxed, diagnostic).
  std::atomic<const char*> site_{nullptr};
  // Last conflict: cell and the other side's site (owner thread only).
  Cell* conflict_cell_ = nullptr;
  const char* conflict_other_site_ = nullptr;
  const char* conflict_site_ = nullptr;

  template <class F>
  friend decltype(auto) atomically(F&& fn);
  template <class Body, class Replay>
  friend void run_once(Body&& body, Replay&& replay);
};

/// The thread's running transaction, or nullptr.
Transaction* current_transaction() noexcept;

/// Waits until every transaction that was running when quiesce() was called has ended. After a
/// transaction unlinks (privatizes) data, call quiesce() before touching it non-transactionally.
/// Must not be called inside a transaction.
void quiesce();

/// Releases everything this thread retired that no running transaction can reach any more.
void reclaim();

namespace detail {
Transaction& this_thread_transaction() noexcept;
extern thread_local Transaction* tls_current;
}  // namespace detail

inline Transaction* current_transaction() noexcept {
  return detail::tls_current;
}

}  // namespace tmr::stm

#include "stm/detail/transaction_inline.hpp"
