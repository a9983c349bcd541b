#pragma once

#include <cstdint>

namespace tmr::stm {

namespace detail {
struct ThreadRecord;
}

/// Pins the snapshot committed now for a reader outside any transaction, as a transaction's
/// begin() does: no payload committed at construction is reclaimed until the pin is destroyed.
/// For code that reads committed payloads without a transaction (Cell::unsafe_peek) while
/// commits and reclamation go on, such as a garbage collector's traversal of managed objects.
/// On a thread whose transaction is running it does nothing: that transaction pins an older
/// snapshot already. Pins of one thread do not nest.
class SnapshotPin {
 public:
  SnapshotPin() noexcept;
  ~SnapshotPin();
  SnapshotPin(const SnapshotPin&) = delete;
  SnapshotPin& operator=(const SnapshotPin&) = delete;
  SnapshotPin(SnapshotPin&&) = delete;
  SnapshotPin& operator=(SnapshotPin&&) = delete;

 private:
  detail::ThreadRecord* rec_;  // null: the pin does nothing
};

/// Whether this thread retired payloads that reclaim() has not released yet (a cheap check that
/// spares a reclaim() call its scan of the other threads).
bool reclaim_pending() noexcept;

}  // namespace tmr::stm
