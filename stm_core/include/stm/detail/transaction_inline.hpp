#pragma once

// Inline fast paths of Transaction::load/store (TinySTM style: a small public API over inline
// fast paths). Everything uncommon (own writes, inevitability, injection, locked or too-new
// cells) goes to the out-of-line slow paths in src/transaction.cpp.

#include "stm/transaction.hpp"

namespace tmr::stm {
namespace detail {
inline constexpr std::size_t write_index_threshold = 32;
inline std::uint64_t bloom_bit(const void* p) noexcept {
  return std::uint64_t{1} << ((reinterpret_cast<std::uintptr_t>(p) >> 4) & 63);
}
}  // namespace detail

inline void* Transaction::load(Cell& cell) {
  const bool slow =
      inevitable_ || inject_countdown_ >= 0 || (bloom_ & detail::bloom_bit(&cell)) != 0;
  if (!slow) {
    // Optimistic read: the value is consistent when the lock word is the same, unlocked, and no
    // newer than the snapshot before and after reading it.
    const std::uint64_t l1 = cell.lock_.load(std::memory_order_acquire);
    void* v = cell.value_.load(std::memory_order_acquire);
    const std::uint64_t l2 = cell.lock_.load(std::memory_order_acquire);
    if (l1 == l2 && (l1 & 1) == 0 && (l1 >> 1) <= rv_) {
      reads_.push_back(ReadEntry{&cell, l1 >> 1});
      return v;
    }
  }
  return load_slow(cell);
}

inline void Transaction::store(Cell& cell, void* payload) {
  const std::uint64_t bit = detail::bloom_bit(&cell);
  if (!inevitable_ && inject_countdown_ < 0 && (bloom_ & bit) == 0 && cell.release_ == nullptr &&
      writes_.size() < detail::write_index_threshold) {
    writes_.push_back(WriteEntry{&cell, payload, site_.load(std::memory_order_relaxed), 0});
    bloom_ |= bit;
    return;
  }
  store_slow(cell, payload);
}

inline void* Cell::load(Transaction& tx) {
  return tx.load(*this);
}
inline void Cell::store(Transaction& tx, void* payload) {
  tx.store(*this, payload);
}

}  // namespace tmr::stm
