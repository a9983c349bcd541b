#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "stm/stm.hpp"
#include "test_util.hpp"

namespace stm = tmr::stm;

TEST(Atomically, LoadStoreAndReturnValue) {
  stm::TVar<int> x(1);
  int r = stm::atomically([&](stm::Transaction& tx) {
    x.store(tx, x.load(tx) + 41);
    return x.load(tx);  // sees its own buffered write
  });
  EXPECT_EQ(42, r);
  EXPECT_EQ(42, x.load());
  EXPECT_EQ(nullptr, stm::current_transaction());
}

TEST(Atomically, NonInlineValues) {
  stm::TVar<std::string> s("a");
  stm::atomically([&](stm::Transaction& tx) { s.store(tx, s.load(tx) + "b"); });
  s.store(s.load() + "c");
  EXPECT_EQ("abc", s.load());
  stm::reclaim();
}

TEST(Atomically, NestedIsFlattened) {
  stm::TVar<int> x(0);
  stm::atomically([&](stm::Transaction& outer) {
    stm::atomically([&](stm::Transaction& inner) {
      EXPECT_EQ(&outer, &inner);
      x.store(inner, 5);
    });
    EXPECT_EQ(5, x.load(outer));
    EXPECT_EQ(&outer, stm::current_transaction());
  });
  EXPECT_EQ(5, x.load());
}

TEST(Atomically, ExplicitAbortRerunsAndRunsAbortHooks) {
  stm::TVar<int> x(0);
  int attempts = 0, aborted = 0, committed = 0;
  stm::atomically([&](stm::Transaction& tx) {
    tx.on_abort([&] { ++aborted; });
    tx.on_commit([&] { ++committed; });
    x.store(tx, 7);
    if (++attempts < 3) tx.abort();
  });
  EXPECT_EQ(3, attempts);
  EXPECT_EQ(2, aborted);
  EXPECT_EQ(1, committed);
  EXPECT_EQ(7, x.load());
}

TEST(Atomically, UserExceptionDiscardsWritesAndPropagates) {
  stm::TVar<int> x(1);
  bool aborted = false;
  EXPECT_THROW(stm::atomically([&](stm::Transaction& tx) {
                 tx.on_abort([&] { aborted = true; });
                 x.store(tx, 2);
                 throw std::runtime_error("boom");
               }),
               std::runtime_error);
  EXPECT_TRUE(aborted);
  EXPECT_EQ(1, x.load());
}

TEST(Atomically, AbortSignalIsNotAStdException) {
  static_assert(!std::is_base_of_v<std::exception, stm::AbortSignal>);
  stm::TVar<int> x(0);
  int attempts = 0;
  stm::atomically([&](stm::Transaction& tx) {
    try {
      if (++attempts == 1) tx.abort();
    } catch (const std::exception&) {
      ADD_FAILURE() << "swallowed";
    }
    x.store(tx, attempts);
  });
  EXPECT_EQ(2, x.load());
}

TEST(Atomically, ConcurrentIncrementsAreAtomic) {
  stm::TVar<long> counter(0);
  const int per_thread = scaled(20000);
  std::vector<std::thread> threads;
  threads.reserve(2);
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i)
        stm::atomically([&](stm::Transaction& tx) { counter.store(tx, counter.load(tx) + 1); });
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(2L * per_thread, counter.load());
}

TEST(Atomically, InjectionAbortsButResultsStayExact) {
  stm::set_abort_injection(0.5, 42);
  stm::reset_stats();
  stm::TVar<int> x(0);
  for (int i = 0; i < 200; ++i)
    stm::atomically([&](stm::Transaction& tx) { x.store(tx, x.load(tx) + 1); });
  stm::set_abort_injection(0.0);
  EXPECT_EQ(200, x.load());
  EXPECT_GT(stm::thread_stats().aborts_of(stm::AbortCause::injected), 0u);
}
