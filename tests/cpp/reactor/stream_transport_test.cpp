#include "reactor/stream_transport.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <string>

#include "adopted_pair.hpp"
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
  AdoptedPair conn(2, std::make_shared<Counting>());
  const auto& h = conn.handler;
  conn.peer.send("before");
  ASSERT_TRUE(wait_until([&] { return h->bytes.load() == 6; }));
  conn.transport->pause_reading();
  std::this_thread::sleep_for(20ms);
  conn.peer.send("while paused");
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(h->bytes.load(), 6u);
  conn.transport->resume_reading();
  EXPECT_TRUE(wait_until([&] { return h->bytes.load() == 18; }));
  conn.peer.send("after");
  EXPECT_TRUE(wait_until([&] { return h->bytes.load() == 23; }));
}

TEST(StreamTransport, StateAccessors) {
  AdoptedPair conn(1, std::make_shared<Counting>());
  const auto& t = conn.transport;
  EXPECT_TRUE(wait_until([&] { return t->native_handle() == conn.fd(); }));
  EXPECT_EQ(t->write_buffer_size(), 0u);
  EXPECT_FALSE(t->is_closing());
  EXPECT_THROW(t->set_write_buffer_limits(1, 2), std::invalid_argument);
  t->close();
  EXPECT_TRUE(t->is_closing());
  EXPECT_EQ(conn.peer.recv_all(), "");
  EXPECT_TRUE(wait_until([&] { return t->native_handle() == -1; }));
}

// Answers each request byte with `reply_size` bytes and records, in commit order, the events
// it saw: 'd' data, 'p' pause, 'r' resume.
struct FlowRecorder : StreamHandler {
  explicit FlowRecorder(std::size_t reply) : reply_size(reply) {}
  const std::size_t reply_size;
  std::shared_ptr<StreamTransport> transport;  // strand-local
  std::mutex mu;
  std::string events;

  void on_connected(stm::Transaction&, const std::shared_ptr<StreamTransport>& t) override {
    transport = t;
    t->set_write_buffer_limits(0, 0);  // a pause for every write, a resume for every drain
  }
  void on_data(stm::Transaction& tx, std::span<const char> d) override {
    for (std::size_t i = 0; i < d.size(); ++i) transport->write(std::string(reply_size, 'x'));
    record(tx, 'd');
  }
  void on_pause_writing(stm::Transaction& tx) override { record(tx, 'p'); }
  void on_resume_writing(stm::Transaction& tx) override { record(tx, 'r'); }
  void record(stm::Transaction& tx, char c) {
    tx.on_commit([this, c] {
      std::lock_guard lock(mu);
      events.push_back(c);
    });
  }
  std::string seen() {
    std::lock_guard lock(mu);
    return events;
  }
};

// Another connection's slow callback, keeping the shared strand busy.
struct Sleeper : StreamHandler {
  void on_data(stm::Transaction&, std::span<const char>) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
};

// A peer that sends its next request only once it has the whole reply: the drain of that reply
// (its resume) must reach the handler before the next request does, and after its pause.
// twisted.web resumes a producer on the drain, and a late drain resumed the next request's
// producer (NotPaused) when a write's completion reached the strand behind the next read. Every
// byte is now written on the strand, so the order holds by construction; these runs (one strand
// shared with another connection's slow callbacks, as under the GIL, and two workers) check it
// with replies the kernel takes at once and replies it takes in part.
void flow_signals_in_order(std::size_t reply_size, int rounds) {
  ReactorOptions options;
  options.one_strand = true;
  AdoptedPair conn(2, std::make_shared<FlowRecorder>(reply_size), options);
  const auto& h = conn.handler;
  const auto other = socket_pair();
  auto busy = unix_adopt(*conn.reactor, other[0], std::make_shared<Sleeper>());
  const Client busy_peer(other[1]);
  for (int i = 0; i < rounds; ++i) {
    conn.peer.send("q");
    busy_peer.send("s");
    ASSERT_EQ(conn.peer.recv_exactly(reply_size).size(), reply_size) << "round " << i;
  }
  std::string expected;
  for (int i = 0; i < rounds; ++i) expected += "dpr";
  ASSERT_TRUE(wait_until([&] { return h->seen().size() >= expected.size(); }));
  const std::string seen = h->seen();
  const auto first_difference = std::mismatch(seen.begin(), seen.end(), expected.begin());
  EXPECT_EQ(seen, expected) << "first out of order at event "
                            << (first_difference.first - seen.begin());
}

TEST(StreamTransport, DrainOfAReplyPrecedesTheNextRequestSmallReplies) {
  flow_signals_in_order(512, 300);
}

TEST(StreamTransport, DrainOfAReplyPrecedesTheNextRequestLargeReplies) {
  flow_signals_in_order(std::size_t{4} * 1024 * 1024, 30);
}

