// The transaction state machine: begin, optimistic reads with timestamp extension (LSA), buffered
// writes, commit-time locking and validation (TL2), commutative merges, hooks and aborts.
// Inevitability lives in inevitable.cpp; reclamation and statistics in runtime.cpp.

#include "stm/transaction.hpp"

#include <algorithm>
#include <exception>
#include <stdexcept>
#include <thread>
#include <unordered_set>
#include <utility>

#include "stm/detail/conflicts.hpp"
#include "stm/detail/cpu.hpp"

namespace tmr::stm {
namespace detail {

thread_local Transaction* tls_current = nullptr;
// True while this thread runs on-commit hooks: a transaction committed from inside a hook runs its
// own hooks inline, at its parent's place in the order (taking a ticket would deadlock).
thread_local bool tls_in_hooks = false;

Transaction& this_thread_transaction() noexcept {
  thread_local Transaction tx;
  return tx;
}

std::uint64_t next_random(std::uint64_t& state) noexcept {  // splitmix64
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace detail

namespace {
constexpr unsigned lock_spins = 64;  // commits hold locks briefly: spin a little before aborting
std::uint64_t self_word(const Transaction* tx) noexcept {
  return reinterpret_cast<std::uintptr_t>(tx) | 1u;
}
}  // namespace

Transaction::~Transaction() = default;

void Transaction::on_commit(std::function<void()> hook) {
  commit_hooks_.push_back(std::move(hook));
}
void Transaction::on_abort(std::function<void()> hook) {
  abort_hooks_.push_back(std::move(hook));
}

void Transaction::keep_body_hooks() noexcept {
  body_commit_hooks_ = static_cast<std::ptrdiff_t>(commit_hooks_.size());
  body_abort_hooks_ = static_cast<std::ptrdiff_t>(abort_hooks_.size());
}

void Transaction::abort(AbortCause cause) {
  if (!active_) throw std::logic_error("tmr::stm::Transaction::abort outside an attempt");
  conflict_cell_ = nullptr;
  throw AbortSignal{cause};
}

void Transaction::retry() {
  abort(AbortCause::retry);
}

void Transaction::retry_until(std::chrono::steady_clock::time_point deadline) {
  if (!active_) throw std::logic_error("tmr::stm::Transaction::retry_until outside an attempt");
  retry_deadline_ = deadline;
  abort(AbortCause::retry);
}

void Transaction::conflict(AbortCause cause, Cell* cell, const char* other_site) {
  conflict_cell_ = cell;
  conflict_other_site_ = other_site;
  conflict_site_ = site_.load(std::memory_order_relaxed);
  throw AbortSignal{cause};
}

void Transaction::begin() {
  using detail::g;
  if (active_) throw std::logic_error("tmr::stm::Transaction::begin while an attempt is active");
  if (rec_ == nullptr) rec_ = &detail::this_thread_record();
  reads_.clear();
  writes_.clear();
  merges_.clear();
  drafts_.clear();
  undo_.clear();
  if (body_commit_hooks_ < 0) {  // otherwise handle_abort() left exactly the body's hooks
    commit_hooks_.clear();
    abort_hooks_.clear();
  }
  if (!windex_.empty()) windex_.clear();
  bloom_ = 0;
  inevitable_ = false;
  escalated_ = false;
  or_else_depth_ = 0;
  conflict_cell_ = nullptr;
  retry_deadline_.reset();
  start_ns_ = detail::now_ns();
  // Announce the snapshot before reading anything (seq_cst: reclaimers scan these slots after
  // their write-back, so either they see us or we see their new payloads).
  const std::uint64_t v = g.clock.load(std::memory_order_acquire);
  rec_->active_since.store(v, std::memory_order_seq_cst);
  rv_ = v;
  active_ = true;
  detail::tls_current = this;

  inject_countdown_ = -1;
  if (const std::uint64_t threshold = g.injection_threshold.load(std::memory_order_relaxed)) {
    const std::uint64_t gen = g.injection_generation.load(std::memory_order_relaxed);
    if (gen != rng_generation_) {
      rng_generation_ = gen;
      std::uint64_t seed = g.injection_seed.load(std::memory_order_relaxed);
      if (seed == 0) seed = static_cast<std::uint64_t>(start_ns_);
      rng_ = seed ^ (0x9e3779b97f4a7c15ull * (rec_->index + 1));
    }
    if (detail::next_random(rng_) < threshold)
      inject_countdown_ = static_cast<std::int64_t>(detail::next_random(rng_) % 8);
  }
  if (consecutive_aborts_ >= g.escalation_threshold.load(std::memory_order_relaxed)) {
    escalated_ = true;
    detail::bump(rec_->stats.escalations);
    become_inevitable();  // empty read set: cannot fail
  }
}

void Transaction::maybe_inject() {
  if (inject_countdown_ >= 0 && inject_countdown_-- == 0) {
    inject_countdown_ = -1;
    abort(AbortCause::injected);
  }
}

Transaction::WriteEntry* Transaction::find_write(Cell* cell) noexcept {
  if (!windex_.empty()) {
    auto it = windex_.find(cell);
    return it == windex_.end() ? nullptr : &writes_[it->second];
  }
  const auto it = std::find_if(writes_.rbegin(), writes_.rend(),
                               [cell](const WriteEntry& w) { return w.cell == cell; });
  return it == writes_.rend() ? nullptr : &*it;
}

void Transaction::rebuild_index() {
  windex_.clear();
  bloom_ = 0;
  for (const WriteEntry& w : writes_) bloom_ |= detail::bloom_bit(w.cell);
  if (writes_.size() >= detail::write_index_threshold)
    for (std::uint32_t i = 0; i < writes_.size(); ++i) windex_[writes_[i].cell] = i;
}

void* Transaction::load_slow(Cell& cell) {
  if (!active_) throw std::logic_error("tmr::stm: load outside an attempt");
  maybe_inject();
  if (bloom_ & detail::bloom_bit(&cell))
    if (WriteEntry* w = find_write(&cell)) return w->value;
  if (inevitable_) return load_inevitable(cell);
  for (unsigned spins = 0;;) {
    const std::uint64_t l1 = cell.lock_.load(std::memory_order_acquire);
    if (l1 & 1) {
      if (++spins < lock_spins) {
        detail::cpu_relax();
        continue;
      }
      conflict(AbortCause::read_write, &cell, cell.writer_site_.load(std::memory_order_relaxed));
    }
    void* v = cell.value_.load(std::memory_order_acquire);
    const std::uint64_t l2 = cell.lock_.load(std::memory_order_acquire);
    if (l1 != l2) continue;
    if ((l1 >> 1) > rv_) {
      // Newer than our snapshot: extend the snapshot if everything read so far is unchanged
      // (LSA), then read again at the new snapshot.
      if (!extend())
        conflict(AbortCause::read_write, &cell, cell.writer_site_.load(std::memory_order_relaxed));
      continue;
    }
    reads_.push_back(ReadEntry{&cell, l1 >> 1});
    return v;
  }
}

void Transaction::store_slow(Cell& cell, void* payload) {
  if (!active_) throw std::logic_error("tmr::stm: store outside an attempt");
  if (cell.release_ != nullptr) drafts_.push_back(Draft{payload, cell.release_});
  maybe_inject();
  const char* site = site_.load(std::memory_order_relaxed);
  if (bloom_ & detail::bloom_bit(&cell)) {
    if (WriteEntry* w = find_write(&cell)) {
      if (or_else_depth_ > 0) {
        undo_.push_back(
            UndoEntry{static_cast<std::uint32_t>(w - writes_.data()), w->value, w->site});
      }
      w->value = payload;
      w->site = site;
      return;
    }
  }
  writes_.push_back(WriteEntry{&cell, payload, site, 0});
  bloom_ |= detail::bloom_bit(&cell);
  if (writes_.size() == detail::write_index_threshold) {
    rebuild_index();
  } else if (writes_.size() > detail::write_index_threshold) {
    windex_[&cell] = static_cast<std::uint32_t>(writes_.size() - 1);
  }
}

void Transaction::merge(Cell& cell, MergeFn fn, std::uintptr_t arg, MergeDiscardFn discard) {
  if (!active_) throw std::logic_error("tmr::stm: merge outside an attempt");
  merges_.push_back(MergeEntry{&cell, fn, arg, discard, ~0ull});
  maybe_inject();
}

void* Transaction::apply_own_merges(Cell& cell, void* value) const {
  for (const MergeEntry& m : merges_)
    if (m.cell == &cell) value = m.fn(value, m.arg);
  return value;
}

std::uint64_t Transaction::own_old_lock(Cell* cell) const noexcept {
  for (const WriteEntry& w : writes_)
    if (w.cell == cell) return w.old_lock;
  for (const MergeEntry& m : merges_)
    if (m.cell == cell && m.old_lock != ~0ull) return m.old_lock;
  return 1;  // not ours after all: treat as a conflict
}

bool Transaction::validate_entry(const ReadEntry& e) noexcept {
  std::uint64_t l = e.cell->lock_.load(std::memory_order_acquire);
  if (l & 1) {
    if (l != self_word(this)) return false;
    l = own_old_lock(e.cell);
    if (l & 1) return false;
  }
  return (l >> 1) == e.version;
}

bool Transaction::validate() noexcept {
  for (const ReadEntry& e : reads_) {  // NOLINT(readability-use-anyofallof): notes the cell
    if (!validate_entry(e)) {
      conflict_cell_ = e.cell;
      return false;
    }
  }
  return true;
}

bool Transaction::extend() noexcept {
  const std::uint64_t now = detail::g.clock.load(std::memory_order_acquire);
  if (!validate()) return false;
  rv_ = now;
  return true;
}

void Transaction::unlock_all(std::size_t writes_locked, std::size_t merges_locked) noexcept {
  for (std::size_t i = 0; i < writes_locked; ++i)
    writes_[i].cell->lock_.store(writes_[i].old_lock, std::memory_order_release);
  for (std::size_t i = 0; i < merges_locked; ++i) {
    if (merges_[i].old_lock != ~0ull)
      merges_[i].cell->lock_.store(merges_[i].old_lock, std::memory_order_release);
  }
}

void Transaction::commit_update() {
  using detail::g;
  const std::uint64_t self = self_word(this);
  // 1. Lock the write set (try-lock: a committer never waits for a write lock while holding
  // others, so there is no deadlock; the inevitable transaction waits, see below).
  for (std::size_t i = 0; i < writes_.size(); ++i) {
    Cell* c = writes_[i].cell;
    std::uint64_t l = c->lock_.load(std::memory_order_relaxed);
    for (unsigned spins = 0;;) {
      if (l & 1) {
        if (inevitable_ || ++spins < lock_spins) {
          inevitable_ ? std::this_thread::yield() : detail::cpu_relax();
          l = c->lock_.load(std::memory_order_relaxed);
          continue;
        }
        unlock_all(i, 0);
        conflict(AbortCause::write_write, c, c->writer_site_.load(std::memory_order_relaxed));
      }
      if (c->lock_.compare_exchange_weak(l, self, std::memory_order_seq_cst)) break;
    }
    writes_[i].old_lock = l;
  }
  // 2. Lock merge cells in address order, waiting: merges never conflict, and the order makes
  // waiting deadlock-free (no one waits for a write lock while holding a merge lock).
  if (!merges_.empty()) {
    std::stable_sort(merges_.begin(), merges_.end(),
                     [](const MergeEntry& a, const MergeEntry& b) { return a.cell < b.cell; });
    for (MergeEntry& m : merges_) {
      Cell* c = m.cell;
      std::uint64_t l = c->lock_.load(std::memory_order_relaxed);
      if (l == self) continue;  // written by us, or an earlier merge entry locked it
      for (unsigned spins = 0;;) {
        if (l & 1) {
          ++spins < lock_spins ? detail::cpu_relax() : std::this_thread::yield();
          l = c->lock_.load(std::memory_order_relaxed);
          continue;
        }
        if (c->lock_.compare_exchange_weak(l, self, std::memory_order_seq_cst)) break;
      }
      m.old_lock = l;
    }
  }
  // 3. Do not overwrite what the inevitable transaction read (Dekker with load_inevitable: we
  // locked, then look at marks; it marks, then looks at locks).
  if (!inevitable_) {
    const std::uint64_t gen = g.inev_gen.load(std::memory_order_seq_cst);
    if (gen != 0) {
      auto marked = [gen](Cell* c) { return c->inev_mark_.load(std::memory_order_seq_cst) == gen; };
      for (const WriteEntry& w : writes_) {
        if (marked(w.cell)) {
          unlock_all(writes_.size(), merges_.size());
          conflict(AbortCause::inevitable, w.cell, nullptr);
        }
      }
      for (const MergeEntry& m : merges_) {
        if (marked(m.cell)) {
          unlock_all(writes_.size(), merges_.size());
          conflict(AbortCause::inevitable, m.cell, nullptr);
        }
      }
    }
  }
  // 4. Commit version; validate unless nobody committed since our snapshot. The inevitable
  // transaction needs no validation: every cell it read is protected by its mark.
  const std::uint64_t wv = g.clock.fetch_add(1, std::memory_order_acq_rel) + 1;
  if (!inevitable_ && wv != rv_ + 1 && !validate()) {
    unlock_all(writes_.size(), merges_.size());
    conflict(
        AbortCause::read_write, conflict_cell_,
        conflict_cell_ ? conflict_cell_->writer_site_.load(std::memory_order_relaxed) : nullptr);
  }
  // Point of no return.
  write_back(wv);
}

void Transaction::write_back(std::uint64_t wv) {
  auto retire = [&](Cell* c, void* old, void* now) {
    if (c->release_ != nullptr && old != nullptr && old != now)
      rec_->retired.push_back(detail::Retired{old, c->release_, wv});
  };
  for (const WriteEntry& w : writes_) {
    Cell* c = w.cell;
    void* old = c->value_.load(std::memory_order_relaxed);
    c->value_.store(w.value, std::memory_order_release);
    c->writer_site_.store(w.site, std::memory_order_relaxed);
    // A store hands the cell a reference of its own, also when it stores the payload the cell
    // already holds: the cell then holds two, and one of them is retired like a replaced payload.
    if (c->release_ != nullptr && old != nullptr)
      rec_->retired.push_back(detail::Retired{old, c->release_, wv});
  }
  const char* site = site_.load(std::memory_order_relaxed);
  for (const MergeEntry& m : merges_) {
    Cell* c = m.cell;
    void* old = c->value_.load(std::memory_order_relaxed);
    void* now = m.fn(old, m.arg);
    c->value_.store(now, std::memory_order_release);
    c->writer_site_.store(site, std::memory_order_relaxed);
    retire(c, old, now);
  }
  // The hook ticket is taken after the point of no return (a gap would stall the turnstile) and
  // before unlocking (a conflicting later committer locks after our unlock, so its ticket is
  // larger): hook order agrees with the serialization order.
  if (want_ticket_) hook_ticket_ = detail::g.hook_next.fetch_add(1, std::memory_order_acq_rel);
  const std::uint64_t unlocked = wv << 1;
  for (const WriteEntry& w : writes_) w.cell->lock_.store(unlocked, std::memory_order_release);
  for (const MergeEntry& m : merges_)
    if (m.old_lock != ~0ull) m.cell->lock_.store(unlocked, std::memory_order_release);
  // Wake retry() waiters (Dekker with wait_for_change: we unlocked, then look at the count).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (detail::g.retry_waiters.load(std::memory_order_relaxed) > 0) {
    detail::g.commit_seq.fetch_add(1, std::memory_order_release);
    detail::g.commit_seq.notify_all();
    if (detail::g.timed_retry_waiters.load(std::memory_order_relaxed) > 0) {
      // Taking the mutex orders this bump against a waiter's check under it: no lost wake-up.
      { std::lock_guard<std::mutex> lock(detail::g.timed_retry_mutex); }
      detail::g.timed_retry_cv.notify_all();
    }
  }
}

void Transaction::commit() {
  using detail::g;
  if (!active_) throw std::logic_error("tmr::stm::Transaction::commit without an attempt");
  if (inject_countdown_ >= 0) {
    inject_countdown_ = -1;
    abort(AbortCause::injected);
  }
  detail::schedule_noise(rec_->index);
  const bool ticketed = !commit_hooks_.empty() && !detail::tls_in_hooks;
  want_ticket_ = ticketed;
  hook_ticket_ = 0;
  const bool read_only = writes_.empty() && merges_.empty();
  if (!read_only) {
    commit_update();  // may throw AbortSignal before its point of no return; takes the ticket
  } else if (ticketed) {
    hook_ticket_ = g.hook_next.fetch_add(1, std::memory_order_acq_rel);
  }
  const std::uint64_t ticket = hook_ticket_;

  detail::StatCounters& st = rec_->stats;
  detail::bump(st.commits);
  if (read_only) detail::bump(st.read_only_commits);
  if (inevitable_) {
    detail::bump(st.inevitable_commits);
    detail::bump(st.ns_inevitable, detail::now_ns() - inev_start_ns_);
    release_inevitable();
  }
  std::vector<std::function<void()>> hooks;
  hooks.swap(commit_hooks_);
  abort_hooks_.clear();
  body_commit_hooks_ = body_abort_hooks_ = -1;
  std::vector<Draft> drafts;
  if (!drafts_.empty()) {
    // Drafts overwritten before commit were never visible: release them (after the attempt).
    std::unordered_set<void*> published;
    for (const WriteEntry& w : writes_) published.insert(w.value);
    for (const Draft& d : drafts_)
      if (!published.contains(d.payload)) drafts.push_back(d);
  }
  finish_attempt();
  for (const Draft& d : drafts) d.release(d.payload);
  if (ticketed) detail::schedule_noise(rec_->index);
  run_commit_hooks(hooks, ticket, ticketed);
  if (rec_->retired.size() >= 64) detail::try_reclaim(*rec_);
}

void Transaction::run_commit_hooks(std::vector<std::function<void()>>& hooks, std::uint64_t ticket,
                                   bool ticketed) {
  using detail::g;
  if (!ticketed) {  // no hooks, or inline inside a parent's hook
    for (auto& h : hooks) h();
    return;
  }
  // Wait for our turn without burning a core: a short spin, then a futex wait.
  for (unsigned spins = 0;;) {
    const std::uint64_t turn = g.hook_turn.load(std::memory_order_acquire);
    if (turn == ticket) break;
    if (++spins < lock_spins) {
      detail::cpu_relax();
      continue;
    }
    g.hook_turn.wait(turn, std::memory_order_acquire);
  }
  // Every hook runs even if one throws; the first exception propagates after the turn passes on.
  std::exception_ptr first_error;
  detail::tls_in_hooks = true;
  for (auto& h : hooks) {
    try {
      h();
    } catch (...) {
      if (!first_error) first_error = std::current_exception();
    }
  }
  detail::tls_in_hooks = false;
  g.hook_turn.store(ticket + 1, std::memory_order_release);
  g.hook_turn.notify_all();
  if (first_error) std::rethrow_exception(first_error);
}

void Transaction::finish_attempt() noexcept {
  active_ = false;
  detail::tls_current = nullptr;
  rec_->active_since.store(detail::idle_epoch, std::memory_order_release);
}

void Transaction::handle_abort(AbortCause cause) {
  if (!active_) throw std::logic_error("tmr::stm::Transaction::handle_abort without an attempt");
  const std::uint64_t ns = detail::now_ns() - start_ns_;
  detail::StatCounters& st = rec_->stats;
  if (inevitable_) {
    detail::bump(st.ns_inevitable, detail::now_ns() - inev_start_ns_);
    release_inevitable();
  }
  detail::bump(st.aborts[static_cast<std::size_t>(cause)]);
  detail::bump(st.ns_aborted, ns);
  if (cause == AbortCause::read_write || cause == AbortCause::write_write ||
      cause == AbortCause::inevitable)
    record_conflict(cause, ns);
  for (const MergeEntry& m : merges_)
    if (m.discard) m.discard(m.arg);
  std::vector<Draft> drafts;
  drafts.swap(drafts_);
  std::vector<std::function<void()>> hooks;
  if (body_commit_hooks_ >= 0) {
    // A run-once body's hooks stay for the next attempt; only the replay's own are dropped.
    commit_hooks_.resize(static_cast<std::size_t>(body_commit_hooks_));
    hooks.assign(std::make_move_iterator(abort_hooks_.begin() + body_abort_hooks_),
                 std::make_move_iterator(abort_hooks_.end()));
    abort_hooks_.resize(static_cast<std::size_t>(body_abort_hooks_));
  } else {
    hooks.swap(abort_hooks_);
  }
  if (cause == AbortCause::retry) retry_reads_.assign(reads_.begin(), reads_.end());
  finish_attempt();
  if (cause != AbortCause::retry) ++consecutive_aborts_;
  for (const Draft& d : drafts) d.release(d.payload);
  const std::uint32_t saved = consecutive_aborts_;  // hooks may run transactions of their own
  for (auto& h : hooks) h();
  if (cause == AbortCause::retry) {
    std::vector<ReadEntry> reads;
    reads.swap(retry_reads_);
    if (const auto deadline = std::exchange(retry_deadline_, std::nullopt)) {
      wait_for_change_until(reads, *deadline);
    } else {
      wait_for_change(reads);
    }
  } else {
    backoff(cause);
  }
  consecutive_aborts_ = saved;
  if (rec_->retired.size() >= 64) detail::try_reclaim(*rec_);
}

void Transaction::abandon() {
  if (!active_) return;
  if (inevitable_) {
    detail::bump(rec_->stats.ns_inevitable, detail::now_ns() - inev_start_ns_);
    release_inevitable();
  }
  for (const MergeEntry& m : merges_)
    if (m.discard) m.discard(m.arg);
  std::vector<Draft> drafts;
  drafts.swap(drafts_);
  std::vector<std::function<void()>> hooks;
  hooks.swap(abort_hooks_);
  commit_hooks_.clear();
  body_commit_hooks_ = body_abort_hooks_ = -1;
  finish_attempt();
  for (const Draft& d : drafts) d.release(d.payload);
  for (auto& h : hooks) h();
}

void Transaction::backoff(AbortCause cause) {
  using detail::g;
  if (cause == AbortCause::inevitable) {
    // We wrote what the inevitable transaction read: block (futex) until it finishes.
    const std::uint64_t gen = g.inev_gen.load(std::memory_order_acquire);
    if (gen != 0) g.inev_gen.wait(gen, std::memory_order_acquire);
    return;
  }
  if (cause == AbortCause::explicit_abort) return;
  const std::uint32_t n = std::min<std::uint32_t>(consecutive_aborts_, 10);
  std::uint64_t spins = detail::next_random(rng_) & ((std::uint64_t{1} << n) - 1);
  spins *= 16;
  if (n >= 5) std::this_thread::yield();
  for (std::uint64_t i = 0; i < spins; ++i) detail::cpu_relax();
}

bool Transaction::any_changed(const std::vector<ReadEntry>& reads) noexcept {
  return std::any_of(reads.begin(), reads.end(), [](const ReadEntry& e) {
    return e.cell->lock_.load(std::memory_order_seq_cst) != (e.version << 1);
  });
}

void Transaction::wait_for_change(const std::vector<ReadEntry>& reads) {
  using detail::g;
  g.retry_waiters.fetch_add(1, std::memory_order_seq_cst);
  for (;;) {
    const std::uint32_t seq = g.commit_seq.load(std::memory_order_seq_cst);
    if (any_changed(reads)) break;
    g.commit_seq.wait(seq, std::memory_order_seq_cst);
    if (reads.empty()) break;
  }
  g.retry_waiters.fetch_sub(1, std::memory_order_seq_cst);
}

void Transaction::wait_for_change_until(const std::vector<ReadEntry>& reads,
                                        std::chrono::steady_clock::time_point deadline) {
  using detail::g;
  g.retry_waiters.fetch_add(1, std::memory_order_seq_cst);
  g.timed_retry_waiters.fetch_add(1, std::memory_order_seq_cst);
  {
    std::unique_lock<std::mutex> lock(g.timed_retry_mutex);
    for (;;) {
      const std::uint32_t seq = g.commit_seq.load(std::memory_order_seq_cst);
      if (any_changed(reads)) break;
      const bool woken = g.timed_retry_cv.wait_until(
          lock, deadline, [&] { return g.commit_seq.load(std::memory_order_seq_cst) != seq; });
      if (!woken || reads.empty()) break;
    }
  }
  g.timed_retry_waiters.fetch_sub(1, std::memory_order_seq_cst);
  g.retry_waiters.fetch_sub(1, std::memory_order_seq_cst);
}

void Transaction::record_conflict(AbortCause cause, std::uint64_t ns) {
  detail::record_conflict(conflict_cell_, conflict_site_, conflict_other_site_, cause, ns);
}

void Transaction::rollback_to(const Checkpoint& cp) {
  for (std::size_t i = undo_.size(); i > cp.undo; --i) {
    const UndoEntry& u = undo_[i - 1];
    if (u.index < cp.writes) {
      writes_[u.index].value = u.value;
      writes_[u.index].site = u.site;
    }
  }
  undo_.resize(cp.undo);
  writes_.resize(cp.writes);
  for (std::size_t i = cp.merges; i < merges_.size(); ++i)
    if (merges_[i].discard) merges_[i].discard(merges_[i].arg);
  merges_.resize(cp.merges);
  commit_hooks_.resize(cp.commit_hooks);
  abort_hooks_.resize(cp.abort_hooks);
  for (std::size_t i = cp.drafts; i < drafts_.size(); ++i) drafts_[i].release(drafts_[i].payload);
  drafts_.resize(cp.drafts);
  rebuild_index();
}

}  // namespace tmr::stm
