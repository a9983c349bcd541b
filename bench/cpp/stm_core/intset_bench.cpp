// Integer-set benchmarks (the classic STM "intset"): 20% updates (10% insert, 10% remove) and 80%
// lookups over keys in [0, 2 * size), initial size `size`, at 1 and 2 threads. Each structure is
// written once over an access policy and instantiated three ways:
//   Stm  - every field a TVar, every operation one atomically() transaction;
//   Mutex - plain fields, every operation under one global std::mutex;
//   Seq  - plain fields, no synchronization (1 thread only).
// Structures: a sorted linked list, a skip list (in place of a red-black tree: see docs/STM.md),
// a hash set with sorted chains in a fixed bucket array, and (STM only) the engine's TSet.
//
// Nodes removed in Stm mode are retired through the engine's deferred reclamation: each node owns
// a Cell whose payload is the node itself and whose ReleaseFn deletes it; the removing transaction
// stores nullptr into that cell, so the node is freed only after every transaction that could
// still read it has ended.
//
// After each run, thread 0 checks the structure (sorted, keys in range, size == initial size +
// net inserts counted by all threads) and reports an error instead of a figure if it is broken.

#include <benchmark/benchmark.h>

#include <climits>
#include <cstdint>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "stm/stm.hpp"

namespace stm = tmr::stm;

namespace {

// ---- access policies ----

struct SeqCtx {};

struct Plain {
  using Ctx = SeqCtx;
  template <class T>
  struct Var {
    T v{};
    T get(Ctx) const { return v; }
    void set(Ctx, T x) { v = x; }
    T peek() const { return v; }
  };
  struct Hook {
    template <class N>
    explicit Hook(N*) {}
  };
  template <class N>
  static void retire(Ctx, N* n) {
    delete n;
  }
  template <class N>
  static void destroy(N* n) {
    delete n;
  }
};

struct Stm {
  using Ctx = stm::Transaction&;
  template <class T>
  struct Var {
    stm::TVar<T> v;
    T get(Ctx tx) const { return v.load(tx); }
    void set(Ctx tx, T x) { v.store(tx, x); }
    T peek() const { return v.unsafe_peek(); }
  };
  // The node's reclamation cell: payload = the node, ReleaseFn deletes it.
  struct Hook {
    stm::Cell cell;
    template <class N>
    explicit Hook(N* n) : cell(n, &release<N>) {}
    template <class N>
    static void release(void* p) {
      delete static_cast<N*>(p);
    }
  };
  template <class N>
  static void retire(Ctx tx, N* n) {
    n->hook.cell.store(tx, nullptr);  // n is released once no transaction can reach it
  }
  // For a node no transaction can reach (never published, or teardown after quiesce()).
  template <class N>
  static void destroy(N* n) {
    n->hook.cell.unsafe_reset(nullptr);  // calls release(n); the cell is not touched after
  }
};

inline std::uint64_t next_random(std::uint64_t& s) {  // xorshift64*
  s ^= s >> 12;
  s ^= s << 25;
  s ^= s >> 27;
  return s * 2685821657736338717ull;
}

thread_local std::uint64_t level_rng = 0x9e3779b97f4a7c15ull;

// ---- a skip list; with MaxLevel == 1 it is the sorted linked list ----

template <class P, int MaxLevel>
class SkipSet {
 public:
  using Ctx = typename P::Ctx;
  struct Node {
    int key;
    int level;
    typename P::template Var<Node*> next[MaxLevel];
    typename P::Hook hook;
    Node(int k, int l) : key(k), level(l), hook(this) {}
  };

  SkipSet() : head_(new Node(INT_MIN, MaxLevel)) {}
  SkipSet(const SkipSet&) = delete;
  SkipSet& operator=(const SkipSet&) = delete;
  ~SkipSet() {
    Node* n = head_;
    while (n != nullptr) {
      Node* next = n->next[0].peek();
      P::destroy(n);
      n = next;
    }
  }

  bool contains(Ctx c, int key) const {
    Node* x = head_;
    for (int l = MaxLevel - 1; l >= 0; --l) {
      Node* n = nullptr;
      while ((n = x->next[l].get(c)) != nullptr && n->key < key) x = n;
      if (n != nullptr && n->key == key) return true;
    }
    return false;
  }

  // `spare`: a node allocated by an earlier (aborted) attempt, reused; set to the node if it was
  // allocated here. The caller frees it if the insert did not happen.
  bool insert(Ctx c, int key, Node*& spare) {
    Node* preds[MaxLevel];
    Node* cand = find(c, key, preds);
    if (cand != nullptr && cand->key == key) return false;
    if (spare == nullptr) spare = new Node(key, random_level());
    Node* node = spare;
    node->key = key;
    for (int l = 0; l < node->level; ++l) {
      node->next[l].set(c, preds[l]->next[l].get(c));
      preds[l]->next[l].set(c, node);
    }
    return true;
  }