// Keeps every byte and the end of the stream, in commit order, and the largest chunk one read
// delivered.
struct Collector : StreamHandler {
  void on_data(stm::Transaction& tx, std::span<const char> d) override {
    tx.on_commit([this, chunk = std::string(d.data(), d.size())] {
      std::lock_guard lock(mu);
      bytes += chunk;
      largest = std::max(largest, chunk.size());
      ++chunks;
    });
  }
  bool on_eof(stm::Transaction& tx) override {
    tx.on_commit([this] {
      std::lock_guard lock(mu);
      eof_after = bytes.size();
    });
    return false;
  }
  std::string received() {
    std::lock_guard lock(mu);
    return bytes;
  }
  std::mutex mu;
  std::string bytes;
  std::size_t largest = 0;
  std::size_t chunks = 0;
  std::size_t eof_after = std::string::npos;  // bytes received when on_eof ran
};

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  return s;
}

// A read waits for readability and reads only then: data sent in small pieces with pauses in
// between (each read finds little) arrives whole and in order, and so does a large transfer,
// whose reads fill their buffer and grow it from 4 KiB up to, never past, 64 KiB; the end of
// the stream comes after the last byte.
TEST(StreamTransport, ReadsPiecesAndLargeTransfersInOrder) {
  AdoptedPair conn(2, std::make_shared<Collector>());
  const auto& h = conn.handler;
  auto& peer = conn.peer;
  const std::string small = pattern(1000);
  for (std::size_t i = 0; i < small.size(); i += 100) {
    peer.send(small.substr(i, 100));
    std::this_thread::sleep_for(2ms);
  }
  ASSERT_TRUE(wait_until([&] { return h->received().size() == small.size(); }));
  EXPECT_EQ(h->received(), small);
  const std::string large = pattern(std::size_t{4} * 1024 * 1024);
  std::thread sender([&] {
    peer.send(large);
    peer.shutdown_write();
  });
  const bool all =
      wait_until([&] { return h->received().size() == small.size() + large.size(); }, 20000ms);
  sender.join();
  ASSERT_TRUE(all);
  EXPECT_TRUE(h->received() == small + large);
  ASSERT_TRUE(wait_until([&] {
    std::lock_guard lock(h->mu);
    return h->eof_after != std::string::npos;
  }));
  std::lock_guard lock(h->mu);
  EXPECT_EQ(h->eof_after, small.size() + large.size());
  EXPECT_GT(h->largest, 4u * 1024);
  EXPECT_LE(h->largest, 64u * 1024);
}

// Bytes and the end of the stream that arrive while reading is paused are not delivered until
// resume_reading(), and then all of them, the end last.
TEST(StreamTransport, DataAndEofWhilePausedAreDeliveredOnResume) {
  AdoptedPair conn(2, std::make_shared<Collector>());
  const auto& h = conn.handler;
  auto& peer = conn.peer;
  peer.send("first");
  ASSERT_TRUE(wait_until([&] { return h->received() == "first"; }));
  conn.transport->pause_reading();
  std::this_thread::sleep_for(20ms);
  const std::string rest = pattern(std::size_t{300} * 1000);
  std::thread sender([&] {
    peer.send(rest);
    peer.shutdown_write();
  });
  std::this_thread::sleep_for(100ms);
  {
    std::lock_guard lock(h->mu);
    EXPECT_EQ(h->bytes, "first");
    EXPECT_EQ(h->eof_after, std::string::npos);
  }
  conn.transport->resume_reading();
  sender.join();
  ASSERT_TRUE(wait_until([&] {
    std::lock_guard lock(h->mu);
    return h->eof_after != std::string::npos;
  }));
  EXPECT_EQ(h->received(), "first" + rest);
  std::lock_guard lock(h->mu);
  EXPECT_EQ(h->eof_after, 5 + rest.size());
}

// close() waits for the bytes before it: what the handler writes in the resume that the drain
// brings, and what commits while the close waits, is still sent before the end of the stream
// (asyncio's transport appends to its buffer until it drains, a TLS protocol's close_notify
// among them; Twisted sends what is written before its doWrite closes). Once the connection is
// closed, writes are ignored.
struct ResumeWritesTrailer : StreamHandler {
  std::shared_ptr<StreamTransport> transport;  // strand-local
  std::atomic<int> resumes{0};
  std::atomic<bool> closed{false};
  void on_connected(stm::Transaction&, const std::shared_ptr<StreamTransport>& t) override {
    transport = t;
  }
  void on_data(stm::Transaction&, std::span<const char>) override {
    // Far above the high water mark.
    transport->write(std::string(std::size_t{4} * 1024 * 1024, 'x'));
    transport->close();
  }
  void on_resume_writing(stm::Transaction& tx) override {
    transport->write(std::string("trailer"));
    tx.on_commit([this] { resumes.fetch_add(1); });
  }
  void on_closed(stm::Transaction& tx, std::error_code) override {
    tx.on_commit([this] { closed = true; });
  }
};

