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
