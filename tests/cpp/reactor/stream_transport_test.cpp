#include "reactor/stream_transport.hpp"

#include <gtest/gtest.h>

#include <atomic>

#include "reactor/unix_transport.hpp"
#include "stm/stm.hpp"
#include "test_util.hpp"

namespace tmr::reactor {
namespace {

using namespace testing;

struct Counting : StreamHandler {
  std::atomic<std::size_t> bytes{0};
  void on_data(stm::Transaction& tx, std::span<const char> d) override {
    const auto n = d.size();
    tx.on_commit([this, n] { bytes.fetch_add(n); });
  }
};

// pause_reading stops on_data (back-pressure toward the peer); resume_reading delivers what
// arrived meanwhile, nothing lost.
TEST(StreamTransport, PauseAndResumeReading) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  RunningReactor r(2);
  auto h = std::make_shared<Counting>();
  auto t = unix_adopt(*r, fds[0], h);
  Client peer(fds[1]);
  peer.send("before");
  ASSERT_TRUE(wait_until([&] { return h->bytes.load() == 6; }));
  t->pause_reading();
  std::this_thread::sleep_for(20ms);
  peer.send("while paused");
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(h->bytes.load(), 6u);
  t->resume_reading();
  EXPECT_TRUE(wait_until([&] { return h->bytes.load() == 18; }));
  peer.send("after");
  EXPECT_TRUE(wait_until([&] { return h->bytes.load() == 23; }));
}

TEST(StreamTransport, StateAccessors) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  RunningReactor r(1);
  auto t = unix_adopt(*r, fds[0], std::make_shared<Counting>());
  Client peer(fds[1]);
  EXPECT_TRUE(wait_until([&] { return t->native_handle() == fds[0]; }));
  EXPECT_EQ(t->write_buffer_size(), 0u);
  EXPECT_FALSE(t->is_closing());
  EXPECT_THROW(t->set_write_buffer_limits(1, 2), std::invalid_argument);
  t->close();
  EXPECT_TRUE(t->is_closing());
  EXPECT_EQ(peer.recv_all(), "");
  EXPECT_TRUE(wait_until([&] { return t->native_handle() == -1; }));
}

}  // namespace
}  // namespace tmr::reactor
