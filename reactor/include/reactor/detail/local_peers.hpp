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
///
/// The registry also knows this reactor's TCP listeners, for the order in which a pair starts.
/// On a single-threaded loop the accepting end exists before the connecting end's first
/// callback can close it: the listening socket was readable from the moment of the connect. On
/// workers, the accept's readiness can sit with a worker that is not running while the other one
/// runs the client's whole exchange (connected, wrote, closed). So a client adopted while one of
/// this reactor's listeners waits for it starts only after that listener has accepted what is
/// waiting (LocalAcceptor).
class LocalPeers {
 public:
  using Endpoint = boost::asio::ip::tcp::endpoint;
  using MakeStrand = std::function<std::shared_ptr<StrandImpl>()>;

  /// A listener that can accept the connections waiting in its backlog at once.
  class LocalAcceptor {
   public:
    virtual ~LocalAcceptor() = default;
    /// On the listener's strand: accepts what is waiting, then calls `next` (also when closed).
    virtual void accept_waiting_then(std::function<void()> next) = 0;

   protected:
    LocalAcceptor() = default;
    LocalAcceptor(const LocalAcceptor&) = default;
    LocalAcceptor(LocalAcceptor&&) = default;
    LocalAcceptor& operator=(const LocalAcceptor&) = default;
    LocalAcceptor& operator=(LocalAcceptor&&) = default;
  };

  void add_listener(const Endpoint& local, const std::shared_ptr<LocalAcceptor>& listener);
  void remove_listener(const LocalAcceptor* listener);
  /// The listener of this reactor that a connection to `remote` reaches, if any: bound to that
  /// port on that address or on the wildcard address.
  std::shared_ptr<LocalAcceptor> listener_for(const Endpoint& remote) const;

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
  static Key key(const Endpoint& from, const Endpoint& to);
  void drop_dead_ends();  // with mu_ held

  // An unmatched end whose peer is another process's stays until its strand is gone: the map is
  // swept of those when it has doubled since the last sweep, so it never outgrows twice the
  // live ones by much.
  static constexpr std::size_t kFirstSweep = 64;

  struct Listening {
    boost::asio::ip::address address;  // canonical; unspecified for a wildcard listener
    const LocalAcceptor* id;
    std::weak_ptr<LocalAcceptor> listener;
  };

  mutable std::mutex mu_;
  std::map<Key, std::weak_ptr<StrandImpl>> ends_;       // guarded by mu_
  std::size_t sweep_at_ = kFirstSweep;                  // guarded by mu_
  std::multimap<unsigned short, Listening> listeners_;  // by port; guarded by mu_
};

}  // namespace tmr::reactor::detail
