#include "reactor/unix_transport.hpp"

#include <gtest/gtest.h>

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
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  RunningReactor r(2);
  auto h = std::make_shared<EchoHandler>();
  unix_adopt(*r, fds[0], h);
  Client peer(fds[1]);
  peer.send("pair");
  EXPECT_EQ(peer.recv_exactly(4), "pair");
  peer.shutdown_write();
  EXPECT_EQ(peer.recv_all(), "");  // EOF -> orderly close
  EXPECT_TRUE(wait_until([&] { return h->closed(); }));
  EXPECT_FALSE(h->close_error());
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
