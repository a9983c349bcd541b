#include "reactor/detail/local_peers.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "reactor/detail/reactor_impl.hpp"
#include "reactor/tcp_transport.hpp"
#include "stm/stm.hpp"
#include "test_util.hpp"

namespace tmr::reactor {
namespace {

using namespace testing;
using detail::LocalPeers;
using Endpoint = LocalPeers::Endpoint;
namespace ip = boost::asio::ip;

Endpoint at(const char* address, unsigned short port) {
  return {ip::make_address(address), port};
}

// ---- the registry ----

TEST(LocalPeers, TheSecondEndOfAPairTakesTheFirstEndsStrand) {
  Reactor r(with_workers(2));
  LocalPeers peers;
  int made = 0;
  auto make = [&] {
    ++made;
    return r.make_strand().impl();
  };
  const auto client = at("127.0.0.1", 40000);
  const auto server = at("127.0.0.1", 8080);
  auto first = peers.strand_for(client, server, make);
  EXPECT_EQ(peers.registered(), 1U);
  auto second = peers.strand_for(server, client, make);
  EXPECT_EQ(second, first);
  EXPECT_EQ(made, 1);
  EXPECT_EQ(peers.registered(), 0U);  // the pair left the registry
  // Another connection between the same two ports later is a new pair.
  auto third = peers.strand_for(server, client, make);
  EXPECT_NE(third, first);
}

TEST(LocalPeers, ConnectionsOfDifferentPairsGetDifferentStrands) {
  Reactor r(with_workers(2));
  LocalPeers peers;
  auto make = [&] { return r.make_strand().impl(); };
  const auto server = at("127.0.0.1", 8080);
  auto a = peers.strand_for(server, at("127.0.0.1", 40000), make);
  auto b = peers.strand_for(server, at("127.0.0.1", 40001), make);
  EXPECT_NE(a, b);
  EXPECT_EQ(peers.strand_for(at("127.0.0.1", 40001), server, make), b);
  EXPECT_EQ(peers.strand_for(at("127.0.0.1", 40000), server, make), a);
}

TEST(LocalPeers, AnIPv4MappedEndMatchesItsIPv4Peer) {
  // A listener on "::" sees an IPv4 client as ::ffff:127.0.0.1.
  Reactor r(with_workers(2));
  LocalPeers peers;
  auto make = [&] { return r.make_strand().impl(); };
  auto accepted =
      peers.strand_for(at("::ffff:127.0.0.1", 8080), at("::ffff:127.0.0.1", 40000), make);
  EXPECT_EQ(peers.strand_for(at("127.0.0.1", 40000), at("127.0.0.1", 8080), make), accepted);
}

TEST(LocalPeers, OnlyLoopbackOrOwnAddressPeersMayBeLocal) {
  EXPECT_TRUE(LocalPeers::may_be_local(at("127.0.0.1", 1), at("127.0.0.1", 2)));
  EXPECT_TRUE(LocalPeers::may_be_local(at("::1", 1), at("::1", 2)));
  EXPECT_TRUE(LocalPeers::may_be_local(at("::ffff:127.0.0.1", 1), at("::ffff:127.0.0.1", 2)));
  EXPECT_TRUE(LocalPeers::may_be_local(at("192.0.2.7", 1), at("192.0.2.7", 2)));
  EXPECT_FALSE(LocalPeers::may_be_local(at("192.0.2.7", 1), at("198.51.100.1", 2)));
  EXPECT_FALSE(LocalPeers::may_be_local(at("2001:db8::1", 1), at("2001:db8::2", 2)));
}

TEST(LocalPeers, AnEndWhoseStrandIsGoneIsNoPeer) {
  Reactor r(with_workers(2));
  LocalPeers peers;
  auto make = [&] { return r.make_strand().impl(); };
  const auto client = at("127.0.0.1", 40000);
  const auto server = at("127.0.0.1", 8080);
  std::uint64_t gone_id = 0;
  {
    auto strand = peers.strand_for(client, server, make);
    gone_id = strand->id;
  }  // the connection and its strand are gone; the entry is dead
  EXPECT_NE(peers.strand_for(server, client, make)->id, gone_id);
}

TEST(LocalPeers, DeadEndsAreSweptAsTheRegistryGrows) {
  // Ends whose peer is another process are never matched: they must not pile up.
  Reactor r(with_workers(2));
  LocalPeers peers;
  auto make = [&] { return r.make_strand().impl(); };
  std::vector<std::shared_ptr<detail::StrandImpl>> live;
  for (unsigned short port = 1000; port < 1100; ++port) {
    auto strand = peers.strand_for(at("127.0.0.1", 8080), at("127.0.0.1", port), make);
    if (port % 10 == 0) live.push_back(std::move(strand));
  }
  for (unsigned short port = 2000; port < 2200; ++port) {
    peers.strand_for(at("127.0.0.1", 8080), at("127.0.0.1", port), make);
  }
  // Without sweeps there would be 300 entries; the live ones were all kept.
  EXPECT_LE(peers.registered(), 64U);
  EXPECT_GE(peers.registered(), live.size());
  for (unsigned short port = 1000; port < 1100; port += 10) {
    auto strand = peers.strand_for(at("127.0.0.1", port), at("127.0.0.1", 8080), make);
    EXPECT_EQ(strand, live[(port - 1000) / 10]);
  }
}

// ---- through the reactor ----

/// Records the strand each connection it handles runs on.
class StrandRecorder : public StreamHandler {
 public:
  void on_connected(stm::Transaction& /*tx*/, const std::shared_ptr<StreamTransport>& t) override {
    std::lock_guard lock(mu_);
    strand_ = t->strand().id();
  }
  void on_data(stm::Transaction& /*tx*/, std::span<const char> /*data*/) override {}
  void on_closed(stm::Transaction& /*tx*/, std::error_code /*ec*/) override {}
  std::uint64_t strand() {
    std::lock_guard lock(mu_);
    return strand_;
  }

