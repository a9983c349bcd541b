#include "reactor/ready_queue.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "stm/stm.hpp"
#include "test_util.hpp"

namespace tmr::reactor {
namespace {

using testing::with_workers;

// Items are small integers in the pointer; the context is the Log the items run into.
struct Log {
  std::vector<std::string> seen;
  std::vector<const stm::Transaction*> transactions;
  // Called by the item's run, before it is recorded as run (it may push more, stop the reactor).
  std::function<void(std::intptr_t)> on_run;
};

std::vector<std::intptr_t>& dropped() {
  static std::vector<std::intptr_t> items;
  return items;
}

void* item(std::intptr_t n) {
  // NOLINTNEXTLINE(performance-no-int-to-ptr): the test's items are integers
  return reinterpret_cast<void*>(n);
}

void run_item(void* context, void*& it, stm::Transaction& tx) {
  auto* log = static_cast<Log*>(context);
  const auto n = reinterpret_cast<std::intptr_t>(it);
  log->transactions.push_back(&tx);
  if (log->on_run) log->on_run(n);
  log->seen.push_back(std::to_string(n));
  it = nullptr;
}

void drop_item(void* it) noexcept {
  dropped().push_back(reinterpret_cast<std::intptr_t>(it));
}

class ReadyQueueTest : public ::testing::Test {
 protected:
  void SetUp() override { dropped().clear(); }
  Reactor reactor{with_workers(1)};
  Strand strand = reactor.make_strand();
  Log log;
  void finish() {
    reactor.post(strand, [this](stm::Transaction&) { reactor.close_all(); });
  }
};

TEST_F(ReadyQueueTest, RunsItemsInOrderEachAsATransactionOfItsOwn) {
  ReadyQueue queue(reactor, strand, &run_item, &drop_item, &log);
  for (std::intptr_t n = 1; n <= 4; ++n) queue.push(item(n));
  finish();
  reactor.run();
  EXPECT_EQ(log.seen, (std::vector<std::string>{"1", "2", "3", "4"}));
  ASSERT_EQ(log.transactions.size(), 4u);
  for (const auto* tx : log.transactions) EXPECT_NE(tx, nullptr);
  EXPECT_TRUE(dropped().empty());
}

TEST_F(ReadyQueueTest, ItemsPushedByABatchRunAfterWhatTheStrandGotMeanwhile) {
  ReadyQueue queue(reactor, strand, &run_item, &drop_item, &log);
  log.on_run = [&](std::intptr_t n) {
    if (n != 1) return;
    queue.push(item(3));  // inside item 1's transaction: queued at its commit, next batch
    reactor.post(strand, [&](stm::Transaction&) { log.seen.emplace_back("posted"); });
  };
  queue.push(item(1));
  queue.push(item(2));
  finish();
  reactor.run();
  EXPECT_EQ(log.seen, (std::vector<std::string>{"1", "2", "posted", "3"}));
}

TEST_F(ReadyQueueTest, IsIdleExactlyWhenNoBatchWaits) {
  ReadyQueue queue(reactor, strand, &run_item, &drop_item, &log);
  EXPECT_TRUE(queue.idle());
  queue.push(item(1));
  EXPECT_FALSE(queue.idle());  // a batch waits for the reactor to run
  std::vector<bool> idle_seen;
  reactor.post(strand, [&](stm::Transaction&) {
    idle_seen.push_back(queue.idle());  // after the batch: nothing waits
    queue.push(item(2));                // at this event's commit
    idle_seen.push_back(queue.idle());
  });
  finish();
  reactor.run();
  EXPECT_EQ(idle_seen, (std::vector<bool>{true, true}));
  EXPECT_EQ(log.seen, (std::vector<std::string>{"1", "2"}));
}

TEST_F(ReadyQueueTest, AnAbortedTransactionDropsWhatItPushed) {
  ReadyQueue queue(reactor, strand, &run_item, &drop_item, &log);
  int attempts = 0;
  stm::atomically([&](stm::Transaction& tx) {
    queue.push(item(++attempts));
    if (attempts == 1) tx.abort();
  });
  finish();
  reactor.run();
  EXPECT_EQ(attempts, 2);
  EXPECT_EQ(log.seen, (std::vector<std::string>{"2"}));
  EXPECT_EQ(dropped(), (std::vector<std::intptr_t>{1}));
}

// What one transaction pushes is queued together at its commit, in push order per queue, even
// when it alternates between two queues; each item still runs as a transaction of its own; an
// aborted attempt drops everything it pushed to either queue.
TEST_F(ReadyQueueTest, ATransactionsPushesToTwoQueuesKeepTheirOrderOrAreAllDropped) {
  ReadyQueue first(reactor, strand, &run_item, &drop_item, &log);
  ReadyQueue second(reactor, strand, &run_item, &drop_item, &log);
  int attempts = 0;
  stm::atomically([&](stm::Transaction& tx) {
    const std::intptr_t base = ++attempts == 1 ? 0 : 100;
    first.push(item(base + 1));
    second.push(item(base + 10));
    first.push(item(base + 2));
    first.push(item(base + 3));
    second.push(item(base + 11));
    if (attempts == 1) tx.abort();
  });
  finish();
  reactor.run();
  EXPECT_EQ(attempts, 2);
  EXPECT_EQ(log.seen, (std::vector<std::string>{"101", "102", "103", "110", "111"}));
  ASSERT_EQ(log.transactions.size(), 5u);
  std::vector<std::intptr_t> lost = dropped();
  std::sort(lost.begin(), lost.end());
  EXPECT_EQ(lost, (std::vector<std::intptr_t>{1, 2, 3, 10, 11}));
}

TEST_F(ReadyQueueTest, AStopLeavesTheRestOfTheBatchForTheNextRun) {
  ReadyQueue queue(reactor, strand, &run_item, &drop_item, &log);
  log.on_run = [&](std::intptr_t n) {
    if (n == 1) reactor.stop();
  };
  for (std::intptr_t n = 1; n <= 3; ++n) queue.push(item(n));
  reactor.run();
  EXPECT_EQ(log.seen, (std::vector<std::string>{"1"}));
  reactor.restart();
  queue.push(item(4));
  finish();
  reactor.run();
  EXPECT_EQ(log.seen, (std::vector<std::string>{"1", "2", "3", "4"}));
}

TEST_F(ReadyQueueTest, DestroyingTheQueueDropsWhatWaitsAndTheContext) {
  {
    ReadyQueue queue(reactor, strand, &run_item, &drop_item, &log);
    queue.push(item(1));
    queue.push(item(2));
  }
  finish();
  reactor.run();
  EXPECT_TRUE(log.seen.empty());
  EXPECT_EQ(dropped(), (std::vector<std::intptr_t>{1, 2, reinterpret_cast<std::intptr_t>(&log)}));
}

}  // namespace
}  // namespace tmr::reactor
