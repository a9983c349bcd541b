#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "stm/stm.hpp"
#include "test_util.hpp"

namespace stm = tmr::stm;

TEST(Counter, ConcurrentAddsNeverConflictAndSumExactly) {
  stm::reset_stats();
  stm::Counter c(0, "counter");
  const int per = scaled(20000);
  std::vector<std::thread> pool;
  pool.reserve(2);
  for (int t = 0; t < 2; ++t) {
    pool.emplace_back([&] {
      for (int i = 0; i < per; ++i) stm::atomically([&](stm::Transaction& tx) { c.add(tx, 2); });
    });
  }
  for (auto& th : pool) th.join();
  EXPECT_EQ(4L * per, c.get());
  const auto s = stm::total_stats();
  EXPECT_EQ(0u,
            s.aborts_of(stm::AbortCause::read_write) + s.aborts_of(stm::AbortCause::write_write));
}

TEST(Counter, GetSeesOwnPendingAdds) {
  stm::Counter c(5);
  stm::atomically([&](stm::Transaction& tx) {
    c.add(tx, 3);
    EXPECT_EQ(8, c.get(tx));
  });
  EXPECT_EQ(8, c.get());
}

TEST(Log, AppendsNeverConflictAndAllArrive) {
  stm::reset_stats();
  stm::Log<std::string> log;
  const int per = scaled(5000);
  std::vector<std::thread> pool;
  pool.reserve(2);
  for (int t = 0; t < 2; ++t) {
    pool.emplace_back([&, t] {
      for (int i = 0; i < per; ++i) {
        stm::atomically([&](stm::Transaction& tx) {
          log.append(tx, std::to_string(t) + ":" + std::to_string(i));
        });
      }
    });
  }
  for (auto& th : pool) th.join();
  const auto s = stm::total_stats();
  EXPECT_EQ(0u,
            s.aborts_of(stm::AbortCause::read_write) + s.aborts_of(stm::AbortCause::write_write));
  std::vector<int> next(2, 0);
  stm::atomically([&](stm::Transaction& tx) {
    ASSERT_EQ(static_cast<std::uint64_t>(2 * per), log.size(tx));
    std::fill(next.begin(), next.end(), 0);
    for (std::uint64_t i = 0; i < log.size(tx); ++i) {
      const std::string& item = log.at(tx, i);
      const int t = item[0] - '0';
      EXPECT_EQ(std::to_string(t) + ":" + std::to_string(next[t]), item);  // per-thread order
      ++next[t];
    }
  });
}

TEST(Queue, FifoAcrossThreads) {
  stm::Queue<int> q;
  const int n = scaled(5000);
  std::atomic<long> sum{0};
  std::thread consumer([&] {
    for (int got = 0; got < n;) {
      auto v = stm::atomically([&](stm::Transaction& tx) {
        auto item = q.get(tx);
        if (!item) tx.retry();
        return *item;
      });
      sum += v;
      ++got;
    }
  });
  for (int i = 0; i < n; ++i) stm::atomically([&](stm::Transaction& tx) { q.put(tx, i); });
  consumer.join();
  EXPECT_EQ(static_cast<long>(n) * (n - 1) / 2, sum.load());
}

TEST(TMap, PutGetEraseGrowAndConcurrentDisjointKeys) {
  stm::TMap<std::string, int> m(4);
  const int per = scaled(3000);
  std::vector<std::thread> pool;
  pool.reserve(2);
  for (int t = 0; t < 2; ++t) {
    pool.emplace_back([&, t] {
      for (int i = 0; i < per; ++i) {
        stm::atomically([&](stm::Transaction& tx) {
          EXPECT_TRUE(m.put(tx, std::to_string(t) + "/" + std::to_string(i), i));
        });
      }
    });
  }
  for (auto& th : pool) th.join();
  stm::atomically([&](stm::Transaction& tx) {
    EXPECT_EQ(2 * per, m.size(tx));
    EXPECT_EQ(per - 1, m.get(tx, "1/" + std::to_string(per - 1)).value());
    EXPECT_FALSE(m.put(tx, "0/0", 100));
    EXPECT_EQ(100, m.get(tx, "0/0").value());
    EXPECT_TRUE(m.erase(tx, "0/1"));
    EXPECT_FALSE(m.erase(tx, "0/1"));
    EXPECT_FALSE(m.contains(tx, "0/1"));
    EXPECT_EQ(static_cast<std::size_t>(2 * per - 1), m.items(tx).size());
  });
  stm::reclaim();
}

TEST(TSet, AddRemoveContains) {
  stm::TSet<int> s;
  stm::atomically([&](stm::Transaction& tx) {
    EXPECT_TRUE(s.add(tx, 1));
    EXPECT_FALSE(s.add(tx, 1));
    EXPECT_TRUE(s.add(tx, 2));
  });
  stm::atomically([&](stm::Transaction& tx) {
    EXPECT_TRUE(s.remove(tx, 1));
    EXPECT_FALSE(s.contains(tx, 1));
    EXPECT_TRUE(s.contains(tx, 2));
    EXPECT_EQ(1, s.size(tx));
  });
}

TEST(TVector, PushGetSetPopAndConcurrentAppends) {
  stm::TVector<long> v;
  const int per = scaled(3000);
  std::vector<std::thread> pool;
  pool.reserve(2);
  for (int t = 0; t < 2; ++t) {
    pool.emplace_back([&] {
      for (int i = 0; i < per; ++i)
        stm::atomically([&](stm::Transaction& tx) { v.push_back(tx, i); });
    });
  }
  for (auto& th : pool) th.join();
  stm::atomically([&](stm::Transaction& tx) {
    ASSERT_EQ(2 * static_cast<std::uint64_t>(per), v.size(tx));
    long sum = 0;
    for (std::uint64_t i = 0; i < v.size(tx); ++i) sum += v.get(tx, i);
    EXPECT_EQ(2L * per * (per - 1) / 2, sum);
    v.set(tx, 0, -5);
    EXPECT_EQ(-5, v.get(tx, 0));
    EXPECT_EQ(per - 1, v.pop_back(tx));
    EXPECT_THROW(v.get(tx, 2 * static_cast<std::uint64_t>(per)), std::out_of_range);
  });
  stm::reclaim();
}
