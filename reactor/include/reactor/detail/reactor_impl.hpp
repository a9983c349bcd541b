#pragma once

// Machinery shared by the reactor's translation units. Includes Asio; public headers do not.

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "reactor/detail/local_peers.hpp"
#include "reactor/reactor.hpp"

namespace tmr::reactor::detail {

namespace asio = boost::asio;

class ReactorImpl;
class TimerImpl;

/// The timers of one strand that are armed and have not run, in the order they are due (then in
/// the order they were armed). Asio completes timers that expire together on whichever workers
/// are free, which reach the strand in no fixed order, and a timer armed for a deadline already
/// past runs when its arming reaches the strand: the first of them to run takes every timer due
/// by then from here, in order, as a stock reactor runs its due calls (TimerImpl::fire).
struct ArmedTimers {
  using Key = std::pair<Clock::time_point, std::uint64_t>;
  struct Entry {
    std::weak_ptr<TimerImpl> timer;
    std::uint64_t generation = 0;  // the timer's arming this entry is for
  };
  std::mutex mu;
  std::map<Key, Entry> due_order;  // guarded by mu
  std::uint64_t armed = 0;         // guarded by mu: armings so far, the tie-breaker
};

/// One strand: an Asio strand plus the identity the dispatcher sees.
struct StrandImpl {
  StrandImpl(std::shared_ptr<ReactorImpl> r, asio::io_context& ctx, std::uint64_t strand_id)
      : keepalive(std::move(r)), reactor(*keepalive), exec(asio::make_strand(ctx)), id(strand_id) {}

  // Declared first, destroyed last: an Asio strand must not outlive its io_context, and objects
  // the user still holds (transports, timers) keep their strand, so the strand keeps the
  // reactor's machinery (not the Reactor) alive. ~Reactor drains every pending handler, which
  // breaks the cycle io_context -> handler -> strand -> io_context.
  const std::shared_ptr<ReactorImpl> keepalive;
  ReactorImpl& reactor;
  asio::strand<asio::io_context::executor_type> exec;
  const std::uint64_t id;

  /// If this thread is running an event of this strand, queues `action` to run on the strand
  /// right after the event's dispatch returns (run_event drains the queue) and returns true.
  /// Otherwise returns false: the caller must post instead.
  template <class F>
  bool defer_if_in_event(F&& action) {
    // running_in_this_thread() is thread-safe; in_event and deferred are strand-only, so they
    // are read only once we know we are on the strand.
    if (!exec.running_in_this_thread() || !in_event) return false;
    deferred.emplace_back(std::forward<F>(action));
    return true;
  }

  // Strand-only: true while run_event dispatches an event of this strand; the actions
  // committed transactions deferred to the end of that event.
  bool in_event = false;
  std::vector<std::function<void()>> deferred;

  ArmedTimers armed_timers;
};

/// Something `close_all` and the reactor's destructor must reach: connections, listeners,
/// datagram sockets, watchers, pending timers.
class Closable {
 public:
  virtual ~Closable() = default;
  /// Orderly close; thread-safe; committed writes are sent first.
  virtual void close_gracefully() = 0;
  /// Called by ~Reactor once no worker runs: release OS resources without callbacks.
  virtual void destroy_now() noexcept = 0;
};

/// Runs `fn` at the commit of the running transaction, or now outside one. Every transport
/// request goes through here: that is what keeps aborted attempts off the wire.
void at_commit(std::function<void()> fn);

class ReactorImpl : public std::enable_shared_from_this<ReactorImpl> {
 public:
  ReactorImpl(Reactor& owner, ReactorOptions options);

  Reactor& owner;
  asio::io_context context;
  const unsigned workers;

  /// A strand of its own for a new connection, listener, watcher or caller; with one_strand,
  /// the reactor's only strand.
  std::shared_ptr<StrandImpl> new_strand();

