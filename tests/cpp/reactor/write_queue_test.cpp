#include "reactor/write_queue.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <mutex>
#include <sstream>

#include "reactor/detail/stream_connection.hpp"
#include "reactor/tcp_transport.hpp"
#include "stm/stm.hpp"
#include "test_util.hpp"

namespace tmr::reactor {
namespace {

using namespace testing;

TEST(WriteQueue, WaterMarksSignalOncePerCrossing) {
  WriteQueue q;
  q.set_limits(10, 4);
  EXPECT_EQ(q.push(WriteChunk("12345")), FlowSignal::none);
  EXPECT_EQ(q.push(WriteChunk("123456")), FlowSignal::pause);  // 11 > 10
  EXPECT_EQ(q.push(WriteChunk("1")), FlowSignal::none);        // already paused
  std::vector<WriteChunk> batch;
  q.take_batch(batch);
  EXPECT_EQ(batch.size(), 3u);
  EXPECT_TRUE(q.idle());
  EXPECT_EQ(q.size(), 12u);
  EXPECT_EQ(q.consumed(7), FlowSignal::none);    // 5 left
  EXPECT_EQ(q.consumed(1), FlowSignal::resume);  // 4 <= low
  EXPECT_EQ(q.consumed(4), FlowSignal::none);
  EXPECT_THROW(q.set_limits(1, 2), std::invalid_argument);
}

// A producer its owner paused before the queue crossed the high water mark (for bytes not
// committed yet) hears of the drain like one the queue paused.
TEST(WriteQueue, HeldPauseResumesAtTheLowWaterMark) {
  WriteQueue q;
  q.set_limits(10, 4);
  EXPECT_FALSE(q.hold_paused());  // empty: at the low water mark already
  EXPECT_FALSE(q.paused());
  EXPECT_EQ(q.push(WriteChunk("1234567")), FlowSignal::none);  // 7: between the marks
  EXPECT_TRUE(q.hold_paused());
  EXPECT_TRUE(q.paused());
  EXPECT_EQ(q.push(WriteChunk("12345")),
            FlowSignal::none);  // 12 > 10, but paused already: no second pause
  std::vector<WriteChunk> batch;
  q.take_batch(batch);
  EXPECT_EQ(q.consumed(7), FlowSignal::none);    // 5 left
  EXPECT_EQ(q.consumed(1), FlowSignal::resume);  // 4 <= low
  EXPECT_FALSE(q.hold_paused());                 // 4 <= low: nothing to wait for
  EXPECT_FALSE(q.paused());
}

// Chunks leave in the order they came, whatever the batches and the pushes between them (the
// queue is a vector with a head index: taking part of it and pushing more must keep the order).
TEST(WriteQueue, ChunksLeaveInOrderAcrossPartialBatchesAndPushes) {
  WriteQueue q;
  int pushed = 0;
  int taken = 0;
  std::size_t bytes = 0;
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < 7 + round % 40; ++i) {
      const auto chunk = std::to_string(pushed++);
      bytes += chunk.size();
      q.push(WriteChunk(chunk));
    }
    std::vector<WriteChunk> batch;
    q.take_batch(batch, 3 + round % 20);
    for (const auto& chunk : batch) {
      ASSERT_EQ(chunk.bytes(), std::to_string(taken++));
      q.consumed(chunk.size());
      bytes -= chunk.size();
    }
    EXPECT_EQ(q.size(), bytes);
    EXPECT_EQ(q.idle(), taken == pushed);
  }
  while (!q.idle()) {
    std::vector<WriteChunk> batch;
    q.take_batch(batch);
    for (const auto& chunk : batch) ASSERT_EQ(chunk.bytes(), std::to_string(taken++));
  }
  EXPECT_EQ(taken, pushed);
}