  bool remove(Ctx c, int key) {
    Node* preds[MaxLevel];
    Node* cand = find(c, key, preds);
    if (cand == nullptr || cand->key != key) return false;
    for (int l = 0; l < cand->level; ++l) preds[l]->next[l].set(c, cand->next[l].get(c));
    P::retire(c, cand);
    return true;
  }

  // Quiescent check: sorted, in [lo, hi), every level a sub-list of level 0. Returns the size or
  // -1.
  long check(int lo, int hi) const {
    long n = 0;
    int prev = INT_MIN;
    for (Node* x = head_->next[0].peek(); x != nullptr; x = x->next[0].peek(), ++n) {
      if (x->key <= prev || x->key < lo || x->key >= hi) return -1;
      prev = x->key;
    }
    for (int l = 1; l < MaxLevel; ++l) {
      Node* lower = head_->next[0].peek();
      for (Node* x = head_->next[l].peek(); x != nullptr; x = x->next[l].peek()) {
        while (lower != nullptr && lower != x) lower = lower->next[0].peek();
        if (lower == nullptr || x->level <= l) return -1;
      }
    }
    return n;
  }

 private:
  static int random_level() {
    int l = 1;
    if constexpr (MaxLevel > 1) {
      std::uint64_t r = next_random(level_rng);
      while (l < MaxLevel && (r & 1)) {
        ++l;
        r >>= 1;
      }
    }
    return l;
  }
  Node* find(Ctx c, int key, Node** preds) const {
    Node* x = head_;
    Node* n = nullptr;
    for (int l = MaxLevel - 1; l >= 0; --l) {
      while ((n = x->next[l].get(c)) != nullptr && n->key < key) x = n;
      preds[l] = x;
    }
    return n;
  }

  Node* head_;
};

template <class P>
using ListSet = SkipSet<P, 1>;

// A hash set: a fixed power-of-two array of sorted chains (each a ListSet with its own head).
template <class P>
class HashSet {
 public:
  using Ctx = typename P::Ctx;
  using Node = typename ListSet<P>::Node;
  explicit HashSet(int buckets) : mask_(buckets - 1) {
    for (int i = 0; i < buckets; ++i) chains_.push_back(std::make_unique<ListSet<P>>());
  }
  bool contains(Ctx c, int key) const { return chain(key).contains(c, key); }
  bool insert(Ctx c, int key, Node*& spare) { return chain(key).insert(c, key, spare); }
  bool remove(Ctx c, int key) { return chain(key).remove(c, key); }
  long check(int lo, int hi) const {
    long n = 0;
    for (std::size_t i = 0; i < chains_.size(); ++i) {
      long k = chains_[i]->check(lo, hi);
      if (k < 0) return -1;
      n += k;
    }
    return n;
  }

