#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "stm/stm.hpp"
#include "test_util.hpp"

namespace stm = tmr::stm;

// The inevitable transaction never aborts, at most one exists at a time, and every committed
// transaction's on-commit hook runs exactly once, in commit order (the order of a shared sequence
// counter every transaction increments).
TEST(Irrevocability, NeverAbortsAtMostOneHooksOnceInOrder) {
  stm::TVar<long> seq(0);
  std::vector<std::unique_ptr<stm::TVar<int>>> cells;
  cells.reserve(8);
  for (int i = 0; i < 8; ++i) cells.push_back(std::make_unique<stm::TVar<int>>(0));
  std::atomic<int> holders{0}, max_holders{0}, inevitable_aborts{0}, inevitable_commits{0};
  std::mutex log_mu;
  std::vector<long> log;
  const int ops = scaled(5000);
  stm::set_abort_injection(0.1, 3);
  std::vector<std::thread> pool;
  pool.reserve(3);
  for (int t = 0; t < 3; ++t) {
    pool.emplace_back([&, t] {
      std::mt19937 rng(t + 11);
      for (int i = 0; i < ops; ++i) {
        const bool inevitable = rng() % 10 == 0;
        const auto c = static_cast<int>(rng() % 8);
        stm::atomically([&](stm::Transaction& tx) {
          bool was_inevitable = false;
          if (inevitable) {
            tx.become_inevitable();
            was_inevitable = true;
            const int now = holders.fetch_add(1) + 1;
            int m = max_holders.load();
            while (now > m && !max_holders.compare_exchange_weak(m, now)) {
            }
            tx.on_abort([&] { inevitable_aborts.fetch_add(1); });
          }
          const long s = seq.load(tx);
          seq.store(tx, s + 1);
          cells[c]->store(tx, cells[c]->load(tx) + 1);
          tx.on_commit([&, s] {
            std::lock_guard<std::mutex> lock(log_mu);
            log.push_back(s);
          });
          if (was_inevitable) {
            EXPECT_TRUE(tx.is_inevitable());
            holders.fetch_sub(1);
            inevitable_commits.fetch_add(1);
          }
        });
      }
    });
  }
  for (auto& th : pool) th.join();
  stm::set_abort_injection(0.0);
  EXPECT_EQ(0, inevitable_aborts.load());
  EXPECT_EQ(1, max_holders.load());
  EXPECT_GT(inevitable_commits.load(), 0);
  ASSERT_EQ(static_cast<std::size_t>(3 * ops), log.size());
  for (std::size_t i = 0; i < log.size(); ++i) ASSERT_EQ(static_cast<long>(i), log[i]) << i;
  EXPECT_EQ(3L * ops, seq.load());
}

// A transaction that does not touch the inevitable one's cells keeps committing while it runs.
TEST(Irrevocability, NonConflictingTransactionsKeepRunning) {
  stm::TVar<int> a(0), b(0);
  std::atomic<bool> inside{false}, release{false};
  std::thread holder([&] {
    stm::atomically([&](stm::Transaction& tx) {
      tx.become_inevitable();
      a.store(tx, a.load(tx) + 1);
      inside = true;
      while (!release) std::this_thread::yield();
    });
  });
  while (!inside) std::this_thread::yield();
  for (int i = 0; i < 100; ++i)
    stm::atomically([&](stm::Transaction& tx) { b.store(tx, b.load(tx) + 1); });
  EXPECT_EQ(100, b.load());
  release = true;
  holder.join();
  EXPECT_EQ(1, a.load());
}

// A writer of a cell the inevitable transaction read aborts (cause inevitable) and waits, and the
// inevitable transaction's view stays stable.
TEST(Irrevocability, ConflictingWriterWaitsForTheToken) {
  stm::TVar<int> a(0);
  std::atomic<bool> inside{false}, release{false};
  int seen_before = -1, seen_after = -1;
  std::thread holder([&] {
    stm::atomically([&](stm::Transaction& tx) {
      tx.become_inevitable();
      seen_before = a.load(tx);
      inside = true;
      while (!release) std::this_thread::yield();
      seen_after = a.load(tx);
    });
  });
  while (!inside) std::this_thread::yield();
  std::thread writer([&] { a.store(5); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  release = true;
  holder.join();
  writer.join();
  EXPECT_EQ(seen_before, seen_after);
  EXPECT_EQ(5, a.load());
}
