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

}  // namespace
}  // namespace tmr::reactor
