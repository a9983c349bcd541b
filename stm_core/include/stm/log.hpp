#pragma once

#include <atomic>
#include <bit>
#include <cstdint>
#include <optional>
#include <utility>

#include "stm/atomically.hpp"
#include "stm/cell.hpp"
#include "stm/transaction.hpp"
#include "stm/tvar.hpp"

namespace tmr::stm {

/// An append-only log: append() is a commutative merge applied at commit (under the size cell's
/// lock, in commit order), so appenders never conflict with each other. Items are immutable once
/// appended and live until the log is destroyed. Readers read size() transactionally and then any
/// index below it.
template <class T>
class Log {
 public:
  explicit Log(const char* name = nullptr) : size_(nullptr, nullptr, name) {}
  Log(const Log&) = delete;
  Log& operator=(const Log&) = delete;
  ~Log() {
    const auto n = reinterpret_cast<std::uintptr_t>(size_.unsafe_peek());
    for (std::uint64_t i = 0; i < n; ++i) slot(i)->~T();
    for (auto& c : chunks_) ::operator delete(c.load(std::memory_order_relaxed));
  }

  void append(Transaction& tx, T item) {
    tx.merge(size_, &merge_append,
             reinterpret_cast<std::uintptr_t>(new Pending{this, std::move(item)}), &discard);
  }
  void append(T item) {
    atomically([&](Transaction& tx) { append(tx, item); });
  }
  std::uint64_t size(Transaction& tx) { return reinterpret_cast<std::uintptr_t>(size_.load(tx)); }
  /// Item i; precondition: i < size(tx) as read by this transaction.
  const T& at(Transaction&, std::uint64_t i) const { return *slot(i); }

  /// For a cyclic garbage collector, without a transaction: the committed item count and item i
  /// (i < unsafe_size()); items never move, so this is safe beside appenders.
  std::uint64_t unsafe_size() const noexcept {
    return reinterpret_cast<std::uintptr_t>(size_.unsafe_peek());
  }
  const T& unsafe_at(std::uint64_t i) const { return *slot(i); }
  /// Destroys the items and empties the log; only when no transaction can reach it (the chunks
  /// stay allocated for later appends).
  void unsafe_clear() {
    const std::uint64_t n = unsafe_size();
    size_.unsafe_reset(nullptr);  // empty before the destructors run whatever they run
    for (std::uint64_t i = 0; i < n; ++i) slot(i)->~T();
  }

 private:
  struct Pending {
    Log* log;
    T item;
  };
  // Chunk k holds 64 << k items: 40 chunks cover any realistic size without reallocation, so
  // readers never race with a moving array.
  static constexpr int kChunks = 40;
  static std::pair<int, std::uint64_t> locate(std::uint64_t i) noexcept {
    const std::uint64_t j = i / 64 + 1;
    const int k = static_cast<int>(std::bit_width(j)) - 1;
    return {k, i - 64 * ((std::uint64_t{1} << k) - 1)};
  }
  T* slot(std::uint64_t i) const {
    auto [k, off] = locate(i);
    return static_cast<T*>(chunks_[k].load(std::memory_order_acquire)) + off;
  }
  // Runs at commit under the size cell's lock: the only writer of chunks_ and items.
  static void* merge_append(void* current, std::uintptr_t arg) {
    auto* p = reinterpret_cast<Pending*>(arg);
    Log* log = p->log;
    const auto n = reinterpret_cast<std::uintptr_t>(current);
    auto [k, off] = locate(n);
    void* chunk = log->chunks_[k].load(std::memory_order_relaxed);
    if (chunk == nullptr) {
      chunk = ::operator new(sizeof(T) * (std::uint64_t{64} << k));
      log->chunks_[k].store(chunk, std::memory_order_release);
    }
    new (static_cast<T*>(chunk) + off) T(std::move(p->item));
    delete p;
    return reinterpret_cast<void*>(static_cast<std::uintptr_t>(n + 1));
  }
  static void discard(std::uintptr_t arg) { delete reinterpret_cast<Pending*>(arg); }

  Cell size_;  // item count; items [0, size) are constructed and immutable
  // Chunk pointers. Invariant: written once (null -> chunk) under size_'s lock, before the size
  // that makes its items visible is published.
  std::atomic<void*> chunks_[kChunks]{};
};

/// A FIFO queue over a Log: put() never conflicts; get() conflicts only with other getters.
template <class T>
class Queue {
 public:
  explicit Queue(const char* name = nullptr) : log_(name), head_(0) {}
  void put(Transaction& tx, T item) { log_.append(tx, std::move(item)); }
  std::optional<T> get(Transaction& tx) {
    const std::uint64_t h = head_.load(tx);
    if (h >= log_.size(tx)) return std::nullopt;
    head_.store(tx, h + 1);
    return log_.at(tx, h);
  }
  std::uint64_t size(Transaction& tx) { return log_.size(tx) - head_.load(tx); }

  /// The underlying log without a transaction, for a cyclic garbage collector: items already
  /// taken by get() are still owned by the queue until it is destroyed or cleared.
  const Log<T>& unsafe_log() const noexcept { return log_; }
  /// Destroys the items and empties the queue; only when no transaction can reach it.
  void unsafe_clear() {
    head_.cell().unsafe_reset(nullptr);  // head 0 (an inline value: nothing to release)
    log_.unsafe_clear();
  }

 private:
  Log<T> log_;
  TVar<std::uint64_t> head_;
};

}  // namespace tmr::stm
