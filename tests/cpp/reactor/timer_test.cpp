#include "reactor/timer.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <vector>

#include "reactor/fd_watcher.hpp"
#include "reactor/reactor.hpp"
#include "stm/stm.hpp"
#include "test_util.hpp"

namespace tmr::reactor {
namespace {

using namespace testing;

struct Log {
  std::mutex mu;
  std::vector<int> order;
  void add(int v) {
    std::lock_guard lock(mu);
    order.push_back(v);
  }
  std::vector<int> get() {
    std::lock_guard lock(mu);
    return order;
  }
};

TEST(Timer, FireInDeadlineOrder) {
  RunningReactor r(1);
  Log log;
  r->call_later(160ms, [&](stm::Transaction&) { log.add(3); });
  r->call_later(100ms, [&](stm::Transaction&) { log.add(1); });
  r->call_later(130ms, [&](stm::Transaction&) { log.add(2); });
  ASSERT_TRUE(wait_until([&] { return log.get().size() == 3; }));
  EXPECT_EQ(log.get(), (std::vector<int>{1, 2, 3}));
}

// Deadlines lie far enough ahead that all timers are armed before the first expires, even
// under TSan on a loaded machine: order is promised among armed timers only.
TEST(Timer, FireInDeadlineOrderOnOneStrandUnderWorkers) {
  RunningReactor r(2);
  Log log;
  const Strand s = r->make_strand();
  const auto now = Clock::now();
  for (int i = 9; i >= 0; --i)
    r->call_at(s, now + 100ms + i * 5ms, [&, i](stm::Transaction&) { log.add(i); });
  ASSERT_TRUE(wait_until([&] { return log.get().size() == 10; }));
  EXPECT_EQ(log.get(), (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

// Timers that expire together (the workers were busy when their deadlines passed) complete on
// both workers at once: they still run in deadline order, as a stock reactor runs every timer
// due in one pass in time order. Each round keeps both workers busy with a sleep on another
// strand while ten timers of one strand expire.
TEST(Timer, TimersThatExpireTogetherRunInDeadlineOrderUnderWorkers) {
  RunningReactor r(2);
  const Strand timers = r->make_strand();
  for (int round = 0; round < 30; ++round) {
    Log log;
    const auto now = Clock::now();
    for (int i = 9; i >= 0; --i)
      r->call_at(timers, now + 5ms + i * 1ms, [&, i](stm::Transaction&) { log.add(i); });
    for (int busy = 0; busy < 2; ++busy) {
      r->post(r->make_strand(), [](stm::Transaction&) { std::this_thread::sleep_for(30ms); });
    }
    ASSERT_TRUE(wait_until([&] { return log.get().size() == 10; }));
    ASSERT_EQ(log.get(), (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})) << "round " << round;
  }
}

// A timer armed already due runs before the I/O events the next poll finds, as the stock
// reactors run expired timers before they poll (Twisted's stopListening defers the port's
// connectionLost with callLater(0) and expects it before the peer's reaction).
TEST(Timer, AlreadyDueTimerRunsBeforeTheIoOfTheNextPoll) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_NONBLOCK), 0);
  ASSERT_EQ(::write(fds[1], "x", 1), 1);  // readable before anything is armed
  RunningReactor r(1);
  Log log;
  const std::shared_ptr<FdWatcher> watcher = watch_fd(*r, fds[0]);
  r->post(r->make_strand(), [&](stm::Transaction&) {
    // Both take effect at this callback's commit, the timer first.
    r->call_later(0ms, [&](stm::Transaction&) { log.add(1); });
    watcher->add_reader([&](stm::Transaction&) {
      watcher->remove_reader();
      log.add(2);
    });
  });
  ASSERT_TRUE(wait_until([&] { return log.get().size() == 2; }));
  EXPECT_EQ(log.get(), (std::vector<int>{1, 2}));
  watcher->release();
  ::close(fds[0]);
  ::close(fds[1]);
}

// Two timers of one strand that re-arm themselves due at once (callLater(0) loops, or callbacks
// that take longer than their intervals) are always due: a stock reactor still polls between its
// passes over them. Each arming posts itself to the
// strand, and every timer that ran posted again; an arming that another timer's pass had
// already run used to run the strand's due timers in turn, so the posts multiplied and the
// strand's I/O waited behind more of them every round (a Twisted server on the GIL, whose events
// share one strand, with two LoopingCalls behind their schedule read its sockets every 120 ms
// after a few seconds, and later not at all). Here a pipe written every millisecond must be
// read about as often.
TEST(Timer, TimersAlwaysDueLeaveTheStrandItsIo) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_NONBLOCK), 0);
  RunningReactor r(1);
  const Strand s = r->make_strand();
  std::atomic<bool> stopping{false};
  std::atomic<int> reads{0};
  const auto busy = [](std::chrono::microseconds length) {
    const auto until = Clock::now() + length;
    while (Clock::now() < until) {
    }
  };
  std::function<void(stm::Transaction&)> tick = [&](stm::Transaction&) {
    busy(300us);
    if (!stopping) r->call_at(s, Clock::now(), tick);  // due again at once: callLater(0)
  };
  const std::shared_ptr<FdWatcher> watcher = watch_fd(*r, fds[0], s);
  r->post(s, [&](stm::Transaction&) {
    r->call_at(s, Clock::now(), tick);
    r->call_at(s, Clock::now(), tick);
    watcher->add_reader([&](stm::Transaction&) {
      char buffer[256];
      while (::read(fds[0], buffer, sizeof buffer) > 0) {
      }
      reads.fetch_add(1);
    });
  });
  const auto start = Clock::now();
  int written = 0;
  while (Clock::now() - start < 1500ms) {
    ASSERT_EQ(::write(fds[1], "x", 1), 1);
    ++written;
    std::this_thread::sleep_for(1ms);
  }
  stopping = true;
  // Every pass runs both timers, 0.6 ms: a read every one or two writes. Before, the reads
  // came further apart every round.
  EXPECT_GT(reads.load(), written / 4) << written << " writes";
  r->post(s, [&](stm::Transaction&) { watcher->remove_reader(); });
  r.stop();
  watcher->release();
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(Timer, CancelledTimerNeverRuns) {
  RunningReactor r(2);
  std::atomic<int> ran{0};
  std::atomic<bool> later{false};
  // Long enough that the cancel below always comes first, even on a loaded machine.
  Timer t = r->call_later(300ms, [&](stm::Transaction&) { ran.fetch_add(1); });
  EXPECT_TRUE(t.pending());
  t.cancel();
  t.cancel();  // idempotent
  EXPECT_FALSE(t.pending());
  r->call_later(400ms, [&](stm::Transaction&) { later = true; });
  ASSERT_TRUE(wait_until([&] { return later.load(); }));
  EXPECT_EQ(ran.load(), 0);
}

