#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "stm/stm.hpp"
#include "test_util.hpp"

namespace stm = tmr::stm;

TEST(Hooks, CommitHooksRunOnceAfterCommitInRegistrationOrder) {
  stm::TVar<int> x(0);
  std::vector<int> order;
  stm::atomically([&](stm::Transaction& tx) {
    tx.on_commit([&] {
      EXPECT_EQ(nullptr, stm::current_transaction());
      EXPECT_EQ(1, x.load());  // the commit is visible
      order.push_back(1);
    });
    tx.on_commit([&] { order.push_back(2); });
    x.store(tx, 1);
  });
  EXPECT_EQ((std::vector<int>{1, 2}), order);
}

TEST(Hooks, ReadOnlyTransactionsRunHooksToo) {
  stm::TVar<int> x(3);
  int ran = 0;
  stm::atomically([&](stm::Transaction& tx) {
    tx.on_commit([&] { ++ran; });
    (void)x.load(tx);
  });
  EXPECT_EQ(1, ran);
}

TEST(Hooks, TransactionInsideAHookRunsItsHooksInline) {
  stm::TVar<int> x(0);
  std::vector<int> order;
  stm::atomically([&](stm::Transaction& tx) {
    x.store(tx, 1);
    tx.on_commit([&] {
      order.push_back(1);
      stm::atomically([&](stm::Transaction& inner) {
        x.store(inner, 2);
        inner.on_commit([&] { order.push_back(2); });
      });
      order.push_back(3);
    });
  });
  EXPECT_EQ((std::vector<int>{1, 2, 3}), order);
  EXPECT_EQ(2, x.load());
}

TEST(Hooks, HookExceptionPropagatesAfterAllHooksRan) {
  int ran = 0;
  EXPECT_THROW(stm::atomically([&](stm::Transaction& tx) {
                 tx.on_commit([&] { throw std::runtime_error("hook"); });
                 tx.on_commit([&] { ++ran; });
               }),
               std::runtime_error);
  EXPECT_EQ(1, ran);
  // The turnstile moved on: the next transaction with hooks does not hang.
  stm::atomically([&](stm::Transaction& tx) { tx.on_commit([&] { ++ran; }); });
  EXPECT_EQ(2, ran);
}

// Conflicting transactions' hooks run in their commit order, across threads, exactly once.
TEST(Hooks, OrderedAcrossThreads) {
  stm::TVar<long> seq(0);
  std::mutex mu;
  std::vector<long> log;
  const int ops = scaled(5000);
  std::vector<std::thread> pool;
  pool.reserve(2);
  for (int t = 0; t < 2; ++t) {
    pool.emplace_back([&] {
      for (int i = 0; i < ops; ++i) {
        stm::atomically([&](stm::Transaction& tx) {
          const long s = seq.load(tx);
          seq.store(tx, s + 1);
          tx.on_commit([&, s] {
            std::lock_guard<std::mutex> lock(mu);
            log.push_back(s);
          });
        });
      }
    });
  }
  for (auto& th : pool) th.join();
  ASSERT_EQ(static_cast<std::size_t>(2 * ops), log.size());
  for (std::size_t i = 0; i < log.size(); ++i) ASSERT_EQ(static_cast<long>(i), log[i]);
}
