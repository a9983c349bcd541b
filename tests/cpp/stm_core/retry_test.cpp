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