  /// The strand for a connected stream socket that was given none: a new one, except that a TCP
  /// socket whose other end this reactor already holds takes that end's strand (LocalPeers).
  template <class Socket>
  std::shared_ptr<StrandImpl> strand_for_connected(const Socket& socket) {
    if constexpr (std::is_same_v<typename Socket::protocol_type, asio::ip::tcp>) {
      boost::system::error_code ec;
      const auto local = socket.local_endpoint(ec);
      const auto remote = ec ? asio::ip::tcp::endpoint() : socket.remote_endpoint(ec);
      // A peer already gone (ENOTCONN) is no pair to keep in order with.
      if (!ec && !one_strand_ && LocalPeers::may_be_local(local, remote)) {
        return local_peers_.strand_for(local, remote, [this] { return new_strand(); });
      }
    }
    return new_strand();
  }
  /// The listener of this reactor in whose backlog a connected TCP socket's peer may wait, if
  /// any: the socket's first event should follow that listener's accept of what waits there, so
  /// that the accepting end starts first, as on a single-threaded loop (LocalPeers).
  template <class Socket>
  std::shared_ptr<LocalPeers::LocalAcceptor> local_listener_for(const Socket& socket) {
    if constexpr (std::is_same_v<typename Socket::protocol_type, asio::ip::tcp>) {
      boost::system::error_code ec;
      const auto local = socket.local_endpoint(ec);
      const auto remote = ec ? asio::ip::tcp::endpoint() : socket.remote_endpoint(ec);
      if (!ec && LocalPeers::may_be_local(local, remote)) return local_peers_.listener_for(remote);
    }
    return nullptr;
  }
  LocalPeers& local_peers() noexcept { return local_peers_; }

  /// Dispatches one event as a transaction; call on `strand`. Never throws: exceptions go to
  /// `report`, and the result is false (the callback's transaction did not commit).
  bool run_event(const std::shared_ptr<StrandImpl>& strand, EventKind kind,
                 EventCallback callback) noexcept;

  /// Posts `fn` (a `void(stm::Transaction&)` callable) to `strand` as one event.
  template <class F>
  void post_event(std::shared_ptr<StrandImpl> strand, EventKind kind, F fn) {
    auto* s = strand.get();
    asio::post(s->exec, [this, strand = std::move(strand), kind, fn = std::move(fn)]() mutable {
      run_event(strand, kind, fn);
    });
  }

  void report(const DispatchInfo& info, const std::exception_ptr& error) noexcept;

  void track(const std::shared_ptr<Closable>& object);
  void untrack(const Closable* object);
  void close_all();
  /// For ~Reactor, once no worker runs: closes everything without callbacks and runs the
  /// handlers left (dispatching nothing) so that none of them keeps a strand alive.
  void shut_down() noexcept;
  bool shutting_down() const noexcept { return shutting_down_.load(std::memory_order_acquire); }

  Dispatcher& dispatcher() noexcept { return *dispatcher_; }
  bool one_strand() const noexcept { return one_strand_; }

  /// This thread's blocked-since slot (see BlockingMonitor); null with one worker.
  std::atomic<std::int64_t>* blocking_slot() noexcept;
  /// Sections blocked for longer than BlockingMonitor::kStuckAfterNs.
  unsigned stuck_sections() const noexcept;

 private:
  // Immutable after construction, so every worker reads them without a lock. The dispatcher
  // itself must be callable from several workers at once.
  std::shared_ptr<Dispatcher> dispatcher_;
  std::function<void(const DispatchInfo&, std::exception_ptr)> on_error_;
  std::atomic<std::uint64_t> next_strand_id_{1};
  // With one_strand: the strand every new_strand() returns. Weak because a strand owns its
  // reactor machinery (StrandImpl::keepalive); a new one is made once the last holder is gone.
  const bool one_strand_;
  std::mutex one_strand_mu_;
  std::weak_ptr<StrandImpl> the_strand_;  // guarded by one_strand_mu_
  LocalPeers local_peers_;
  // Set once by shut_down(); from then on run_event dispatches nothing.
  std::atomic<bool> shutting_down_{false};

  // Per thread serving this reactor: when its current blocking section began (steady clock,
  // ns), 0 outside one. Written by that thread only, read by the monitor; relaxed is enough
  // because a stale value only delays or prolongs lending a thread by one tick.
  std::atomic<std::int64_t> blocked_since_[64] = {};
  std::atomic<unsigned> next_slot_{0};
  std::atomic<std::uint64_t> slot_generation_{0};  // bumped by each run(): stale TLS slots

  friend class BlockingMonitor;

  std::mutex mu_;
  // Guarded by mu_. Every live Closable registered here, until it is closed; weak so that a
  // dropped object still dies. Entries are erased by their object on final close.
  std::unordered_map<const Closable*, std::weak_ptr<Closable>> tracked_;
  // Guarded by mu_. Keeps run() going while idle; close_all() drops it.
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
};

/// The strand a worker is running a callback of, if any (and its reactor).
const std::shared_ptr<StrandImpl>* current_strand_impl() noexcept;

}  // namespace tmr::reactor::detail