TEST(Timer, RescheduleMovesTheDeadline) {
  RunningReactor r(2);
  std::atomic<int> ran{0};
  const auto start = Clock::now();
  std::atomic<Clock::rep> fired_at{0};
  Timer t = r->call_later(100ms, [&](stm::Transaction&) {
    fired_at = (Clock::now() - start).count();
    ran.fetch_add(1);
  });
  t.reschedule(start + 250ms);  // later
  std::this_thread::sleep_for(20ms);
  t.reschedule(start + 150ms);  // then earlier again
  ASSERT_TRUE(wait_until([&] { return ran.load() == 1; }));
  EXPECT_GE(Clock::duration(fired_at.load()), 150ms);
  EXPECT_LT(Clock::duration(fired_at.load()), 250ms);
  EXPECT_FALSE(t.pending());
  // A fired timer can be armed again.
  t.reschedule_after(5ms);
  ASSERT_TRUE(wait_until([&] { return ran.load() == 2; }));
}

TEST(Timer, RescheduleEarlierKeepsTheEarliestDeadline) {
  RunningReactor r(2);
  std::atomic<int> ran{0};
  const auto start = Clock::now();
  std::atomic<Clock::rep> fired_at{0};
  Timer t = r->call_later(300ms, [&](stm::Transaction&) {
    fired_at = (Clock::now() - start).count();
    ran.fetch_add(1);
  });
  t.reschedule_earlier(start + 100ms);  // sooner: moves it
  t.reschedule_earlier(start + 200ms);  // later than armed: no effect
  ASSERT_TRUE(wait_until([&] { return ran.load() == 1; }));
  EXPECT_GE(Clock::duration(fired_at.load()), 100ms);
  EXPECT_LT(Clock::duration(fired_at.load()), 200ms);
  EXPECT_FALSE(t.pending());
  t.reschedule_earlier(Clock::now() + 5ms);  // spent: armed again
  ASSERT_TRUE(wait_until([&] { return ran.load() == 2; }));
}