 private:
  ListSet<P>& chain(int key) const { return *chains_[static_cast<unsigned>(key) & mask_]; }
  unsigned mask_;
  std::vector<std::unique_ptr<ListSet<P>>> chains_;
};

// ---- the three ways to run an operation ----

enum class Mode { stm, mutex, seq };
std::mutex global_mu;

template <Mode M, class Set>
struct Ops {
  static constexpr bool transactional = M == Mode::stm;
  using Node = typename Set::Node;
  static bool contains(Set& s, int key) {
    if constexpr (M == Mode::stm) {
      return stm::atomically([&](stm::Transaction& tx) { return s.contains(tx, key); });
    } else if constexpr (M == Mode::mutex) {
      std::lock_guard<std::mutex> lock(global_mu);
      return s.contains(SeqCtx{}, key);
    } else {
      return s.contains(SeqCtx{}, key);
    }
  }
  static bool insert(Set& s, int key) {
    Node* spare = nullptr;
    bool done = false;
    if constexpr (M == Mode::stm) {
      done = stm::atomically([&](stm::Transaction& tx) { return s.insert(tx, key, spare); });
      if (!done && spare != nullptr) Stm::destroy(spare);  // allocated by an aborted attempt
    } else if constexpr (M == Mode::mutex) {
      std::lock_guard<std::mutex> lock(global_mu);
      done = s.insert(SeqCtx{}, key, spare);
    } else {
      done = s.insert(SeqCtx{}, key, spare);
    }
    return done;
  }
  static bool remove(Set& s, int key) {
    if constexpr (M == Mode::stm) {
      return stm::atomically([&](stm::Transaction& tx) { return s.remove(tx, key); });
    } else if constexpr (M == Mode::mutex) {
      std::lock_guard<std::mutex> lock(global_mu);
      return s.remove(SeqCtx{}, key);
    } else {
      return s.remove(SeqCtx{}, key);
    }
  }
  static long check(Set& s, int range) {
    if constexpr (M == Mode::stm) {
      stm::quiesce();
      stm::reclaim();
    }
    return s.check(0, range);
  }
};

// The engine's TSet, STM only, with the same interface.
struct EngineSet {
  using Node = void;
  explicit EngineSet(int buckets) : set(static_cast<std::size_t>(buckets)) {}
  stm::TSet<int> set;
};

struct EngineOps {
  static constexpr bool transactional = true;
  static bool contains(EngineSet& s, int key) {
    return stm::atomically([&](stm::Transaction& tx) { return s.set.contains(tx, key); });
  }
  static bool insert(EngineSet& s, int key) {
    return stm::atomically([&](stm::Transaction& tx) { return s.set.add(tx, key); });
  }
  static bool remove(EngineSet& s, int key) {
    return stm::atomically([&](stm::Transaction& tx) { return s.set.remove(tx, key); });
  }
  static long check(EngineSet& s, int range) {
    return stm::atomically([&](stm::Transaction& tx) -> long {
      auto items = s.set.items(tx);
      for (int k : items)
        if (k < 0 || k >= range) return -1;
      std::vector<char> seen(range, 0);
      for (int k : items)
        if (seen[k]++) return -1;
      if (static_cast<long>(items.size()) != s.set.size(tx)) return -1;
      return static_cast<long>(items.size());
    });
  }
};

// ---- the benchmark driver ----

struct alignas(64) NetSlot {
  long net = 0;
};

template <class Set, class O>
struct Shared {
  static inline Set* set = nullptr;
  static inline NetSlot slots[64];
};

template <class Set, class O, class Make>
void run_intset(benchmark::State& state, Make make) {
  using S = Shared<Set, O>;
  const int size = static_cast<int>(state.range(0));
  const int range = 2 * size;
  if (state.thread_index() == 0) {
    S::set = make(size);
    std::uint64_t r = 12345;
    int n = 0;
    while (n < size)
      if (O::insert(*S::set, static_cast<int>(next_random(r) % range))) ++n;
    for (auto& slot : S::slots) slot.net = 0;
    if constexpr (O::transactional) stm::reset_stats();
  }
  std::uint64_t rng = 0x1234567ull * (state.thread_index() + 1) + 99;
  level_rng = rng ^ 0xabcdefull;
  long& net = S::slots[state.thread_index()].net;
  for (auto _ : state) {
    const std::uint64_t r = next_random(rng);
    const int key = static_cast<int>((r >> 8) % static_cast<std::uint64_t>(range));
    const auto op = static_cast<unsigned>(r % 100);
    if (op < 10) {
      if (O::insert(*S::set, key)) ++net;
    } else if (op < 20) {
      if (O::remove(*S::set, key)) --net;
    } else {
      benchmark::DoNotOptimize(O::contains(*S::set, key));
    }
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    if constexpr (O::transactional) {
      // Aborts per committed operation, over all threads (the engine's statistics).
      const stm::Stats st = stm::total_stats();
      state.counters["aborts_per_op"] =
          st.commits ? static_cast<double>(st.total_aborts()) / static_cast<double>(st.commits)
                     : 0.0;
    }
    long expected = size;
    for (auto& slot : S::slots) expected += slot.net;
    const long got = O::check(*S::set, range);
    if (got != expected) {
      std::cerr << "intset check failed: size " << got << ", expected " << expected << "\n";
      state.SkipWithError("intset structure check failed (unsorted, lost or duplicated keys)");
    }
    delete S::set;
    S::set = nullptr;
  }
}

template <Mode M>
using P = std::conditional_t<M == Mode::stm, Stm, Plain>;

template <Mode M>
void BM_List(benchmark::State& state) {
  using Set = ListSet<P<M>>;
  run_intset<Set, Ops<M, Set>>(state, [](int) { return new Set(); });
}
template <Mode M>
void BM_SkipList(benchmark::State& state) {
  using Set = SkipSet<P<M>, 12>;
  run_intset<Set, Ops<M, Set>>(state, [](int) { return new Set(); });
}
template <Mode M>
void BM_Hash(benchmark::State& state) {
  using Set = HashSet<P<M>>;
  run_intset<Set, Ops<M, Set>>(state, [](int size) { return new Set(size); });
}
void BM_HashEngineTSet(benchmark::State& state) {
  run_intset<EngineSet, EngineOps>(state, [](int size) { return new EngineSet(size); });
}

}  // namespace

BENCHMARK(BM_List<Mode::stm>)->Arg(256)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_List<Mode::mutex>)->Arg(256)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_List<Mode::seq>)->Arg(256)->Threads(1)->UseRealTime();
BENCHMARK(BM_SkipList<Mode::stm>)->Arg(256)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_SkipList<Mode::mutex>)->Arg(256)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_SkipList<Mode::seq>)->Arg(256)->Threads(1)->UseRealTime();
BENCHMARK(BM_Hash<Mode::stm>)->Arg(256)->Arg(4096)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_Hash<Mode::mutex>)->Arg(256)->Arg(4096)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_Hash<Mode::seq>)->Arg(256)->Arg(4096)->Threads(1)->UseRealTime();
BENCHMARK(BM_HashEngineTSet)->Arg(256)->Arg(4096)->Threads(1)->Threads(2)->UseRealTime();
