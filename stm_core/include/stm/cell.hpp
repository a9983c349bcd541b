#pragma once

#include <atomic>
#include <cstdint>

namespace tmr::stm {

class Transaction;

/// Releases a payload that no transaction can reach any more (the bindings pass a Py_DECREF
/// wrapper). Called on a thread that runs transactions, never while a transaction is active on it.
using ReleaseFn = void (*)(void*);

/// A type-erased transactional cell: one word of payload (an opaque pointer or, for TVar<small
/// trivially-copyable T>, the value's bits) guarded by a versioned lock.
///
/// Payload ownership: store() hands one reference to the cell; the payload it replaces is *retired*
/// at commit and released through the cell's ReleaseFn only after every transaction that started
/// before the replacement has ended. A payload stored by an attempt that aborts is released at once
/// (nobody else could have seen it). With a null ReleaseFn payloads are plain words.
class Cell {
 public:
  explicit Cell(void* initial = nullptr, ReleaseFn release = nullptr,
                const char* name = nullptr) noexcept
      : value_(initial), release_(release), name_(name) {}
  /// Releases the current payload immediately: the owner guarantees that no transaction can still
  /// reach the cell (see quiesce() for privatization).
  ~Cell();
  Cell(const Cell&) = delete;
  Cell& operator=(const Cell&) = delete;

  /// The payload as of the transaction's snapshot (or its own buffered write).
  void* load(Transaction& tx);
  /// Buffers a write; takes one reference to `payload`.
  void store(Transaction& tx, void* payload);

  /// The last committed payload, read without a transaction (racy by design: for statistics,
  /// heuristics, and single-threaded setup/teardown).
  void* unsafe_peek() const noexcept { return value_.load(std::memory_order_acquire); }
  /// Replaces the payload without a transaction; only when no transaction can reach the cell.
  void unsafe_reset(void* payload) noexcept;

  const char* name() const noexcept { return name_; }
  void set_name(const char* name) noexcept { name_ = name; }
  ReleaseFn release_fn() const noexcept { return release_; }
  /// The site tag of the last committed writer (nullptr if none was supplied).
  const char* last_writer_site() const noexcept {
    return writer_site_.load(std::memory_order_relaxed);
  }

 private:
  friend class Transaction;
  friend struct CellAccess;

  // Versioned lock. Invariant: even => unlocked and holds (version << 1), the global-clock value of
  // the commit that last wrote value_; odd => (Transaction* | 1), the committing owner, which alone
  // may write value_ until it stores an even word again (release order publishes value_).
  std::atomic<std::uint64_t> lock_{0};
  // The committed payload. Written only by the lock owner; read optimistically between two lock_
  // loads that must be equal and even.
  std::atomic<void*> value_;
  // Generation of the inevitable transaction that read this cell (see inevitable.cpp). A committer
  // that finds it equal to the live generation after locking must not commit. Stale values are
  // harmless because generations never repeat.
  std::atomic<std::uint64_t> inev_mark_{0};
  // Site tag of the last committed writer, for conflict reports. Relaxed: diagnostic only.
  std::atomic<const char*> writer_site_{nullptr};
  ReleaseFn release_;
  const char* name_;
};

}  // namespace tmr::stm
