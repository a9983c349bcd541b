#pragma once

// The core of tm.Dict and tm.Set: a transactional hash map of Python objects.
//
// A root cell holds an immutable table of bucket cells; each bucket cell holds an immutable vector
// of entries (copy-on-write; an attempt's own copy is mutated in place). Operations on different
// buckets do not conflict; the size is a commutative counter. A dict keeps insertion order with a
// per-entry sequence number from a transactional counter (so new-key inserts conflict with each
// other, as appends do); a set has none, so blind adds of different keys never conflict.
// Growth (committed size over twice the bucket count) replaces the root once.

#include <Python.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "tx_state.hpp"

namespace tmr::bindings {

class PyMap {
 public:
  struct Entry {
    PyRef key;
    Py_hash_t hash;
    PyRef value;
    std::uint64_t seq;
  };
  using Entries = std::vector<Entry>;

  explicit PyMap(bool ordered, const char* name)
      : root_(new Table(8), &release_table, name),
        size_(0, name),
        next_seq_(nullptr),
        ordered_(ordered) {}

  /// The value for key (a new reference) or an empty PyRef.
  PyRef get(stm::Transaction& tx, PyObject* key, Py_hash_t h) {
    stm::Cell& b = bucket(tx, h);
    const auto* e = static_cast<const Entries*>(load_cell(tx, b));
    const std::ptrdiff_t i = find(e, key, h);
    if (i < 0) return {};
    return (*e)[static_cast<std::size_t>(i)].value;
  }
  /// Inserts or replaces (replace_value=false: keeps an existing entry as it is). True if new.
  bool put(stm::Transaction& tx, PyObject* key, Py_hash_t h, const PyRef& value,
           bool replace_value = true) {
    stm::Cell* b = &bucket(tx, h);
    const auto* cur = static_cast<const Entries*>(own_draft(*b) ? own_draft(*b) : tx.load(*b));
    const std::ptrdiff_t i = find(cur, key, h);
    if (i < 0 && maybe_grow(tx, cur)) b = &bucket(tx, h);
    if (i >= 0) {
      if (!replace_value) return false;
      Entries& e = writable(tx, *b);
      PyRef old = std::move(e[static_cast<std::size_t>(i)].value);
      e[static_cast<std::size_t>(i)].value = value;
      return false;
    }
    std::uint64_t seq = 0;
    if (ordered_) {
      seq = reinterpret_cast<std::uintptr_t>(tx.load(next_seq_));
      tx.store(next_seq_, reinterpret_cast<void*>(static_cast<std::uintptr_t>(seq + 1)));
    }
    writable(tx, *b).push_back(Entry{PyRef::borrow(key), h, value, seq});
    size_.add(tx, 1);
    return true;
  }
  /// Removes key; returns its value (empty if absent).
  PyRef erase(stm::Transaction& tx, PyObject* key, Py_hash_t h) {
    stm::Cell& b = bucket(tx, h);
    const auto* cur = static_cast<const Entries*>(own_draft(b) ? own_draft(b) : tx.load(b));
    const std::ptrdiff_t i = find(cur, key, h);
    if (i < 0) return {};
    Entries& e = writable(tx, b);
    Entry gone = std::move(e[static_cast<std::size_t>(i)]);
    e.erase(e.begin() + i);
    size_.add(tx, -1);
    return gone.value;
  }
  std::int64_t size(stm::Transaction& tx) {
    if (tx_state().snapshot > 0) {
      return static_cast<std::int64_t>(reinterpret_cast<std::uintptr_t>(
          tx.apply_own_merges(size_.cell(), size_.cell().unsafe_peek())));
    }
    return size_.get(tx);
  }
  /// Every entry (reads every bucket), in insertion order for an ordered map.
  std::vector<const Entry*> entries(stm::Transaction& tx) {
    std::vector<const Entry*> out;
    const auto* t = static_cast<const Table*>(load_cell(tx, root_));
    for (const auto& b : t->buckets) {
      if (const auto* e = static_cast<const Entries*>(load_cell(tx, *b))) {
        for (const Entry& x : *e) out.push_back(&x);
      }
    }
    if (ordered_) {
      std::sort(out.begin(), out.end(),
                [](const Entry* a, const Entry* b) { return a->seq < b->seq; });
    }
    return out;
  }
  /// Cyclic GC (gc.hpp): visits the committed keys and values.
  int gc_traverse(visitproc visit, void* arg) const {
    const auto* t = static_cast<const Table*>(root_.unsafe_peek());
    if (t == nullptr) return 0;
    for (const auto& b : t->buckets) {
      if (const auto* e = static_cast<const Entries*>(b->unsafe_peek())) {
        for (const Entry& x : *e) {
          Py_VISIT(x.key.get());
          Py_VISIT(x.value.get());
        }
      }
    }
    return 0;
  }
  /// Cyclic GC: empties an unreachable map without a transaction.
  void gc_clear() {
    const auto* t = static_cast<const Table*>(root_.unsafe_peek());
    if (t == nullptr) return;
    for (const auto& b : t->buckets) b->unsafe_reset(nullptr);
    size_.cell().unsafe_reset(nullptr);
  }
  void clear(stm::Transaction& tx) {
    const auto* t = static_cast<const Table*>(tx.load(root_));
    for (const auto& b : t->buckets) {
      if (const auto* e = static_cast<const Entries*>(tx.load(*b)); e != nullptr && !e->empty()) {
        size_.add(tx, -static_cast<std::int64_t>(e->size()));
        store_cell(tx, *b, new Entries);
      }
    }
  }

