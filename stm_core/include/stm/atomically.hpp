#pragma once

#include <functional>
#include <type_traits>
#include <utility>

#include "stm/transaction.hpp"

namespace tmr::stm {

/// Runs fn(Transaction&) as a transaction: reruns it on conflict (with backoff), escalates to an
/// inevitable attempt after escalation_threshold() consecutive aborts, and returns its result.
/// Nested calls are flattened into the outer transaction. A user exception escaping fn abandons
/// the attempt (writes discarded, on-abort hooks run) and propagates.
template <class F>
decltype(auto) atomically(F&& fn) {
  using R = std::invoke_result_t<F&, Transaction&>;
  if (Transaction* cur = current_transaction()) return std::invoke(fn, *cur);
  Transaction& tx = detail::this_thread_transaction();
  tx.consecutive_aborts_ = 0;
  for (;;) {
    tx.begin();
    try {
      if constexpr (std::is_void_v<R>) {
        std::invoke(fn, tx);
        tx.commit();
        return;
      } else {
        R result = std::invoke(fn, tx);
        tx.commit();
        return result;
      }
    } catch (const AbortSignal& signal) {
      if (!tx.active()) throw;  // escaped from a commit hook: not ours to handle
      tx.handle_abort(signal.cause);
    } catch (...) {
      tx.abandon();
      throw;
    }
  }
}

/// Commits `tx`, an attempt whose body has run and must never run again (its effects happened
/// outside the engine's control: an irrevocable reactor callback, a `with tm.atomic():` block).
/// The body may have done only what can be replayed: conflict-free operations, recorded by the
/// driver, which `replay(tx)` performs again (it runs once in this attempt, before its commit),
/// and hooks. When the commit aborts, each further attempt runs `replay` only, until one commits;
/// it escalates to an inevitable attempt as atomically() does. Every hook the body registered
/// runs once: its on-commit hooks at the commit that happens (never at an aborted attempt's),
/// its on-abort hooks only if an exception abandons the transaction (Transaction::keep_body_hooks).
template <class Replay>
void commit_once(Transaction& tx, Replay&& replay) {
  tx.keep_body_hooks();
  for (;;) {
    try {
      std::invoke(replay, tx);
      tx.commit();
      return;
    } catch (const AbortSignal& signal) {
      if (!tx.active()) {
        throw;  // escaped from a commit hook: not ours to handle
      }
      tx.handle_abort(signal.cause);
    } catch (...) {
      tx.abandon();
      throw;
    }
    tx.begin();
  }
}

/// An irrevocable transaction: `body(tx)` runs until it completes without an abort (an abort in
/// the body, which only stale reads at the point of becoming inevitable can cause, reruns it;
/// injected aborts wait for the commit), then commit_once(tx, replay) commits it without running
/// the body again. Nested calls are flattened into the outer transaction.
template <class Body, class Replay>
void run_once(Body&& body, Replay&& replay) {
  if (Transaction* cur = current_transaction()) {
    std::invoke(body, *cur);
    return;
  }
  Transaction& tx = detail::this_thread_transaction();
  tx.consecutive_aborts_ = 0;
  for (;;) {
    tx.begin();
    tx.defer_injection_to_commit();
    try {
      std::invoke(body, tx);
      break;
    } catch (const AbortSignal& signal) {
      tx.handle_abort(signal.cause);
    } catch (...) {
      tx.abandon();
      throw;
    }
  }
  commit_once(tx, std::forward<Replay>(replay));
}

template <class F1, class F2>
decltype(auto) Transaction::or_else(F1&& first, F2&& second) {
  using R = std::invoke_result_t<F1&, Transaction&>;
  const Checkpoint cp{writes_.size(),      merges_.size(), commit_hooks_.size(),
                      abort_hooks_.size(), drafts_.size(), undo_.size()};
  ++or_else_depth_;
  try {
    if constexpr (std::is_void_v<R>) {
      std::invoke(first, *this);
      --or_else_depth_;
      return;
    } else {
      R result = std::invoke(first, *this);
      --or_else_depth_;
      return result;
    }
  } catch (const AbortSignal& signal) {
    --or_else_depth_;
    if (signal.cause != AbortCause::retry) throw;
    rollback_to(cp);
  }
  return std::invoke(second, *this);
}

}  // namespace tmr::stm
