#pragma once

#include <cstdint>

#include "stm/atomically.hpp"
#include "stm/cell.hpp"
#include "stm/transaction.hpp"

namespace tmr::stm {

/// A commutative counter: add() is merged at commit on the latest value, so concurrent adders
/// never conflict with each other. get() is an ordinary transactional read (it conflicts with
/// adders that commit before the reader does), plus the reader's own pending adds.
class Counter {
 public:
  explicit Counter(std::int64_t initial = 0, const char* name = nullptr)
      : cell_(encode(initial), nullptr, name) {}

  void add(Transaction& tx, std::int64_t delta) {
    tx.merge(cell_, &merge_add, static_cast<std::uintptr_t>(delta));
  }
  std::int64_t get(Transaction& tx) { return decode(tx.apply_own_merges(cell_, cell_.load(tx))); }
  void add(std::int64_t delta) {
    atomically([&](Transaction& tx) { add(tx, delta); });
  }
  std::int64_t get() {
    return atomically([&](Transaction& tx) { return get(tx); });
  }
  /// Last committed value without a transaction (approximate under concurrency).
  std::int64_t unsafe_peek() const noexcept { return decode(cell_.unsafe_peek()); }
  Cell& cell() noexcept { return cell_; }

 private:
  static void* encode(std::int64_t v) noexcept {
    return reinterpret_cast<void*>(static_cast<std::uintptr_t>(v));
  }
  static std::int64_t decode(void* w) noexcept {
    return static_cast<std::int64_t>(reinterpret_cast<std::uintptr_t>(w));
  }
  static void* merge_add(void* current, std::uintptr_t delta) {
    return reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(current) + delta);
  }
  Cell cell_;
};

}  // namespace tmr::stm
