// The access protocol every managed type follows (tx_state.hpp): an access prepares the running
// transaction (an irrevocable one turns inevitable at its first shared access), and reads and
// writes go through the attempt's own drafts and snapshot reads.

#include "tx_state.hpp"

namespace tmr::bindings {

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

}  // namespace tmr::bindings