 private:
  std::mutex mu_;
  std::uint64_t strand_ = 0;
};

/// A listener whose accepted connections record their strands.
struct Accepted {
  std::mutex mu;
  std::vector<std::shared_ptr<StrandRecorder>> handlers;
  HandlerFactory factory() {
    return [this](stm::Transaction& /*tx*/) {
      auto handler = std::make_shared<StrandRecorder>();
      stm::current_transaction()->on_commit([this, handler] {
        std::lock_guard lock(mu);
        handlers.push_back(handler);
      });
      return handler;
    };
  }
  std::uint64_t strand(std::size_t i) {
    std::lock_guard lock(mu);
    return i < handlers.size() ? handlers[i]->strand() : 0;
  }
};

TEST(LocalPeers, AnAdoptedClientRunsOnTheStrandOfTheConnectionItsListenerAccepted) {
  RunningReactor r(2);
  Accepted accepted;
  auto listener = tcp_listen(*r, "127.0.0.1", 0, accepted.factory());
  auto client = Client::tcp("127.0.0.1", listener->port());
  ASSERT_TRUE(wait_until([&] { return accepted.strand(0) != 0; }));
  auto handler = std::make_shared<StrandRecorder>();
  auto transport = tcp_adopt(*r, client.release(), handler);
  ASSERT_TRUE(wait_until([&] { return handler->strand() != 0; }));
  EXPECT_EQ(handler->strand(), accepted.strand(0));
  EXPECT_EQ(r->impl().local_peers().registered(), 0U);
}

TEST(LocalPeers, AConnectionAcceptedAfterItsClientWasAdoptedRunsOnTheClientsStrand) {
  RunningReactor r(2);
  unsigned short port = 0;
  const int listening = loopback_listener(port);
  // The handshake completes in the kernel; nobody accepts until the listener is adopted.
  auto client = Client::tcp("127.0.0.1", port);
  auto handler = std::make_shared<StrandRecorder>();
  auto transport = tcp_adopt(*r, client.release(), handler);
  ASSERT_TRUE(wait_until([&] { return handler->strand() != 0; }));
  Accepted accepted;
  auto listener = tcp_adopt_listener(*r, listening, accepted.factory());
  ASSERT_TRUE(wait_until([&] { return accepted.strand(0) != 0; }));
  EXPECT_EQ(accepted.strand(0), handler->strand());
}

TEST(LocalPeers, ConnectionsFromAnotherOwnerKeepStrandsOfTheirOwn) {
  RunningReactor r(2);
  Accepted accepted;
  auto listener = tcp_listen(*r, "127.0.0.1", 0, accepted.factory());
  auto first = Client::tcp("127.0.0.1", listener->port());
  auto second = Client::tcp("127.0.0.1", listener->port());
  ASSERT_TRUE(wait_until([&] { return accepted.strand(1) != 0; }));
  EXPECT_NE(accepted.strand(0), accepted.strand(1));
  EXPECT_EQ(r->impl().local_peers().registered(), 2U);  // their peers are not this reactor's
}

/// Records which end's first event ran, in order.
class OrderRecorder : public StreamHandler {
 public:
  OrderRecorder(std::string name, std::mutex& mu, std::vector<std::string>& order)
      : name_(std::move(name)), mu_(mu), order_(order) {}
  void on_connected(stm::Transaction& /*tx*/,
                    const std::shared_ptr<StreamTransport>& /*t*/) override {
    stm::current_transaction()->on_commit([this] {
      std::lock_guard lock(mu_);
      order_.push_back(name_);
    });
  }
  void on_data(stm::Transaction& /*tx*/, std::span<const char> /*data*/) override {}
  void on_closed(stm::Transaction& /*tx*/, std::error_code /*ec*/) override {}

 private:
  std::string name_;
  std::mutex& mu_;
  std::vector<std::string>& order_;
};

// A client adopted while its peer waits in the backlog of one of the reactor's listeners: the
// accepted end starts first, as on a single-threaded loop, where the listening socket was readable
// before the client's connect completed. One worker, busy with the event that connects and adopts,
// so that the listener cannot have accepted before the adoption commits.
void accepted_end_starts_first(ReactorOptions options) {
  RunningReactor r(1, std::move(options));
  std::mutex mu;
  std::vector<std::string> order;
  auto listener = tcp_listen(*r, "127.0.0.1", 0, [&](stm::Transaction& /*tx*/) {
    return std::make_shared<OrderRecorder>("server", mu, order);
  });
  const unsigned short port = listener->port();
  std::shared_ptr<StreamTransport> client;
  r->post(r->make_strand(), [&](stm::Transaction& /*tx*/) {
    auto socket = Client::tcp("127.0.0.1", port);  // completes in the listener's backlog
    client = tcp_adopt(*r, socket.release(), std::make_shared<OrderRecorder>("client", mu, order));
  });
  ASSERT_TRUE(wait_until([&] {
    std::lock_guard lock(mu);
    return order.size() == 2;
  }));
  std::lock_guard lock(mu);
  EXPECT_EQ(order, (std::vector<std::string>{"server", "client"}));
}

TEST(LocalPeers, AnAcceptedEndStartsBeforeItsAdoptedClient) {
  accepted_end_starts_first({});
}

TEST(LocalPeers, AnAcceptedEndStartsBeforeItsAdoptedClientOnOneStrand) {
  ReactorOptions options;
  options.one_strand = true;
  accepted_end_starts_first(options);
}

}  // namespace
}  // namespace tmr::reactor
