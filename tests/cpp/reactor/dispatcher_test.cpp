#include "reactor/dispatcher.hpp"

#include <gtest/gtest.h>

#include "stm/stm.hpp"

namespace tmr::reactor {
namespace {

TEST(Dispatcher, EventCallbackCallsThroughWithoutOwning) {
  int calls = 0;
  auto fn = [&](stm::Transaction&) { ++calls; };
  EventCallback cb(fn);
  stm::atomically([&](stm::Transaction& tx) { cb(tx); });
  EXPECT_EQ(calls, 1);
}

TEST(Dispatcher, AtomicDispatcherRerunsAbortedAttemptsAndCommitsOnce) {
  AtomicDispatcher dispatcher;
  int attempts = 0, commits = 0;
  auto fn = [&](stm::Transaction& tx) {
    EXPECT_EQ(stm::current_transaction(), &tx);
    tx.on_commit([&] { ++commits; });
    if (++attempts < 3) tx.abort();
  };
  dispatcher.dispatch(DispatchInfo{EventKind::posted, 1}, fn);
  EXPECT_EQ(attempts, 3);
  EXPECT_EQ(commits, 1);
}

TEST(Dispatcher, ExceptionsPropagateToTheCaller) {
  AtomicDispatcher dispatcher;
  auto fn = [](stm::Transaction&) { throw std::runtime_error("callback failed"); };
  EXPECT_THROW(dispatcher.dispatch(DispatchInfo{EventKind::read, 1}, fn), std::runtime_error);
}

}  // namespace
}  // namespace tmr::reactor
