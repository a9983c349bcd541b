#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>

#include "reactor/dispatcher.hpp"
#include "reactor/strand.hpp"
#include "reactor/timer.hpp"

namespace boost::asio {
class io_context;
}

namespace tmr::reactor {

namespace detail {
class ReactorImpl;
}

/// A callback run as (part of) a transaction.
using Callback = std::function<void(stm::Transaction&)>;

/// How a posted call chooses its strand.
enum class StrandChoice : std::uint8_t {
  inherit,  ///< the strand of the calling callback, or a new one outside callbacks
  fresh,    ///< always a new strand: the call may run in parallel with its poster
};

/// Which side of a fork `Reactor::notify_fork` is told about.
enum class ForkEvent : std::uint8_t { prepare, parent, child };

struct ReactorOptions {
  /// Worker threads; 0 means std::thread::hardware_concurrency(). 1 is exactly serial.
  unsigned workers = 0;
  /// How events become transactions; null means AtomicDispatcher.
  std::shared_ptr<Dispatcher> dispatcher;
  /// Receives exceptions that escape a dispatched callback, and errors that have no owner to
  /// report to. Null means: print to stderr. Called on a worker thread, outside any transaction.
  std::function<void(const DispatchInfo&, std::exception_ptr)> on_error;
  /// Every strand this reactor makes (make_strand, connections, listeners, watchers, timers)
  /// is one and the same: events run one at a time in the order they became ready, as with one
  /// worker, for hosts that cannot run callbacks in parallel anyway (a GIL interpreter) and
  /// must keep a single-threaded loop's order.
  bool one_strand = false;
};

/// The transactional event reactor: an io_context, a pool of workers, and the policy that
/// dispatches each ready event as one transaction on its strand.
///
/// Effects requested from inside a transaction (posts, timers, writes, closes) are deferred to
/// its commit through `on_commit` hooks, so an aborted attempt has no external effect and
/// committed effects happen in commit order. Requested outside a transaction they happen at once.
/// All member functions are thread-safe unless stated otherwise.
class Reactor {
 public:
  explicit Reactor(ReactorOptions options = {});
  /// Stops the workers if they still run; connections still open are aborted.
  ~Reactor();

  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  unsigned workers() const noexcept;
  /// True when every event shares one strand (ReactorOptions::one_strand).
  bool one_strand() const noexcept;

  /// Runs the loop on `workers()` threads (the caller is one of them) until `stop()` is called,
  /// or until `close_all()` was called and all the work it left is done.
  void run();
  /// Makes `run()` return soon; handlers not run yet stay queued for a later `run()`.
  void stop() noexcept;
  bool stopped() const noexcept;
  /// Must be called after `stop()` before `run()` can be called again.
  void restart();

  /// Orderly shutdown: closes listeners, datagram sockets, watchers and timers, closes every
  /// connection after its pending (committed) writes are sent, then lets `run()` return once
  /// idle. Inside a transaction it takes effect at commit.
  void close_all();

  /// Forwards to io_context::notify_fork. Call `prepare` before fork() and `parent`/`child`
  /// after it, while no worker runs (the child re-creates the epoll descriptor).
  void notify_fork(ForkEvent event);

  Strand make_strand();

  /// Posts `fn` to run as one transaction. Inside a transaction the post happens at commit, on
  /// the current strand unless `choice` is `fresh`. From any other thread it wakes the loop.
  void post(Callback fn, StrandChoice choice = StrandChoice::inherit);
  void post(const Strand& strand, Callback fn);

  /// Runs `fn` as one transaction at `deadline` (steady clock) or after `delay`; it inherits the
  /// strand like `post`. The timer is armed at commit when called inside a transaction.
  Timer call_at(Clock::time_point deadline, Callback fn,
                StrandChoice choice = StrandChoice::inherit);
  Timer call_later(Clock::duration delay, Callback fn, StrandChoice choice = StrandChoice::inherit);
  Timer call_at(const Strand& strand, Clock::time_point deadline, Callback fn);

  Dispatcher& dispatcher() noexcept;
  boost::asio::io_context& context() noexcept;
  detail::ReactorImpl& impl() noexcept { return *impl_; }

 private:
  std::shared_ptr<detail::ReactorImpl> impl_;
};

/// The reactor whose callback this thread runs; null outside reactor callbacks.
Reactor* current_reactor() noexcept;

}  // namespace tmr::reactor
