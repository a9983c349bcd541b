#pragma once

// The two ends of a TCP connection that one reactor holds both of share a strand.

#include <boost/asio/ip/tcp.hpp>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

namespace tmr::reactor::detail {

struct StrandImpl;

/// Where a program connects to its own listener (a client and a server in one process, as in
/// Twisted's and asyncio's own tests, or a service that calls another in the same process), a
/// single-threaded loop runs both ends' callbacks in one order: one end's connectionLost cannot
/// overtake the other end's pending events. On two strands, two workers would run them in
/// parallel and produce orders that loop never does. So a connected socket whose peer is local
/// is registered under its (local, remote) endpoints; when the reactor connects or accepts the
/// other end, it finds the pair and takes that strand instead of a new one. Connections from
/// other hosts never enter the registry.
class LocalPeers {
 public:
  using Endpoint = boost::asio::ip::tcp::endpoint;
  using MakeStrand = std::function<std::shared_ptr<StrandImpl>()>;

  /// True when the peer can be a socket of this host: a loopback address, or the connection's
  /// own local address.
  static bool may_be_local(const Endpoint& local, const Endpoint& remote);

  /// The strand for a connection end from `local` to `remote`: the other end's, if that end was
  /// registered and is still unmatched (the pair leaves the registry), else `make()`, registered
  /// until its other end arrives or the strand is gone.
  std::shared_ptr<StrandImpl> strand_for(const Endpoint& local, const Endpoint& remote,
                                         const MakeStrand& make);

  /// Ends in the registry, waiting for their peer; those whose strand is gone count until the
  /// next sweep (for tests).
  std::size_t registered() const;

 private:
  using Key = std::pair<Endpoint, Endpoint>;  // (local, remote), IPv4-mapped IPv6 as IPv4
  static Key key(const Endpoint& local, const Endpoint& remote);
  void drop_dead_ends();  // with mu_ held

  // An unmatched end whose peer is another process's stays until its strand is gone: the map is
  // swept of those when it has doubled since the last sweep, so it never outgrows twice the
  // live ones by much.
  static constexpr std::size_t kFirstSweep = 64;

  mutable std::mutex mu_;
  std::map<Key, std::weak_ptr<StrandImpl>> ends_;  // guarded by mu_
  std::size_t sweep_at_ = kFirstSweep;             // guarded by mu_
};

}  // namespace tmr::reactor::detail
