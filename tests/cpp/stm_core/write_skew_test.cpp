#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "stm/stm.hpp"
#include "test_util.hpp"

namespace stm = tmr::stm;

// Classic write skew: each doctor goes off call only if the other is on call. Snapshot isolation
// would let both go; a serializable STM must keep at least one on call.
TEST(WriteSkew, AtLeastOneStaysOnCall) {
  stm::TVar<int> x(1), y(1);
  std::atomic<int> violations{0};
  const int rounds = scaled(3000);
  std::atomic<int> round{0}, ready{0};
  auto doctor = [&](stm::TVar<int>& mine, stm::TVar<int>& other) {
    for (int r = 0; r < rounds; ++r) {
      while (round.load() < r) std::this_thread::yield();
      stm::atomically([&](stm::Transaction& tx) {
        if (mine.load(tx) + other.load(tx) >= 2) mine.store(tx, 0);
      });
      ready.fetch_add(1);
    }
  };
  std::thread a([&] { doctor(x, y); });
  std::thread b([&] { doctor(y, x); });
  for (int r = 0; r < rounds; ++r) {
    while (ready.load() < 2 * (r + 1)) std::this_thread::yield();
    stm::atomically([&](stm::Transaction& tx) {
      if (x.load(tx) + y.load(tx) < 1) violations.fetch_add(1);
      x.store(tx, 1);
      y.store(tx, 1);
    });
    round.store(r + 1);
  }
  a.join();
  b.join();
  EXPECT_EQ(0, violations.load());
}

// x == y always holds for committed states; every attempt, even a doomed one, must see it.
TEST(WriteSkew, EqualityInvariantHoldsInsideTransactions) {
  stm::TVar<long> x(0), y(0);
  std::atomic<long> violations{0};
  std::atomic<bool> stop{false};
  const int ops = scaled(30000);
  std::thread writer([&] {
    for (int i = 0; i < ops; ++i) {
      stm::atomically([&](stm::Transaction& tx) {
        const long v = x.load(tx) + 1;
        x.store(tx, v);
        y.store(tx, v);
      });
    }
    stop = true;
  });
  std::thread reader([&] {
    while (!stop) {
      stm::atomically([&](stm::Transaction& tx) {
        const long a = x.load(tx);
        const long b = y.load(tx);
        if (a != b) violations.fetch_add(1);
      });
    }
  });
  writer.join();
  reader.join();
  EXPECT_EQ(0, violations.load());
  EXPECT_EQ(ops, x.load());
  EXPECT_EQ(ops, y.load());
}
