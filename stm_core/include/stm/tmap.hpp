#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "stm/atomically.hpp"
#include "stm/cell.hpp"
#include "stm/counter.hpp"
#include "stm/transaction.hpp"

namespace tmr::stm {

/// A transactional hash map: a root cell holds an immutable table of bucket cells; each bucket
/// cell holds an immutable vector of entries (copy-on-write). Transactions on different buckets do
/// not conflict; the size is a commutative Counter, so inserts in different buckets never conflict
/// on it either. Growing the table (when the committed size exceeds twice the bucket count)
/// replaces the root, which conflicts with everyone once. Replaced buckets and tables are retired
/// and freed by deferred reclamation. Hash and Eq run inside transactions: they must be pure.
template <class K, class V, class Hash = std::hash<K>, class Eq = std::equal_to<K>>
class TMap {
  using Entries = std::vector<std::pair<K, V>>;
  struct Table {
    std::vector<std::unique_ptr<Cell>> buckets;
    explicit Table(std::size_t n) {
      buckets.reserve(n);
      for (std::size_t i = 0; i < n; ++i)
        buckets.push_back(std::make_unique<Cell>(nullptr, &release_entries));
    }
  };

 public:
  explicit TMap(std::size_t buckets = 16, const char* name = nullptr)
      : root_(new Table(round_up(buckets)), &release_table, name) {}
  TMap(const TMap&) = delete;
  TMap& operator=(const TMap&) = delete;
  ~TMap() = default;

  std::optional<V> get(Transaction& tx, const K& key) const {
    const Entries* e = bucket_entries(tx, key);
    if (e != nullptr) {
      for (const auto& [k, v] : *e)
        if (eq_(k, key)) return v;
    }
    return std::nullopt;
  }
  bool contains(Transaction& tx, const K& key) const { return get(tx, key).has_value(); }

  /// Inserts or replaces; returns true if the key was new.
  bool put(Transaction& tx, const K& key, V value) {
    maybe_grow(tx);
    Cell& b = bucket(tx, key);
    const auto* old = static_cast<const Entries*>(b.load(tx));
    auto* next = old ? new Entries(*old) : new Entries;
    for (auto& [k, v] : *next) {
      if (eq_(k, key)) {
        v = std::move(value);
        b.store(tx, next);
        return false;
      }
    }
    next->emplace_back(key, std::move(value));
    b.store(tx, next);
    size_.add(tx, 1);
    return true;
  }

  /// Removes the key; returns true if it was present.
  bool erase(Transaction& tx, const K& key) {
    Cell& b = bucket(tx, key);
    const auto* old = static_cast<const Entries*>(b.load(tx));
    if (old == nullptr) return false;
    for (std::size_t i = 0; i < old->size(); ++i) {
      if (eq_((*old)[i].first, key)) {
        auto* next = new Entries(*old);
        next->erase(next->begin() + static_cast<std::ptrdiff_t>(i));
        b.store(tx, next);
        size_.add(tx, -1);
        return true;
      }
    }
    return false;
  }

  std::int64_t size(Transaction& tx) { return size_.get(tx); }

  /// Every entry (reads every bucket: conflicts with any writer).
  std::vector<std::pair<K, V>> items(Transaction& tx) const {
    std::vector<std::pair<K, V>> out;
    auto* t = static_cast<Table*>(root_.load(tx));
    for (auto& b : t->buckets) {
      if (auto* e = static_cast<const Entries*>(b->load(tx)))
        out.insert(out.end(), e->begin(), e->end());
    }
    return out;
  }

  void clear(Transaction& tx) {
    auto* t = static_cast<Table*>(root_.load(tx));
    for (auto& b : t->buckets) {
      if (auto* e = static_cast<const Entries*>(b->load(tx))) {
        size_.add(tx, -static_cast<std::int64_t>(e->size()));
        b->store(tx, nullptr);
      }
    }
  }

 private:
  static std::size_t round_up(std::size_t n) {
    std::size_t p = 1;
    while (p < n) p <<= 1;
    return p;
  }
  static void release_entries(void* p) { delete static_cast<Entries*>(p); }
  static void release_table(void* p) { delete static_cast<Table*>(p); }

  Cell& bucket(Transaction& tx, const K& key) const {
    auto* t = static_cast<Table*>(root_.load(tx));
    return *t->buckets[hash_(key) & (t->buckets.size() - 1)];
  }
  const Entries* bucket_entries(Transaction& tx, const K& key) const {
    return static_cast<const Entries*>(bucket(tx, key).load(tx));
  }
  void maybe_grow(Transaction& tx) {
    auto* t = static_cast<Table*>(root_.load(tx));
    const std::size_t n = t->buckets.size();
    // Heuristic on the committed size: no transactional read, so no conflict with adders.
    if (size_.unsafe_peek() <= static_cast<std::int64_t>(2 * n)) return;
    // Owned here until the root store takes it: a load below may abort the attempt.
    auto bigger = std::make_unique<Table>(2 * n);
    for (auto& b : t->buckets) {
      auto* e = static_cast<const Entries*>(b->load(tx));
      if (e == nullptr) continue;
      for (const auto& kv : *e) {
        Cell& nb = *bigger->buckets[hash_(kv.first) & (2 * n - 1)];
        auto* ne = static_cast<Entries*>(nb.unsafe_peek());
        if (ne == nullptr) {
          ne = new Entries;
          nb.unsafe_reset(ne);  // private until the root store commits
        }
        ne->push_back(kv);
      }
    }
    root_.store(tx, bigger.release());
  }

  mutable Cell root_;  // payload: Table*, replaced only by growth
  Counter size_;
  [[no_unique_address]] Hash hash_;
  [[no_unique_address]] Eq eq_;
};

/// A transactional set over TMap.
template <class K, class Hash = std::hash<K>, class Eq = std::equal_to<K>>
class TSet {
 public:
  explicit TSet(std::size_t buckets = 16, const char* name = nullptr) : map_(buckets, name) {}
  bool add(Transaction& tx, const K& key) { return map_.put(tx, key, true); }
  bool remove(Transaction& tx, const K& key) { return map_.erase(tx, key); }
  bool contains(Transaction& tx, const K& key) const { return map_.contains(tx, key); }
  std::int64_t size(Transaction& tx) { return map_.size(tx); }
  std::vector<K> items(Transaction& tx) const {
    std::vector<K> out;
    for (auto& kv : map_.items(tx)) out.push_back(kv.first);
    return out;
  }

 private:
  TMap<K, bool, Hash, Eq> map_;
};

}  // namespace tmr::stm
