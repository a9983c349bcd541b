#pragma once

#include <cstring>
#include <type_traits>
#include <utility>

#include "stm/atomically.hpp"
#include "stm/cell.hpp"
#include "stm/transaction.hpp"

namespace tmr::stm {

/// A typed transactional variable over a Cell. Small trivially-copyable values (<= 8 bytes) live
/// in the cell's word itself; anything else is held by pointer to an immutable heap copy that is
/// retired on replacement and deleted by deferred reclamation.
template <class T>
class TVar {
  // T may itself be a pointer (TVar<Node*>): its size is the one meant.
  static constexpr std::size_t value_size = sizeof(T);  // NOLINT(bugprone-sizeof-expression)
  static constexpr bool inline_value =
      std::is_trivially_copyable_v<T> && value_size <= sizeof(void*);

 public:
  explicit TVar(T initial = T{}, const char* name = nullptr)
      : cell_(encode(std::move(initial)), inline_value ? nullptr : &release, name) {}
  TVar(const TVar&) = delete;
  TVar& operator=(const TVar&) = delete;
  ~TVar() = default;

  T load(Transaction& tx) const { return decode(cell_.load(tx)); }
  void store(Transaction& tx, T value) { cell_.store(tx, encode(std::move(value))); }

  /// In the current transaction, or as a one-access transaction of its own.
  T load() const {
    if (Transaction* tx = current_transaction()) return load(*tx);
    return atomically([this](Transaction& tx) { return load(tx); });
  }
  void store(T value) {
    if (Transaction* tx = current_transaction()) return store(*tx, std::move(value));
    atomically([&](Transaction& tx) { store(tx, value); });
  }

  /// Last committed value, without a transaction (racy for non-inline T unless quiescent).
  T unsafe_peek() const { return decode(cell_.unsafe_peek()); }
  Cell& cell() noexcept { return cell_; }

 private:
  static void* encode(T value) {
    if constexpr (inline_value) {
      std::uintptr_t bits = 0;
      std::memcpy(&bits, &value, value_size);
      return reinterpret_cast<void*>(bits);
    } else {
      return new T(std::move(value));
    }
  }
  static T decode(void* word) {
    if constexpr (inline_value) {
      T value;
      const auto bits = reinterpret_cast<std::uintptr_t>(word);
      std::memcpy(&value, &bits, value_size);
      return value;
    } else {
      return *static_cast<const T*>(word);
    }
  }
  static void release(void* payload) { delete static_cast<T*>(payload); }

  mutable Cell cell_;
};

}  // namespace tmr::stm
