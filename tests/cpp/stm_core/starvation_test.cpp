#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "stm/stm.hpp"
#include "test_util.hpp"

namespace stm = tmr::stm;

// One long transaction reading every cell against short writers that keep changing them: it
// aborts, escalates to inevitable after the bounded number of aborts, and then commits.
TEST(Starvation, LongTransactionCommitsAgainstShortWriters) {
  constexpr int n = 256;
  std::vector<std::unique_ptr<stm::TVar<long>>> cells;
  cells.reserve(n);
  for (int i = 0; i < n; ++i) cells.push_back(std::make_unique<stm::TVar<long>>(10));
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  writers.reserve(2);
  for (int w = 0; w < 2; ++w) {
    writers.emplace_back([&, w] {
      std::mt19937 rng(w);
      while (!stop) {
        const auto a = static_cast<int>(rng() % n), b = static_cast<int>(rng() % n);
        stm::atomically([&](stm::Transaction& tx) {
          cells[a]->store(tx, cells[a]->load(tx) - 1);
          cells[b]->store(tx, cells[b]->load(tx) + 1);
        });
      }
    });
  }
  stm::TVar<long> result(0);
  const auto before = stm::thread_stats();
  for (int round = 0; round < 5; ++round) {
    stm::atomically([&](stm::Transaction& tx) {
      long sum = 0;
      for (auto& c : cells) {
        sum += c->load(tx);
        for (volatile int spin = 0; spin < 200; ++spin) {
        }
      }
      result.store(tx, sum);
    });
    EXPECT_EQ(10L * n, result.load());
  }
  stop = true;
  for (auto& w : writers) w.join();
  const auto after = stm::thread_stats();
  EXPECT_EQ(before.commits + 10, after.commits);  // 5 long transactions + 5 result loads
}
