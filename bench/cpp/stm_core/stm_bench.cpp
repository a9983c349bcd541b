// Single-thread access costs (compare with TinySTM, docs/DESIGN.md section 8: ~5-6 ticks per
// load, ~10 per store, ~90 ns for 100 loads + 20 stores with commit) and bank throughput at 1 and
// 2 threads.

#include <benchmark/benchmark.h>

#include <memory>
#include <mutex>
#include <random>
#include <vector>

#include "stm/stm.hpp"

namespace stm = tmr::stm;

namespace {

struct Cells {
  std::vector<std::unique_ptr<stm::TVar<long>>> v;
  explicit Cells(int n) {
    for (int i = 0; i < n; ++i) v.push_back(std::make_unique<stm::TVar<long>>(i));
  }
};

}  // namespace

// Per-access cost: one transaction of range(0) loads; divide by items (reported as items/s).
static void BM_Loads(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  Cells cells(n);
  for (auto _ : state) {
    long sum = stm::atomically([&](stm::Transaction& tx) {
      long s = 0;
      for (auto& c : cells.v) s += c->load(tx);
      return s;
    });
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_Loads)->Arg(1)->Arg(100)->Arg(1000);

static void BM_Stores(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  Cells cells(n);
  for (auto _ : state) {
    stm::atomically([&](stm::Transaction& tx) {
      for (int i = 0; i < n; ++i) cells.v[i]->store(tx, i);
    });
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_Stores)->Arg(1)->Arg(20);

// TinySTM's reference transaction (docs/DESIGN.md section 8): 100 loads and 20 stores, with its
// commit.
static void BM_Tx100Loads20Stores(benchmark::State& state) {
  Cells cells(120);
  for (auto _ : state) {
    stm::atomically([&](stm::Transaction& tx) {
      long s = 0;
      for (int i = 0; i < 100; ++i) s += cells.v[i]->load(tx);
      for (int i = 100; i < 120; ++i) cells.v[i]->store(tx, s + i);
    });
  }
}
BENCHMARK(BM_Tx100Loads20Stores);

static void BM_EmptyTransaction(benchmark::State& state) {
  for (auto _ : state) stm::atomically([](stm::Transaction&) {});
}
BENCHMARK(BM_EmptyTransaction);

// Bank: random transfers between 1024 accounts; items = committed transfers.
static Cells* bank_cells = nullptr;
static void BM_Bank(benchmark::State& state) {
  if (state.thread_index() == 0) bank_cells = new Cells(1024);
  std::mt19937 rng(state.thread_index() + 1);
  // Google Benchmark synchronizes threads at the start of the loop.
  for (auto _ : state) {
    const auto a = static_cast<int>(rng() % 1024), b = static_cast<int>(rng() % 1024);
    stm::atomically([&](stm::Transaction& tx) {
      auto& x = *bank_cells->v[a];
      auto& y = *bank_cells->v[b];
      x.store(tx, x.load(tx) - 1);
      y.store(tx, y.load(tx) + 1);
    });
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    delete bank_cells;
    bank_cells = nullptr;
  }
}
BENCHMARK(BM_Bank)->Threads(1)->Threads(2)->UseRealTime();

// Baseline: the same transfers under one global mutex.
static std::vector<long>* mutex_accounts = nullptr;
static std::mutex bank_mu;
static void BM_BankMutex(benchmark::State& state) {
  if (state.thread_index() == 0) mutex_accounts = new std::vector<long>(1024);
  std::mt19937 rng(state.thread_index() + 1);
  for (auto _ : state) {
    const auto a = static_cast<int>(rng() % 1024), b = static_cast<int>(rng() % 1024);
    std::lock_guard<std::mutex> lock(bank_mu);
    (*mutex_accounts)[a] -= 1;
    (*mutex_accounts)[b] += 1;
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    delete mutex_accounts;
    mutex_accounts = nullptr;
  }
}
BENCHMARK(BM_BankMutex)->Threads(1)->Threads(2)->UseRealTime();
