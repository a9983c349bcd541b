#include "reactor/unix_transport.hpp"

#include <gtest/gtest.h>

#include "adopted_pair.hpp"
#include "echo_handler.hpp"
#include "stm/stm.hpp"
#include "test_util.hpp"

namespace tmr::reactor {
namespace {

using namespace testing;

TEST(UnixTransport, Echo) {
  TempDir dir;
  RunningReactor r(2);
  const auto path = dir.file("echo.sock");
  auto listener =
      unix_listen(*r, path, [](stm::Transaction&) { return std::make_shared<EchoHandler>(); });
  EXPECT_EQ(listener->local_address(), path);
  EXPECT_EQ(listener->port(), 0);
  auto client = Client::unix_stream(path);
  client.send("over a unix socket");
  EXPECT_EQ(client.recv_exactly(18), "over a unix socket");
}

TEST(UnixTransport, AdoptSocketPairAndConnectFromReactor) {
  AdoptedPair conn(2, std::make_shared<EchoHandler>());
  const auto& h = conn.handler;
  auto& peer = conn.peer;
  peer.send("pair");
  EXPECT_EQ(peer.recv_exactly(4), "pair");
  peer.shutdown_write();
  EXPECT_EQ(peer.recv_all(), "");  // EOF -> orderly close
  EXPECT_TRUE(wait_until([&] { return h->closed(); }));
  EXPECT_FALSE(h->close_error());
}

TEST(UnixTransport, AdoptedConnectionsShareTheStrandTheyAreGiven) {
  RunningReactor r(2);
  const Strand strand = r->make_strand();
  const auto first = socket_pair();
  const auto second = socket_pair();
  auto h1 = std::make_shared<EchoHandler>();
  auto h2 = std::make_shared<EchoHandler>();
  std::error_code ec;
  auto t1 = unix_adopt(*r, first[0], h1, strand, ec);
  ASSERT_FALSE(ec);
  auto t2 = unix_adopt(*r, second[0], h2, strand, ec);
  ASSERT_FALSE(ec);
  const auto third = socket_pair();
  auto own = unix_adopt(*r, third[0], std::make_shared<EchoHandler>(), Strand(), ec);
  ASSERT_FALSE(ec);
  ::close(third[1]);
  EXPECT_TRUE(t1->strand() == strand);
  EXPECT_TRUE(t2->strand() == strand);
  EXPECT_FALSE(own->strand() == strand);  // an empty strand asks for a new one
  own->abort();
  Client peer1(first[1]);
  Client peer2(second[1]);
  peer1.send("one");
  peer2.send("two");
  EXPECT_EQ(peer1.recv_exactly(3), "one");
  EXPECT_EQ(peer2.recv_exactly(3), "two");
}

TEST(UnixTransport, ConnectToMissingPathFails) {
  TempDir dir;
  struct Failing : StreamHandler {
    std::atomic<bool> failed{false};
    void on_data(stm::Transaction&, std::span<const char>) override {}
    void on_connect_failed(stm::Transaction&, std::error_code) override { failed = true; }
  };
  RunningReactor r(1);
  auto h = std::make_shared<Failing>();
  unix_connect(*r, dir.file("nobody-here"), h);
  EXPECT_TRUE(wait_until([&] { return h->failed.load(); }));
  std::error_code ec;
  EXPECT_EQ(unix_listen(*r, dir.file("no-dir/x.sock"), nullptr, {}, ec), nullptr);
  EXPECT_TRUE(ec);
}

}  // namespace
}  // namespace tmr::reactor