TEST(Timer, RescheduleEarlierFromManyStrandsCommutes) {
  // Transactions on several strands commit in any order; the earliest request must win, and a
  // later arming posted ahead of an earlier one must not leave the timer waiting for nothing.
  RunningReactor r(2);
  std::atomic<int> ran{0}, posted{0};
  const auto start = Clock::now();
  std::atomic<Clock::rep> fired_at{0};
  Timer t = r->call_later(10s, [&](stm::Transaction&) {
    fired_at = (Clock::now() - start).count();
    ran.fetch_add(1);
  });
  constexpr int kRequests = 64;
  for (int i = 0; i < kRequests; ++i) {
    const auto deadline = start + (i == kRequests / 2 ? 80ms : 400ms + i * 1ms);
    r->post(
        [&t, &posted, deadline](stm::Transaction&) {
          t.reschedule_earlier(deadline);
          posted.fetch_add(1);
        },
        StrandChoice::fresh);
  }
  ASSERT_TRUE(wait_until([&] { return ran.load() == 1; }));
  EXPECT_EQ(posted.load(), kRequests);
  EXPECT_GE(Clock::duration(fired_at.load()), 80ms);
  EXPECT_LT(Clock::duration(fired_at.load()), 400ms);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(ran.load(), 1);  // one arming: it does not fire again for the later requests
}

TEST(Timer, TimerFromAbortedAttemptIsNeverArmed) {
  stm::set_abort_injection(0.5, 3);
  RunningReactor r(2);
  std::atomic<int> parents{0}, fired{0};
  constexpr int kParents = 100;
  for (int i = 0; i < kParents; ++i) {
    r->post(
        [&](stm::Transaction& tx) {
          r->call_later(1ms,
                        [&](stm::Transaction& t) { t.on_commit([&] { fired.fetch_add(1); }); });
          tx.on_commit([&] { parents.fetch_add(1); });
        },
        StrandChoice::fresh);
  }
  const bool ok =
      wait_until([&] { return parents.load() == kParents && fired.load() >= kParents; });
  std::this_thread::sleep_for(30ms);
  stm::set_abort_injection(0.0);
  ASSERT_TRUE(ok);
  EXPECT_EQ(fired.load(), kParents);
}

TEST(Timer, CloseAllCancelsPendingTimers) {
  Reactor reactor(with_workers(2));
  std::atomic<bool> ran{false};
  reactor.call_later(std::chrono::hours(1), [&](stm::Transaction&) { ran = true; });
  reactor.close_all();
  reactor.run();  // must return at once: the only work was the cancelled timer
  EXPECT_FALSE(ran.load());
}

// A timer stays known to close_all once it fired: re-armed from its own callback, as tm_asyncio
// re-arms its one timer per loop, it is cancelled like a timer armed once.
TEST(Timer, CloseAllCancelsATimerReArmedAfterItFired) {
  Reactor reactor(with_workers(2));
  std::atomic<int> fired{0};
  Timer timer;
  timer = reactor.call_later(1ms, [&](stm::Transaction&) {
    if (fired.fetch_add(1) == 0) {
      timer.reschedule_after(std::chrono::hours(1));
      reactor.close_all();
    }
  });
  reactor.run();  // must return: the re-armed timer was the only work left
  EXPECT_EQ(fired.load(), 1);
}

}  // namespace
}  // namespace tmr::reactor
