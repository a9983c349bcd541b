// run_once() and commit_once(): an irrevocable body runs once; when its commit aborts, only its
// conflict-free operations are replayed, and every hook the body registered runs exactly once.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "stm/stm.hpp"
#include "test_util.hpp"

namespace stm = tmr::stm;

namespace {

// Injection and the escalation threshold are process-wide: restore them whatever a test does.
class RunOnce : public ::testing::Test {
 protected:
  void SetUp() override { stm::reset_stats(); }
  void TearDown() override {
    stm::set_abort_injection(0.0);
    stm::set_escalation_threshold(8);
  }
};

std::uint64_t aborts_of(stm::AbortCause cause) {
  return stm::total_stats().aborts_of(cause);
}

}  // namespace

TEST_F(RunOnce, InjectedCommitAbortsReplayTheOperationsAndKeepTheBodysHooks) {
  stm::set_escalation_threshold(4);
  stm::set_abort_injection(1.0, 7);  // every attempt that may abort does: until escalation
  stm::Counter hits;
  stm::TVar<int> seen(5);
  int body_runs = 0;
  int replays = 0;
  int body_commit_hooks = 0;
  int body_abort_hooks = 0;
  int replay_hooks = 0;
  stm::run_once(
      [&](stm::Transaction& tx) {
        ++body_runs;
        tx.on_commit([&] { ++body_commit_hooks; });
        tx.on_abort([&] { ++body_abort_hooks; });
        EXPECT_EQ(5, seen.load(tx));  // injection never fires inside the body
      },
      [&](stm::Transaction& tx) {
        ++replays;
        hits.add(tx, 1);
        tx.on_commit([&] { ++replay_hooks; });
      });
  const auto injected = aborts_of(stm::AbortCause::injected);
  stm::set_abort_injection(0.0);
  EXPECT_EQ(1, body_runs);
  EXPECT_EQ(1, body_commit_hooks);
  EXPECT_EQ(0, body_abort_hooks);
  EXPECT_EQ(1, replay_hooks);  // only the committed attempt's own hook
  EXPECT_EQ(1, hits.get());
  EXPECT_GE(injected, 1U);
  EXPECT_EQ(static_cast<std::uint64_t>(replays), injected + 1);
}

TEST_F(RunOnce, CommitAbortedByTheInevitableTransactionStillRunsTheBodysWriteOnce) {
  // The defect this guards against: a callback's socket write (an on-commit hook) was dropped
  // when its commit conflicted with the inevitable transaction's read and the runtime replayed
  // only its deferred operations.
  stm::Counter hits;
  std::atomic<bool> marked{false};
  std::atomic<bool> committed{false};
  std::vector<int> writes;
  std::thread inevitable([&] {
    stm::atomically([&](stm::Transaction& tx) {
      tx.become_inevitable();
      (void)hits.get(tx);  // marks the cell: a committer that merges into it aborts
      marked.store(true);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    });
    committed.store(true);
  });
  while (!marked.load()) {
    std::this_thread::yield();
  }
  int replays = 0;
  stm::run_once([&](stm::Transaction& tx) { tx.on_commit([&] { writes.push_back(1); }); },
                [&](stm::Transaction& tx) {
                  ++replays;
                  hits.add(tx, 1);
                });
  inevitable.join();
  EXPECT_TRUE(committed.load());
  EXPECT_GE(aborts_of(stm::AbortCause::inevitable), 1U);
  EXPECT_EQ(replays, 1 + static_cast<int>(aborts_of(stm::AbortCause::inevitable)));
  EXPECT_EQ(std::vector<int>{1}, writes);
  EXPECT_EQ(1, hits.get());
}

TEST_F(RunOnce, AnExceptionInAReplayRunsTheBodysAbortHooksOnceAndNoCommitHook) {
  stm::set_abort_injection(1.0, 3);
  int commit_hooks = 0;
  int abort_hooks = 0;
  int replays = 0;
  EXPECT_THROW(stm::run_once(
                   [&](stm::Transaction& tx) {
                     tx.on_commit([&] { ++commit_hooks; });
                     tx.on_abort([&] { ++abort_hooks; });
                   },
                   [&](stm::Transaction&) {
                     if (++replays == 2) throw std::runtime_error("replay");
                   }),
               std::runtime_error);
  EXPECT_EQ(2, replays);
  EXPECT_EQ(0, commit_hooks);
  EXPECT_EQ(1, abort_hooks);
  EXPECT_EQ(nullptr, stm::current_transaction());
}

TEST_F(RunOnce, AnInevitableBodyIsNeverChosenForInjection) {
  stm::set_abort_injection(1.0, 11);
  int body_runs = 0;
  int replays = 0;
  stm::run_once(
      [&](stm::Transaction& tx) {
        ++body_runs;
        tx.become_inevitable();
      },
      [&](stm::Transaction&) { ++replays; });
  EXPECT_EQ(1, body_runs);
  EXPECT_EQ(1, replays);
  EXPECT_EQ(0U, aborts_of(stm::AbortCause::injected));
}

TEST_F(RunOnce, ConcurrentRunOnceTransactionsLoseNoHookUnderInjection) {
  stm::set_abort_injection(0.5, 19);
  stm::Counter hits;
  std::atomic<int> hooks{0};
  const int per_thread = scaled(2000);
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i) {
        stm::run_once([&](stm::Transaction& tx) { tx.on_commit([&] { hooks.fetch_add(1); }); },
                      [&](stm::Transaction& tx) { hits.add(tx, 1); });
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  stm::set_abort_injection(0.0);
  EXPECT_EQ(4 * per_thread, hooks.load());
  EXPECT_EQ(4 * per_thread, hits.get());
  EXPECT_GT(aborts_of(stm::AbortCause::injected), 0U);
}
