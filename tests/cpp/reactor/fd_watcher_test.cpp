#include "reactor/fd_watcher.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>

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

// Level-triggered: a reader that consumes one byte per call is called once per byte.
TEST(FdWatcher, ReaderIsLevelTriggered) {
  Pipe p;
  RunningReactor r(2);
  auto watcher = watch_fd(*r, p.r);
  std::atomic<int> bytes{0};
  watcher->add_reader([&](stm::Transaction& tx) {
    tx.become_inevitable();  // read() is irrevocable
    char c = 0;
    if (::read(p.r, &c, 1) == 1) bytes.fetch_add(1);
  });
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

TEST(FdWatcher, InvalidDescriptorFails) {
  RunningReactor r(1);
  std::error_code ec;
  EXPECT_EQ(watch_fd(*r, -1, ec), nullptr);
  EXPECT_TRUE(ec);
}

}  // namespace
}  // namespace tmr::reactor