 private:
  struct Table {
    std::vector<std::unique_ptr<stm::Cell>> buckets;
    explicit Table(std::size_t n) {
      buckets.reserve(n);
      for (std::size_t i = 0; i < n; ++i)
        buckets.push_back(std::make_unique<stm::Cell>(nullptr, &release_entries));
    }
  };
  static void release_entries(void* p) { delete static_cast<Entries*>(p); }
  static void release_table(void* p) { delete static_cast<Table*>(p); }

  // Compares by identity, then hash, then ==. Python's __eq__ may run arbitrary code (even write
  // this map): the entry's key is held by a new reference and the bound is re-read each step.
  static std::ptrdiff_t find(const Entries* e, PyObject* key, Py_hash_t h) {
    if (e == nullptr) return -1;
    for (std::size_t i = 0; i < e->size(); ++i) {
      const Entry& x = (*e)[i];
      if (x.key.get() == key) return static_cast<std::ptrdiff_t>(i);
      if (x.hash != h) continue;
      PyRef k = x.key;
      const int eq = PyObject_RichCompareBool(k.get(), key, Py_EQ);
      if (eq < 0) throw py::error_already_set();
      if (eq > 0) return static_cast<std::ptrdiff_t>(i);
    }
    return -1;
  }
  stm::Cell& bucket(stm::Transaction& tx, Py_hash_t h) {
    const auto* t = static_cast<const Table*>(load_cell(tx, root_));
    return *t->buckets[static_cast<std::size_t>(h) & (t->buckets.size() - 1)];
  }
  static Entries& writable(stm::Transaction& tx, stm::Cell& b) {
    if (void* own = own_draft(b)) return *static_cast<Entries*>(own);
    const auto* old = static_cast<const Entries*>(tx.load(b));
    auto* copy = old ? new Entries(*old) : new Entries;
    store_cell(tx, b, copy);
    return *copy;
  }
  // Grows when the committed size exceeds twice the buckets (no transactional read of the size,
  // so no conflict with adders), or when the target bucket is crowded with distinct hashes (many
  // inserts inside one transaction, whose size is not committed yet).
  bool maybe_grow(stm::Transaction& tx, const Entries* target) {
    const auto* t = static_cast<const Table*>(tx.load(root_));
    const std::size_t n = t->buckets.size();
    bool crowded = false;
    if (target != nullptr && target->size() >= 8 && n < (std::size_t{1} << 22)) {
      for (const Entry& x : *target)
        if (x.hash != target->front().hash) crowded = true;
    }
    if (!crowded && size_.unsafe_peek() <= static_cast<std::int64_t>(2 * n)) return false;
    auto* bigger = new Table(4 * n);
    const std::size_t mask = 4 * n - 1;
    for (const auto& b : t->buckets) {
      const auto* e = static_cast<const Entries*>(own_draft(*b) ? own_draft(*b) : tx.load(*b));
      if (e == nullptr) continue;
      for (const Entry& x : *e) {
        stm::Cell& nb = *bigger->buckets[static_cast<std::size_t>(x.hash) & mask];
        auto* ne = static_cast<Entries*>(nb.unsafe_peek());
        if (ne == nullptr) {
          ne = new Entries;
          nb.unsafe_reset(ne);  // private until the root store commits
        }
        ne->push_back(x);
      }
    }
    store_cell(tx, root_, bigger);
    return true;
  }

  stm::Cell root_;  // payload: Table*, replaced only by growth
  stm::Counter size_;
  stm::Cell next_seq_;  // payload: the next insertion sequence number (a plain word)
  const bool ordered_;
};

/// hash(key), raising TypeError for unhashable keys.
inline Py_hash_t hash_of(PyObject* key) {
  const Py_hash_t h = PyObject_Hash(key);
  if (h == -1 && PyErr_Occurred()) throw py::error_already_set();
  return h;
}

}  // namespace tmr::bindings
