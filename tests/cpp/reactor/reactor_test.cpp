#include "reactor/reactor.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <atomic>
#include <csignal>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "reactor/tcp_transport.hpp"
#include "stm/stm.hpp"
#include "test_util.hpp"

namespace tmr::reactor {
namespace {

using namespace testing;

TEST(Reactor, PostedCallRunsAsTransactionAndWakesTheLoop) {
  RunningReactor r(2);
  std::atomic<bool> in_tx{false};
  std::atomic<bool> done{false};
  std::atomic<Reactor*> seen{nullptr};
  r->post([&](stm::Transaction&) {
    in_tx = stm::current_transaction() != nullptr;
    seen = current_reactor();
    done = true;
  });
  ASSERT_TRUE(wait_until([&] { return done.load(); }));
  EXPECT_TRUE(in_tx.load());
  EXPECT_EQ(seen.load(), &*r);
}

TEST(Reactor, OneWorkerIsSerialOnTheCallingThread) {
  Reactor reactor(with_workers(1));
  EXPECT_EQ(reactor.workers(), 1u);
  std::set<std::thread::id> threads;  // touched only by the single worker
  int running = 0, overlaps = 0;
  for (int i = 0; i < 200; ++i) {
    reactor.post(
        [&](stm::Transaction&) {
          if (running++ != 0) ++overlaps;
          threads.insert(std::this_thread::get_id());
          --running;
        },
        StrandChoice::fresh);
  }
  reactor.post([&](stm::Transaction&) { reactor.close_all(); });
  reactor.run();  // returns once idle after close_all
  EXPECT_EQ(overlaps, 0);
  ASSERT_EQ(threads.size(), 1u);
  EXPECT_EQ(*threads.begin(), std::this_thread::get_id());
}

TEST(Reactor, PostInsideTransactionInheritsStrandAndRunsAtCommit) {
  RunningReactor r(2);
  std::atomic<std::uint64_t> outer{0}, inherited{0}, fresh{0};
  std::atomic<int> done{0};
  r->post([&](stm::Transaction&) {
    outer = current_strand().id();
    r->post([&](stm::Transaction&) {
      inherited = current_strand().id();
      done.fetch_add(1);
    });
    r->post(
        [&](stm::Transaction&) {
          fresh = current_strand().id();
          done.fetch_add(1);
        },
        StrandChoice::fresh);
  });
  ASSERT_TRUE(wait_until([&] { return done.load() == 2; }));
  EXPECT_NE(outer.load(), 0u);
  EXPECT_EQ(inherited.load(), outer.load());
  EXPECT_NE(fresh.load(), outer.load());
}

TEST(Reactor, PostsFromAbortedAttemptsNeverRun) {
  stm::set_abort_injection(0.5, 42);
  RunningReactor r(2);
  std::atomic<int> attempts{0}, runs{0}, parents{0};
  constexpr int kParents = 200;
  for (int i = 0; i < kParents; ++i) {
    r->post(
        [&](stm::Transaction& tx) {
          attempts.fetch_add(1);
          tx.on_commit([&] { parents.fetch_add(1); });
          r->post([&](stm::Transaction& child) { child.on_commit([&] { runs.fetch_add(1); }); });
        },
        StrandChoice::fresh);
  }
  const bool finished =
      wait_until([&] { return runs.load() >= kParents && parents.load() == kParents; });
  std::this_thread::sleep_for(50ms);
  stm::set_abort_injection(0.0);
  ASSERT_TRUE(finished);
  EXPECT_EQ(runs.load(), kParents);  // one child per committed parent, not per attempt
  EXPECT_GT(attempts.load(), kParents);
}

TEST(Reactor, CustomDispatcherWrapsEveryEvent) {
  struct Counting : Dispatcher {
    std::atomic<int> calls{0};
    std::atomic<int> wakeups{0};
    void dispatch(const DispatchInfo& info, EventCallback cb) override {
      calls.fetch_add(1);
      if (info.kind == EventKind::wakeup) wakeups.fetch_add(1);
      stm::atomically([&](stm::Transaction& tx) {
        tx.become_inevitable();  // as the Python layer does for irrevocable callbacks
        cb(tx);
      });
    }
  };
  auto dispatcher = std::make_shared<Counting>();
  ReactorOptions options;
  options.dispatcher = dispatcher;
  RunningReactor r(2, options);
  std::atomic<int> ran{0};
  std::atomic<bool> inevitable{true};
  for (int i = 0; i < 10; ++i) {
    r->post([&](stm::Transaction& tx) {
      if (!tx.is_inevitable()) inevitable = false;
      ran.fetch_add(1);
    });
  }
  ASSERT_TRUE(wait_until([&] { return ran.load() == 10; }));
  EXPECT_EQ(dispatcher->calls.load(), 10);
  EXPECT_EQ(dispatcher->wakeups.load(), 10);
  EXPECT_TRUE(inevitable.load());
  EXPECT_EQ(&r->dispatcher(), dispatcher.get());
}

TEST(Reactor, ExceptionInCallbackIsReportedAndLoopSurvives) {
  std::mutex mu;
  std::vector<std::string> reports;
  ReactorOptions options;
  options.on_error = [&](const DispatchInfo&, const std::exception_ptr& e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      std::lock_guard lock(mu);
      reports.emplace_back(ex.what());
    }
  };
  RunningReactor r(2, options);
  std::atomic<bool> after{false};
  r->post([](stm::Transaction&) { throw std::runtime_error("boom"); });
  r->post([&](stm::Transaction&) { after = true; });
  ASSERT_TRUE(wait_until([&] { return after.load(); }));
  ASSERT_TRUE(wait_until([&] {
    std::lock_guard lock(mu);
    return reports.size() == 1;
  }));
  std::lock_guard lock(mu);
  EXPECT_EQ(reports[0], "boom");
}

TEST(Reactor, StopAndRestart) {
  Reactor reactor(with_workers(2));
  std::atomic<int> ran{0};
  reactor.post([&](stm::Transaction&) {
    ran.fetch_add(1);
    reactor.stop();
  });
  reactor.run();
  EXPECT_TRUE(reactor.stopped());
  reactor.restart();
  reactor.post([&](stm::Transaction&) {
    ran.fetch_add(1);
    reactor.close_all();
  });
  reactor.run();
  EXPECT_EQ(ran.load(), 2);
}

TEST(Reactor, NotifyForkKeepsTheLoopUsable) {
  Reactor reactor(with_workers(1));
  reactor.notify_fork(ForkEvent::prepare);
  reactor.notify_fork(ForkEvent::parent);
  std::atomic<bool> ran{false};
  reactor.post([&](stm::Transaction&) {
    ran = true;
    reactor.close_all();
  });
  reactor.run();
  EXPECT_TRUE(ran.load());
}

// Daemonizing: fork while no worker runs; the child re-creates the epoll state and its loop
// works (a timer fires, a post runs).
TEST(Reactor, NotifyForkChildRunsItsOwnLoop) {
  Reactor reactor(with_workers(1));
  reactor.notify_fork(ForkEvent::prepare);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    reactor.notify_fork(ForkEvent::child);
    bool fired = false;
    reactor.call_later(5ms, [&](stm::Transaction& tx) {
      tx.on_commit([&] { fired = true; });
      reactor.close_all();
    });
    reactor.run();
    ::_exit(fired ? 0 : 1);
  }
  reactor.notify_fork(ForkEvent::parent);
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      FAIL() << "the child's loop did not finish";
    }
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  std::atomic<bool> ran{false};
  reactor.post([&](stm::Transaction&) {
    ran = true;
    reactor.close_all();
  });
  reactor.run();  // the parent's loop works too
  EXPECT_TRUE(ran.load());
}

