#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "stm/stm.hpp"

namespace stm = tmr::stm;

// retry() blocks (without spinning) until a cell the attempt read changes.
TEST(Retry, BlocksUntilAReadCellChanges) {
  stm::TVar<int> ready(0), value(0);
  int attempts = 0;
  std::thread producer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    stm::atomically([&](stm::Transaction& tx) {
      value.store(tx, 42);
      ready.store(tx, 1);
    });
  });
  const int got = stm::atomically([&](stm::Transaction& tx) {
    ++attempts;
    if (ready.load(tx) == 0) tx.retry();
    return value.load(tx);
  });
  producer.join();
  EXPECT_EQ(42, got);
  EXPECT_LE(attempts, 3);  // woken by the change, not polling
}

TEST(Retry, OrElseRunsTheAlternativeAndUndoesTheFirst) {
  stm::TVar<int> a(0), b(0), log(0);
  const int r = stm::atomically([&](stm::Transaction& tx) {
    log.store(tx, 1);
    return tx.or_else(
        [&](stm::Transaction& t) {
          log.store(t, 2);  // undone when this branch retries
          a.store(t, 7);
          if (b.load(t) == 0) t.retry();
          return 1;
        },
        [&](stm::Transaction& t) {
          b.store(t, 9);
          return 2;
        });
  });
  EXPECT_EQ(2, r);
  EXPECT_EQ(0, a.load());
  EXPECT_EQ(9, b.load());
  EXPECT_EQ(1, log.load());
}

// retry_until() reruns the attempt at the deadline although nothing it read changed, and not
// before: the body sees the clock past the deadline and gives up.
TEST(Retry, RetryUntilRerunsAtTheDeadline) {
  stm::TVar<int> ready(0);
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::milliseconds(40);
  int attempts = 0;
  const bool gave_up = stm::atomically([&](stm::Transaction& tx) {
    ++attempts;
    if (ready.load(tx) != 0) return false;
    if (std::chrono::steady_clock::now() >= deadline) return true;
    tx.retry_until(deadline);
  });
  EXPECT_TRUE(gave_up);
  EXPECT_GE(std::chrono::steady_clock::now(), deadline);
  EXPECT_LE(attempts, 3);  // slept until the deadline, not polling
}

// A change of a read cell wakes a retry_until() waiter long before its deadline.
TEST(Retry, RetryUntilWakesWhenAReadCellChanges) {
  stm::TVar<int> ready(0);
  std::thread producer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ready.store(1);
  });
  const auto start = std::chrono::steady_clock::now();
  const int got = stm::atomically([&](stm::Transaction& tx) {
    const int r = ready.load(tx);
    if (r == 0) tx.retry_until(start + std::chrono::seconds(30));
    return r;
  });
  producer.join();
  EXPECT_EQ(1, got);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}