// The core promise: writes requested by aborted attempts never reach the wire; committed ones
// always do, in commit order. Every transaction takes the next number from a shared TVar and
// writes it to its connection; each connection must see increasing numbers, and all
// connections together exactly 1..N.
TEST(WriteQueue, InjectedAbortsNeverReachTheWireCommittedWritesAlwaysDoInOrder) {
  stm::set_abort_injection(0.3, 1234);
  static stm::TVar<std::uint64_t> counter(0);
  stm::atomically([](stm::Transaction& tx) { counter.store(tx, 0); });  // --gtest_repeat
  struct Numbering : StreamHandler {
    std::shared_ptr<StreamTransport> t;
    void on_connected(stm::Transaction&, const std::shared_ptr<StreamTransport>& tr) override {
      t = tr;
    }
    void on_data(stm::Transaction& tx, std::span<const char> d) override {
      for (char c : d) {
        if (c != '\n') continue;
        const auto n = counter.load(tx) + 1;
        counter.store(tx, n);
        t->write(std::to_string(n) + "\n");
      }
    }
  };
  constexpr int kClients = 4, kRequests = 200;
  std::vector<std::vector<std::uint64_t>> received(kClients);
  {
    RunningReactor r(2);
    auto listener = tcp_listen(*r, "127.0.0.1", 0,
                               [](stm::Transaction&) { return std::make_shared<Numbering>(); });
    std::vector<std::thread> threads;
    threads.reserve(kClients);
    for (int c = 0; c < kClients; ++c) {
      threads.emplace_back([&, c] {
        auto client = Client::tcp("127.0.0.1", listener->port());
        std::string got;
        for (int i = 0; i < kRequests; ++i) {
          client.send("\n");
          // One reply line per request: read until the newline.
          while (got.empty() || got.back() != '\n') {
            auto part = client.recv_exactly(1);
            if (part.empty()) return;
            got += part;
          }
          received[c].push_back(std::stoull(got));
          got.clear();
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  stm::set_abort_injection(0.0);
  std::vector<std::uint64_t> all;
  for (int c = 0; c < kClients; ++c) {
    ASSERT_EQ(received[c].size(), static_cast<std::size_t>(kRequests)) << "client " << c;
    for (std::size_t i = 1; i < received[c].size(); ++i)
      ASSERT_LT(received[c][i - 1], received[c][i]);
    all.insert(all.end(), received[c].begin(), received[c].end());
  }
  std::sort(all.begin(), all.end());
  for (std::size_t i = 0; i < all.size(); ++i)
    ASSERT_EQ(all[i], i + 1) << "a number was lost or sent twice";
}

// Many small writes in one transaction arrive as one ordered stream, even with aborts.
TEST(WriteQueue, WritesOfOneTransactionKeepTheirOrder) {
  stm::set_abort_injection(0.4, 99);
  struct Burst : StreamHandler {
    void on_connected(stm::Transaction&, const std::shared_ptr<StreamTransport>& t) override {
      for (int i = 0; i < 1000; ++i) t->write(std::to_string(i) + ",");
      t->close();
    }
    void on_data(stm::Transaction&, std::span<const char>) override {}
  };
  std::string expect;
  for (int i = 0; i < 1000; ++i) expect += std::to_string(i) + ",";
  RunningReactor r(2);
  auto listener =
      tcp_listen(*r, "127.0.0.1", 0, [](stm::Transaction&) { return std::make_shared<Burst>(); });
  auto client = Client::tcp("127.0.0.1", listener->port());
  const auto got = client.recv_all();
  stm::set_abort_injection(0.0);
  EXPECT_EQ(got, expect);
}

// Writes to one transport from many strands (so from both workers at once) reach the wire in
// commit order: each transaction takes the next number and writes it; the peer must read
// 1, 2, 3, ... with no gap, even with injected aborts.
TEST(WriteQueue, WritesFromManyStrandsKeepCommitOrder) {
  stm::set_abort_injection(0.3, 77);
  static stm::TVar<std::uint64_t> next(0);
  stm::atomically([](stm::Transaction& tx) { next.store(tx, 0); });  // --gtest_repeat
  struct Holder : StreamHandler {
    std::atomic<bool> ready{false};
    std::shared_ptr<StreamTransport> t;
    void on_connected(stm::Transaction& tx, const std::shared_ptr<StreamTransport>& tr) override {
      t = tr;
      tx.on_commit([this] { ready = true; });
    }
    void on_data(stm::Transaction&, std::span<const char>) override {}
  };
  auto holder = std::make_shared<Holder>();
  RunningReactor r(2);
  auto listener = tcp_listen(*r, "127.0.0.1", 0, [&](stm::Transaction&) { return holder; });
  auto client = Client::tcp("127.0.0.1", listener->port());
  ASSERT_TRUE(wait_until([&] { return holder->ready.load(); }));
  constexpr int kWrites = 2000;
  for (int i = 0; i < kWrites; ++i) {
    r->post(
        [&](stm::Transaction& tx) {
          const auto n = next.load(tx) + 1;
          next.store(tx, n);
          holder->t->write(std::to_string(n) + "\n");
        },
        StrandChoice::fresh);
  }
  std::string expect;
  for (int i = 1; i <= kWrites; ++i) expect += std::to_string(i) + "\n";
  const auto got = client.recv_exactly(expect.size());
  stm::set_abort_injection(0.0);
  EXPECT_EQ(got, expect);
}

using TcpConnection = detail::StreamConnection<boost::asio::ip::tcp>;

// Holds the accepted connection's transport.
struct Member : StreamHandler {
  std::shared_ptr<StreamTransport> t;
  std::atomic<bool> ready{false};
  void on_connected(stm::Transaction& tx, const std::shared_ptr<StreamTransport>& tr) override {
    t = tr;
    tx.on_commit([this] { ready = true; });
  }
  void on_data(stm::Transaction&, std::span<const char>) override {}
};

// A reactor, one TCP connection to it, and an event that holds the connection's strand (it
// touches no shared state and waits) until release() or the end of the test: what is posted to
// the strand meanwhile waits behind it.
struct HeldConnection {
  explicit HeldConnection(unsigned workers)
      : r(workers),
        listener(tcp_listen(*r, "127.0.0.1", 0, [m = member](stm::Transaction&) { return m; })),
        client(Client::tcp("127.0.0.1", listener->port())) {}
  HeldConnection(const HeldConnection&) = delete;
  HeldConnection& operator=(const HeldConnection&) = delete;
  HeldConnection(HeldConnection&&) = delete;
  HeldConnection& operator=(HeldConnection&&) = delete;
  ~HeldConnection() { release(); }  // also when an assertion returned early

  // Waits for the connection, then holds its strand; false if either did not come.
  bool hold() {
    if (!wait_until([&] { return member->ready.load(); })) return false;
    connection = dynamic_cast<TcpConnection*>(member->t.get());
    if (connection == nullptr) return false;
    r->post(member->t->strand(), [this](stm::Transaction&) {
      holding = true;
      while (!released.load()) std::this_thread::sleep_for(1ms);
    });
    return wait_until([&] { return holding.load(); });
  }
  void release() { released = true; }

  std::atomic<bool> holding{false}, released{false};  // outlive the reactor's workers
  const std::shared_ptr<Member> member = std::make_shared<Member>();
  RunningReactor r;
  std::shared_ptr<StreamListener> listener;
  Client client;
  TcpConnection* connection = nullptr;
};

// Several committers, one connection: what transactions on other strands commit while its
// flush is pending goes out in one socket write per 64 chunks, in commit order.
TEST(WriteQueue, CommitsWhileAFlushIsPendingShareOneSend) {
  static stm::TVar<std::uint64_t> next(0);
  stm::atomically([](stm::Transaction& tx) { next.store(tx, 0); });  // --gtest_repeat
  // The connection's flush waits while the writes commit on the other worker.
  HeldConnection held(2);
  ASSERT_TRUE(held.hold());
  const auto& member = held.member;
  auto& r = held.r;
  constexpr int kWrites = 200;
  std::string expect;
  for (int i = 1; i <= kWrites; ++i) expect += std::to_string(i) + "\n";
  for (int i = 0; i < kWrites; ++i) {
    r->post(
        [&](stm::Transaction& tx) {
          const auto n = next.load(tx) + 1;
          next.store(tx, n);
          member->t->write(std::to_string(n) + "\n");
        },
        StrandChoice::fresh);
  }
  ASSERT_TRUE(wait_until([&] { return member->t->write_buffer_size() == expect.size(); }));
  EXPECT_EQ(held.connection->sends(), 0u);
  held.release();
  EXPECT_EQ(held.client.recv_exactly(expect.size()), expect);
  EXPECT_LE(held.connection->sends(), static_cast<std::uint64_t>((kWrites + 63) / 64));
}

// A connection's own events, ready together: each one's write is flushed behind the others, as a
// stock reactor writes in its next iteration, so the replies leave in one socket write and wake
// the peer once (docs/REACTOR.md, "Coalescing").
TEST(WriteQueue, WritesOfAConnectionsEventsReadyTogetherShareOneSend) {
  // The events posted while the strand is held become ready together.
  HeldConnection held(1);
  ASSERT_TRUE(held.hold());
  constexpr int kEvents = 16;
  std::string expect;
  for (int i = 0; i < kEvents; ++i) {
    std::string line = std::to_string(i) + "\n";
    expect += line;
    const auto& t = held.member->t;
    held.r->post(t->strand(), [&t, line](stm::Transaction&) { t->write(line); });
  }
  held.release();
  EXPECT_EQ(held.client.recv_exactly(expect.size()), expect);
  // The count follows the socket write, which the client may see first.
  ASSERT_TRUE(wait_until([&] { return held.connection->sends() > 0; }));
  EXPECT_EQ(held.connection->sends(), 1u);
}

// A slow reader: the producer is paused above the high water mark and resumed below the low
// one; nothing is lost.
TEST(WriteQueue, FlowControlPausesAndResumesTheProducer) {
  struct Producer : StreamHandler {
    std::shared_ptr<StreamTransport> t;
    std::atomic<int> pauses{0}, resumes{0};
    std::atomic<std::size_t> size_at_resume{0};
    void on_connected(stm::Transaction&, const std::shared_ptr<StreamTransport>& tr) override {
      t = tr;
      t->set_write_buffer_limits(std::size_t{64} * 1024, std::size_t{16} * 1024);
      const std::string chunk(std::size_t{16} * 1024, 'x');
      for (int i = 0; i < 256; ++i) t->write(chunk);  // 4 MiB: far beyond the socket buffers
      t->close();
    }
    void on_data(stm::Transaction&, std::span<const char>) override {}
    void on_pause_writing(stm::Transaction& tx) override {
      tx.on_commit([this] { pauses.fetch_add(1); });
    }
    void on_resume_writing(stm::Transaction& tx) override {
      tx.on_commit([this] {
        size_at_resume = t->write_buffer_size();
        resumes.fetch_add(1);
      });
    }
  };
  auto producer = std::make_shared<Producer>();
  RunningReactor r(2);
  auto listener = tcp_listen(*r, "127.0.0.1", 0, [&](stm::Transaction&) { return producer; });
  auto client = Client::tcp("127.0.0.1", listener->port());
  ASSERT_TRUE(wait_until([&] { return producer->pauses.load() == 1; }));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(producer->resumes.load(), 0);  // the reader has not read yet
  EXPECT_GT(producer->t->write_buffer_size(), 64u * 1024);
  const auto got = client.recv_all();
  EXPECT_EQ(got.size(), 256u * 16 * 1024);
  EXPECT_EQ(got.find_first_not_of('x'), std::string::npos);
  EXPECT_TRUE(wait_until([&] { return producer->resumes.load() == 1; }));
  EXPECT_LE(producer->size_at_resume.load(), 16u * 1024);
}

// close_all: every committed write is sent before the connection closes; run() then returns.
TEST(WriteQueue, ShutdownFlushesPendingWrites) {
  constexpr std::size_t kBytes = std::size_t{2} * 1024 * 1024;
  struct Writer : StreamHandler {
    std::atomic<bool> wrote{false};
    void on_data(stm::Transaction&, std::span<const char>) override {}
    void on_connected(stm::Transaction& tx, const std::shared_ptr<StreamTransport>& t) override {
      t->write(std::string(kBytes, 'y'));
      tx.on_commit([this] { wrote = true; });
    }
  };
  auto writer = std::make_shared<Writer>();
  RunningReactor r(2);
  auto listener = tcp_listen(*r, "127.0.0.1", 0, [&](stm::Transaction&) { return writer; });
  auto client = Client::tcp("127.0.0.1", listener->port());
  ASSERT_TRUE(wait_until([&] { return writer->wrote.load(); }));
  r->close_all();  // the reader has not read anything yet: most bytes are still queued
  std::this_thread::sleep_for(50ms);
  const auto got = client.recv_all();
  EXPECT_EQ(got.size(), kBytes);
  EXPECT_TRUE(r.join_within(3000ms)) << "run() did not return after close_all";
}

}  // namespace
}  // namespace tmr::reactor
