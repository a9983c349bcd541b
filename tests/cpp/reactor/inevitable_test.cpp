#include "reactor/inevitable.hpp"

#include <gtest/gtest.h>

#include <atomic>

#include "stm/stm.hpp"
#include "test_util.hpp"

namespace tmr::reactor {
namespace {

using namespace testing;

TEST(Inevitable, OutsideATransactionThereIsNothingToDo) {
  EXPECT_FALSE(become_inevitable());
}

TEST(Inevitable, BlockingWorkRunsInevitableAndOnce) {
  stm::set_abort_injection(0.5, 7);
  RunningReactor r(2);
  std::atomic<int> blocking_runs{0};
  std::atomic<bool> was_inevitable{false}, done{false};
  r->post([&](stm::Transaction& tx) {
    const int got = run_blocking([&] {
      was_inevitable = tx.is_inevitable();
      std::this_thread::sleep_for(5ms);  // the blocking call
      return blocking_runs.fetch_add(1) + 1;
    });
    tx.on_commit([&, got] { done = got == 1; });
  });
  const bool ok = wait_until([&] { return done.load(); });
  stm::set_abort_injection(0.0);
  EXPECT_TRUE(ok);
  EXPECT_TRUE(was_inevitable.load());
  EXPECT_EQ(blocking_runs.load(), 1);  // never re-executed by an abort
}

// Two workers: one is blocked inside run_blocking, the other waits for the token. Unrelated
// events must still run (on a lent spare thread) long before the blocker finishes.
TEST(Inevitable, BlockedWorkersDoNotStallUnrelatedEvents) {
  RunningReactor r(2);
  std::atomic<bool> blocking{false}, waiter_done{false}, unrelated_done{false};
  r->post([&](stm::Transaction&) {
    run_blocking([&] {
      blocking = true;
      std::this_thread::sleep_for(400ms);
    });
  });
  ASSERT_TRUE(wait_until([&] { return blocking.load(); }));
  r->post([&](stm::Transaction& tx) {
    become_inevitable();  // waits for the blocker's token
    tx.on_commit([&] { waiter_done = true; });
  });
  std::this_thread::sleep_for(20ms);  // the waiter now occupies the second worker
  const auto start = Clock::now();
  r->post([&](stm::Transaction& tx) { tx.on_commit([&] { unrelated_done = true; }); });
  ASSERT_TRUE(wait_until([&] { return unrelated_done.load(); }, 2000ms));
  EXPECT_LT(Clock::now() - start, 200ms) << "the unrelated event waited for the blocker";
  EXPECT_FALSE(waiter_done.load());
  EXPECT_TRUE(wait_until([&] { return waiter_done.load(); }, 2000ms));
}

// Lending keeps working across many run()/stop() cycles of one reactor (each run() has new
// threads, which must get blocking slots again).
TEST(Inevitable, LendingSurvivesManyRuns) {
  Reactor reactor(with_workers(2));
  for (int cycle = 0; cycle < 25; ++cycle) {
    std::atomic<bool> blocking{false}, unrelated_done{false}, waiter_done{false};
    std::thread loop([&] { reactor.run(); });
    reactor.post([&](stm::Transaction&) {
      run_blocking([&] {
        blocking = true;
        std::this_thread::sleep_for(60ms);
      });
    });
    ASSERT_TRUE(wait_until([&] { return blocking.load(); }));
    reactor.post([&](stm::Transaction& tx) {
      become_inevitable();
      tx.on_commit([&] { waiter_done = true; });
    });
    std::this_thread::sleep_for(5ms);
    reactor.post([&](stm::Transaction& tx) { tx.on_commit([&] { unrelated_done = true; }); });
    EXPECT_TRUE(wait_until([&] { return unrelated_done.load(); }, 2000ms));
    EXPECT_FALSE(waiter_done.load()) << "cycle " << cycle;
    EXPECT_TRUE(wait_until([&] { return waiter_done.load(); }, 2000ms));
    reactor.stop();
    loop.join();
    reactor.restart();
  }
}

TEST(Inevitable, BlockingScopeOutsideCallbacksIsHarmless) {
  BlockingScope scope;
}

}  // namespace
}  // namespace tmr::reactor