// Objects the user still holds after the Reactor is gone: their requests are no-ops, nothing
// crashes, and (under ASan's leak checker) nothing leaks.
TEST(Reactor, ObjectsOutlivingTheReactorAreInert) {
  struct Keep : StreamHandler {
    std::shared_ptr<StreamTransport> t;
    std::atomic<bool> ready{false};
    void on_connected(stm::Transaction& tx, const std::shared_ptr<StreamTransport>& tr) override {
      t = tr;
      tx.on_commit([this] { ready = true; });
    }
    void on_data(stm::Transaction&, std::span<const char>) override {}
  };
  auto keep = std::make_shared<Keep>();
  std::shared_ptr<StreamTransport> transport;
  std::shared_ptr<StreamListener> listener;
  Timer timer;
  std::optional<Client> client;
  {
    RunningReactor r(2);
    listener = tcp_listen(*r, "127.0.0.1", 0, [&](stm::Transaction&) { return keep; });
    client.emplace(Client::tcp("127.0.0.1", listener->port()));
    ASSERT_TRUE(wait_until([&] { return keep->ready.load(); }));
    transport = keep->t;
    timer = r->call_later(std::chrono::hours(1), [](stm::Transaction&) {});
    transport->write("queued but never flushed? it may be");
  }
  transport->write("after");
  transport->pause_reading();
  transport->resume_reading();
  transport->shutdown_write();
  transport->close();
  transport->abort();
  listener->close();
  timer.reschedule_after(1ms);
  timer.cancel();
  EXPECT_EQ(transport->native_handle(), -1);
}

}  // namespace
}  // namespace tmr::reactor