TEST(StreamTransport, WritesOfTheResumeAfterCloseAreSentBeforeTheEnd) {
  AdoptedPair conn(2, std::make_shared<ResumeWritesTrailer>());
  const auto& h = conn.handler;
  conn.peer.send("go");
  const std::string got = conn.peer.recv_all();
  EXPECT_EQ(h->resumes.load(), 1);
  ASSERT_EQ(got.size(), 4u * 1024 * 1024 + 7);
  EXPECT_EQ(got.substr(got.size() - 8), "xtrailer");
  ASSERT_TRUE(wait_until([&] { return h->closed.load(); }));
  conn.transport->write("after the end");  // ignored, no effect
  EXPECT_EQ(conn.transport->write_buffer_size(), 0u);
}

TEST(StreamTransport, WriteCommittedWhileTheCloseWaitsIsSent) {
  AdoptedPair conn(2, std::make_shared<Counting>());
  const auto& t = conn.transport;
  ASSERT_TRUE(wait_until([&] { return t->native_handle() == conn.fd(); }));
  // The peer reads nothing yet: the close waits.
  t->write(std::string(std::size_t{4} * 1024 * 1024, 'x'));
  t->close();
  t->write("tail");
  const std::string got = conn.peer.recv_all();
  ASSERT_EQ(got.size(), 4u * 1024 * 1024 + 4);
  EXPECT_EQ(got.substr(got.size() - 5), "xtail");
}

// A borrowed chunk is sent from its owner's bytes, in order with the copied ones around it and
// across partial sends, and its owner is released once the bytes reached the kernel; an abort
// releases the owners of what it drops.
struct BorrowedBytes {
  std::atomic<int> released{0};
  WriteChunk chunk(std::size_t size, char fill) {
    auto owner = std::make_shared<const std::string>(size, fill);
    const std::string_view bytes(*owner);
    return {std::shared_ptr<const void>(owner.get(),
                                        [this, owner](const void*) { released.fetch_add(1); }),
            bytes};
  }
};

TEST(StreamTransport, BorrowedChunksAreSentInOrderThenReleased) {
  AdoptedPair conn(2, std::make_shared<Counting>());
  const auto& t = conn.transport;
  BorrowedBytes owners;
  const std::size_t big = std::size_t{4} * 1024 * 1024;  // far more than the socket takes at once
  t->write(owners.chunk(big, 'a'));
  t->write(std::string("-"));
  t->write(owners.chunk(100, 'b'));
  t->write(owners.chunk(big, 'c'));
  t->close();
  const std::string got = conn.peer.recv_all();
  ASSERT_EQ(got.size(), 2 * big + 101);
  EXPECT_EQ(got, std::string(big, 'a') + "-" + std::string(100, 'b') + std::string(big, 'c'));
  ASSERT_TRUE(wait_until([&] { return owners.released.load() == 3; }));
}

TEST(StreamTransport, AnAbortReleasesTheBorrowedChunksItDrops) {
  AdoptedPair conn(2, std::make_shared<Counting>());
  const auto& t = conn.transport;
  ASSERT_TRUE(wait_until([&] { return t->native_handle() == conn.fd(); }));
  BorrowedBytes owners;
  // The peer reads nothing: the first chunk waits for writability, the rest in the queue.
  for (int i = 0; i < 4; ++i) t->write(owners.chunk(std::size_t{4} * 1024 * 1024, 'x'));
  ASSERT_TRUE(wait_until([&] { return t->write_buffer_size() < std::size_t{16} * 1024 * 1024; }));
  EXPECT_LT(owners.released.load(), 4);
  t->abort();
  ASSERT_TRUE(wait_until([&] { return owners.released.load() == 4; }));
}

// abort_keeping_sent() while a borrowed chunk is half sent hands the kernel the rest from where
// the kernel stopped: what the peer reads is a prefix of what was written, nothing repeated or
// skipped, and the owner is released.
TEST(StreamTransport, AbortKeepingSentContinuesABorrowedChunkWhereTheKernelStopped) {
  AdoptedPair conn(2, std::make_shared<Counting>());
  const auto& t = conn.transport;
  ASSERT_TRUE(wait_until([&] { return t->native_handle() == conn.fd(); }));
  std::atomic<int> released{0};
  auto pattern = std::make_shared<std::string>(std::size_t{8} * 1024 * 1024, '\0');
  for (std::size_t i = 0; i < pattern->size(); ++i) (*pattern)[i] = static_cast<char>(i % 251);
  const std::string_view bytes(*pattern);
  t->write(WriteChunk(
      std::shared_ptr<const void>(pattern.get(), [&released, pattern](const void*) { ++released; }),
      bytes));
  ASSERT_TRUE(wait_until([&] { return t->write_buffer_size() < bytes.size(); }));
  std::string got = conn.peer.recv_exactly(std::size_t{1} * 1024 * 1024);  // room for more
  t->abort_keeping_sent();
  got += conn.peer.recv_all();
  ASSERT_GE(got.size(), std::size_t{1} * 1024 * 1024);
  ASSERT_LT(got.size(), bytes.size());
  EXPECT_TRUE(got == bytes.substr(0, got.size()));
  ASSERT_TRUE(wait_until([&] { return released.load() == 1; }));
}

}  // namespace
}  // namespace tmr::reactor
