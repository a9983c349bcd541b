#include "reactor/fd_watcher.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "stm/stm.hpp"
#include "test_util.hpp"

namespace tmr::reactor {
namespace {

using namespace testing;

struct Pipe {
  int r = -1, w = -1;
  Pipe() {
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK) != 0) throw std::runtime_error("pipe");
    r = fds[0];
    w = fds[1];
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  ~Pipe() {
    ::close(r);
    ::close(w);
  }
};

// A reader that takes one byte per call (read() is irrevocable) and counts what it took.
Callback count_each_byte(int fd, std::atomic<int>& count) {
  return [fd, &count](stm::Transaction& tx) {
    tx.become_inevitable();
    char c = 0;
    if (::read(fd, &c, 1) == 1) count.fetch_add(1);
  };
}

// Level-triggered: a reader that consumes one byte per call is called once per byte.
TEST(FdWatcher, ReaderIsLevelTriggered) {
  Pipe p;
  RunningReactor r(2);
  auto watcher = watch_fd(*r, p.r);
  std::atomic<int> bytes{0};
  watcher->add_reader(count_each_byte(p.r, bytes));
  EXPECT_TRUE(watcher->has_reader());
  ASSERT_EQ(::write(p.w, "abcde", 5), 5);
  EXPECT_TRUE(wait_until([&] { return bytes.load() == 5; }));
  watcher->remove_reader();
  EXPECT_FALSE(watcher->has_reader());
  std::this_thread::sleep_for(20ms);
  ASSERT_EQ(::write(p.w, "x", 1), 1);
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(bytes.load(), 5);
  watcher->release();
}

// A watcher made on a given strand runs its callbacks there: its owner's other events (posts,
// timers) and its readiness events then run one at a time.
TEST(FdWatcher, RunsOnTheStrandItWasGiven) {
  Pipe p;
  RunningReactor r(2);
  const Strand strand = r->make_strand();
  auto watcher = watch_fd(*r, p.r, strand);
  std::atomic<bool> on_strand{false};
  std::atomic<bool> called{false};
  watcher->add_reader([&](stm::Transaction& tx) {
    tx.become_inevitable();
    char c = 0;
    if (::read(p.r, &c, 1) == 1) {
      on_strand = current_strand() == strand;
      called = true;
    }
  });
  ASSERT_EQ(::write(p.w, "a", 1), 1);
  EXPECT_TRUE(wait_until([&] { return called.load(); }));
  EXPECT_TRUE(on_strand.load());
  watcher->release();
}

TEST(FdWatcher, WriterFiresWhenWritableAndStopsWhenRemoved) {
  Pipe p;
  RunningReactor r(2);
  auto watcher = watch_fd(*r, p.w);
  std::atomic<int> calls{0};
  watcher->add_writer([&](stm::Transaction&) {
    if (calls.fetch_add(1) == 2) watcher->remove_writer();  // at commit
  });
  ASSERT_TRUE(wait_until([&] { return calls.load() >= 3; }));
  std::this_thread::sleep_for(50ms);
  EXPECT_LE(calls.load(), 4);
  EXPECT_FALSE(watcher->has_writer());
  watcher->release();
}

// Each call drains the pipe, and the next bytes come only after it returned: every wait after
// the first finds the pipe empty and must be woken by the readiness that comes later.
TEST(FdWatcher, ReaderWaitingOnAnEmptyPipeIsCalledForEachLaterWrite) {
  Pipe p;
  RunningReactor r(2);
  auto watcher = watch_fd(*r, p.r);
  std::atomic<int> calls{0};
  watcher->add_reader([&](stm::Transaction& tx) {
    tx.become_inevitable();
    char buffer[64];
    while (::read(p.r, buffer, sizeof buffer) > 0) {
    }
    calls.fetch_add(1);
  });
  constexpr int kRounds = 200;
  for (int round = 1; round <= kRounds; ++round) {
    ASSERT_EQ(::write(p.w, "x", 1), 1);
    ASSERT_TRUE(wait_until([&] { return calls.load() >= round; })) << "round " << round;
  }
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(calls.load(), kRounds);  // no call without a write
  watcher->release();
}

// A writer added while the pipe is full is called only once a read has made room.
TEST(FdWatcher, WriterWaitsForRoom) {
  Pipe p;
  const std::string block(4096, 'x');
  while (::write(p.w, block.data(), block.size()) > 0) {
  }
  RunningReactor r(2);
  auto watcher = watch_fd(*r, p.w);
  std::atomic<int> calls{0};
  watcher->add_writer([&](stm::Transaction&) {
    calls.fetch_add(1);
    watcher->remove_writer();
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(calls.load(), 0);
  std::string drained(65536, '\0');
  while (::read(p.r, drained.data(), drained.size()) > 0) {
  }
  EXPECT_TRUE(wait_until([&] { return calls.load() == 1; }));
  watcher->release();
}

// A reader replaced while its wait for an empty pipe is queued (asyncio's sendfile adds and
// removes its writer so) is called at the next readiness: the old registration's wait must not
// be left in front of the new one's, taking the edge for itself.
TEST(FdWatcher, AReaderReplacedWhileItsWaitIsQueuedIsCalled) {
  Pipe p;
  RunningReactor r(2);
  auto watcher = watch_fd(*r, p.r);
  std::atomic<int> old_calls{0};
  std::atomic<int> calls{0};
  watcher->add_reader([&](stm::Transaction&) { old_calls.fetch_add(1); });
  std::this_thread::sleep_for(20ms);  // the empty pipe: its wait is queued in epoll
  watcher->remove_reader();
  watcher->add_reader(count_each_byte(p.r, calls));
  std::this_thread::sleep_for(20ms);
  ASSERT_EQ(::write(p.w, "ab", 2), 2);
  EXPECT_TRUE(wait_until([&] { return calls.load() == 2; }));
  EXPECT_EQ(old_calls.load(), 0);
  watcher->release();
}

// release() deregisters the descriptor, a wait in flight included: the same descriptor can be
// watched again at once, and only the new watcher is called.
TEST(FdWatcher, AReleasedDescriptorCanBeWatchedAgain) {
  Pipe p;
  RunningReactor r(2);
  std::atomic<int> old_calls{0};
  auto old_watcher = watch_fd(*r, p.r);
  old_watcher->add_reader([&](stm::Transaction&) { old_calls.fetch_add(1); });
  std::this_thread::sleep_for(20ms);  // the empty pipe: its wait is queued in epoll
  old_watcher->release();
  std::error_code ec;
  auto watcher = watch_fd(*r, p.r, ec);
  ASSERT_FALSE(ec) << ec.message();
  std::atomic<int> calls{0};
  watcher->add_reader(count_each_byte(p.r, calls));
  ASSERT_EQ(::write(p.w, "a", 1), 1);
  EXPECT_TRUE(wait_until([&] { return calls.load() == 1; }));
  EXPECT_EQ(old_calls.load(), 0);
  watcher->release();
}

// epoll refuses regular files, which never block: a reader of one is called, as select() would
// report it readable.
TEST(FdWatcher, RegularFileIsAlwaysReady) {
  char path[] = "/tmp/tm-fd-watcher-XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::unlink(path);
  RunningReactor r(1);
  std::error_code ec;
  auto watcher = watch_fd(*r, fd, ec);
  ASSERT_FALSE(ec) << ec.message();
  std::atomic<int> calls{0};
  watcher->add_reader([&](stm::Transaction&) {
    if (calls.fetch_add(1) == 2) watcher->remove_reader();
  });
  EXPECT_TRUE(wait_until([&] { return calls.load() >= 3; }));
  watcher->release();
  ::close(fd);
}

TEST(FdWatcher, InvalidDescriptorFails) {
  RunningReactor r(1);
  std::error_code ec;
  EXPECT_EQ(watch_fd(*r, -1, ec), nullptr);
  EXPECT_TRUE(ec);
}

}  // namespace
}  // namespace tmr::reactor
