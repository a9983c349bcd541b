#include "reactor/udp_socket.hpp"

#include <gtest/gtest.h>

#include <mutex>
#include <vector>

#include "reactor/reactor.hpp"
#include "stm/stm.hpp"
#include "test_util.hpp"

namespace tmr::reactor {
namespace {

using namespace testing;

struct Echo : DatagramHandler {
  std::weak_ptr<UdpSocket> socket;
  void on_datagram(stm::Transaction&, std::span<const char> d, const UdpEndpoint& from) override {
    socket.lock()->send_to(std::string(d.data(), d.size()), from);
  }
};

struct Collect : DatagramHandler {
  std::mutex mu;
  std::vector<std::string> got;
  void on_datagram(stm::Transaction& tx, std::span<const char> d, const UdpEndpoint&) override {
    tx.on_commit([this, s = std::string(d.data(), d.size())] {
      std::lock_guard lock(mu);
      got.push_back(s);
    });
  }
  std::size_t size() {
    std::lock_guard lock(mu);
    return got.size();
  }
};

void udp_echo(const std::string& host) {
  RunningReactor r(2);
  auto echo = std::make_shared<Echo>();
  std::error_code ec;
  auto server = udp_bind(*r, host, 0, echo, ec);
  if (ec) GTEST_SKIP() << "no " << host << ": " << ec.message();
  echo->socket = server;
  EXPECT_NE(server->local_endpoint().port, 0);
  auto collect = std::make_shared<Collect>();
  auto client = udp_bind(*r, host, 0, collect);
  for (int i = 0; i < 20; ++i) client->send_to("d" + std::to_string(i), server->local_endpoint());
  // Loopback UDP does not drop 20 small datagrams in practice; require most, check content.
  EXPECT_TRUE(wait_until([&] { return collect->size() == 20; }, 3000ms));
  std::lock_guard lock(collect->mu);
  for (std::size_t i = 0; i < collect->got.size(); ++i)
    EXPECT_EQ(collect->got[i], "d" + std::to_string(i));
  server->close();
  client->close();
}

TEST(UdpSocket, EchoIPv4) {
  udp_echo("127.0.0.1");
}
TEST(UdpSocket, EchoIPv6) {
  udp_echo("::1");
}

TEST(UdpSocket, SendsOfAbortedAttemptsAreNotSent) {
  stm::set_abort_injection(0.5, 5);
  RunningReactor r(2);
  auto collect = std::make_shared<Collect>();
  auto sink = udp_bind(*r, "127.0.0.1", 0, collect);
  auto source = udp_bind(*r, "127.0.0.1", 0, std::make_shared<Collect>());
  std::atomic<int> committed{0};
  for (int i = 0; i < 30; ++i) {
    r->post([&, i](stm::Transaction& tx) {
      source->send_to("m" + std::to_string(i), sink->local_endpoint());
      tx.on_commit([&] { committed.fetch_add(1); });
    });
  }
  const bool ok =
      wait_until([&] { return committed.load() == 30 && collect->size() >= 30; }, 3000ms);
  std::this_thread::sleep_for(50ms);
  stm::set_abort_injection(0.0);
  EXPECT_TRUE(ok);
  EXPECT_EQ(collect->size(), 30u);
}

TEST(UdpSocket, InvalidDestinationFailsWithErrorCodeOrThrows) {
  RunningReactor r(1);
  auto s = udp_bind(*r, "127.0.0.1", 0, std::make_shared<Collect>());
  std::error_code ec;
  s->send_to("x", UdpEndpoint{"not-an-address", 9}, ec);
  EXPECT_TRUE(ec);
  EXPECT_THROW(s->send_to("x", UdpEndpoint{"not-an-address", 9}), std::system_error);
  EXPECT_EQ(udp_bind(*r, "nope", 0, std::make_shared<Collect>(), ec), nullptr);
  EXPECT_TRUE(ec);
}

}  // namespace
}  // namespace tmr::reactor
