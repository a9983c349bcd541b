#pragma once

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <system_error>

#include "reactor/detail/endpoint_format.hpp"
#include "reactor/detail/reactor_impl.hpp"
#include "reactor/detail/stream_connection.hpp"
#include "reactor/stream_transport.hpp"

namespace tmr::reactor::detail {

/// Accept errors that mean "out of a resource": retrying at once would spin on them, so the
/// listener reports them and backs off.
inline bool is_resource_exhaustion(const boost::system::error_code& ec) {
  return ec == asio::error::no_descriptors ||                           // EMFILE
         ec.value() == ENFILE || ec == asio::error::no_buffer_space ||  // ENOBUFS
         ec == asio::error::no_memory;
}

/// A listening stream socket. The acceptor lives on the listener's strand; each accepted
/// connection gets a new strand (its connecting end's, when this reactor holds that end:
/// LocalPeers), on which its accept transaction runs.
template <class Protocol>
class StreamListenerImpl final : public StreamListener,
                                 public Closable,
                                 public LocalPeers::LocalAcceptor,
                                 public std::enable_shared_from_this<StreamListenerImpl<Protocol>> {
 public:
  using Acceptor = typename Protocol::acceptor;
  static constexpr std::chrono::milliseconds kFirstBackoff{20};
  static constexpr std::chrono::milliseconds kMaxBackoff{1000};
  // Connections accepted in one turn of the strand before its other events get theirs.
  static constexpr int kAcceptBatch = 32;

  StreamListenerImpl(ReactorImpl& reactor, Acceptor acceptor, HandlerFactory factory,
                     ListenOptions options)
      : reactor_(reactor),
        strand_(reactor.new_strand()),
        acceptor_(std::move(acceptor)),
        backoff_timer_(std::in_place, reactor.context),
        factory_(std::move(factory)),
        options_(std::move(options)),
        native_(acceptor_->native_handle()) {
    boost::system::error_code ignored;
    acceptor_->non_blocking(true, ignored);  // accept_some's accept returns at once
    const auto local = acceptor_->local_endpoint(ignored);
    local_address_ = format_endpoint(local);
    if constexpr (std::is_same_v<Protocol, asio::ip::tcp>) {
      port_ = local.port();
      local_endpoint_ = local;
    }
  }

  /// Starts accepting (at commit inside a transaction).
  void start() {
    at_commit([self = this->shared_from_this()] {
      if constexpr (std::is_same_v<Protocol, asio::ip::tcp>) {
        self->reactor_.local_peers().add_listener(self->local_endpoint_, self);
      }
      asio::post(self->strand_->exec, [self] { self->do_accept(); });
    });
  }

  void accept_waiting_then(std::function<void()> next) override {
    asio::post(strand_->exec, [self = this->shared_from_this(), next = std::move(next)] {
      self->accept_waiting();
      next();
    });
  }

  std::string local_address() const override { return local_address_; }
  unsigned short port() const override { return port_; }
  int native_handle() const override { return native_.load(std::memory_order_relaxed); }

  void close() override {
    at_commit([self = this->shared_from_this()] { self->close_gracefully(); });
  }

  void close_gracefully() override {
    if (reactor_.shutting_down()) return;
    asio::post(strand_->exec, [self = this->shared_from_this()] {
      if (self->closed_) return;
      self->closed_ = true;
      self->native_ = -1;
      self->reactor_.local_peers().remove_listener(self.get());
      boost::system::error_code ignored;
      self->acceptor_->close(ignored);
      self->backoff_timer_->cancel();
      self->reactor_.untrack(self.get());
    });
  }

  void destroy_now() noexcept override {
    reactor_.local_peers().remove_listener(this);
    closed_ = true;
    native_ = -1;
    acceptor_.reset();
    backoff_timer_.reset();
  }

 private:
  enum class Backlog { empty, more, stopped };

  // The accept itself runs here, on the listener's strand, after a wait for readiness. Asio's
  // async_accept would make it on whichever worker polled and post only its result: a worker the
  // OS does not run could hold an accepted connection while a local client's whole exchange runs
  // (accept_waiting_then cannot see it in the backlog any more). do_accept, accept_ready and
  // back_off only arm the next wait, timer or turn, whose handler Asio calls later:
  // misc-no-recursion counts the handlers as calls and sees a cycle that never happens on the
  // stack. NOLINTBEGIN(misc-no-recursion)
  void do_accept() {
    if (closed_) return;
    acceptor_->async_wait(
        Acceptor::wait_read,
        asio::bind_executor(strand_->exec,
                            [self = this->shared_from_this()](const boost::system::error_code& ec) {
                              if (self->closed_ || ec == asio::error::operation_aborted) return;
                              self->accept_ready();
                            }));
  }

  void accept_ready() {
    switch (accept_some(kAcceptBatch)) {
      case Backlog::empty:
        do_accept();
        return;
      case Backlog::more:  // let the strand's other events run, then go on
        asio::post(strand_->exec, [self = this->shared_from_this()] { self->accept_ready(); });
        return;
      case Backlog::stopped:
        return;
    }
  }

  /// Strand-only: accepts up to `limit` waiting connections. Stops at EMFILE and the like, then
  /// reports and backs off: retrying at once would spin.
  Backlog accept_some(int limit) {
    for (int i = 0; i < limit; ++i) {
      if (closed_ || backing_off_) return Backlog::stopped;
      typename Protocol::socket socket(reactor_.context);
      boost::system::error_code ec;
      acceptor_->accept(socket, ec);
      if (!ec) {
        backoff_ = kFirstBackoff;
        start_connection(std::move(socket));
        continue;
      }
      if (ec == asio::error::operation_aborted) return Backlog::stopped;
      if (is_resource_exhaustion(ec)) {
        back_off(ec);
        return Backlog::stopped;
      }
      // Nothing waits (EAGAIN), or ECONNABORTED and the like: the next readiness may be fine.
      return Backlog::empty;
    }
    return Backlog::more;
  }

  void back_off(const boost::system::error_code& ec) {
    report(ec);
    backing_off_ = true;
    backoff_timer_->expires_after(backoff_);
    backoff_ = std::min<std::chrono::milliseconds>(backoff_ * 2, kMaxBackoff);
    backoff_timer_->async_wait(asio::bind_executor(
        strand_->exec, [self = this->shared_from_this()](const boost::system::error_code& e) {
          self->backing_off_ = false;
          if (!e) self->accept_ready();
        }));
  }
  // NOLINTEND(misc-no-recursion)

  void start_connection(typename Protocol::socket socket) {
    auto strand = reactor_.strand_for_connected(socket);
    auto connection = std::make_shared<StreamConnection<Protocol>>(reactor_, std::move(socket),
                                                                   std::move(strand));
    reactor_.track(connection);
    if (reactor_.one_strand()) {
      // The connection's strand is this one: start it here, in the accept's own handler, as a
      // single-threaded reactor does. A post would let events queued meanwhile (the peer's
      // connect completing, then closing) run before the accepted end has its protocol.
      connection->start_accepted(factory_);
    } else {
      // The factory outlives every connection's start: the listener is captured.
      asio::post(connection->strand_exec(), [connection, self = this->shared_from_this()] {
        connection->start_accepted(self->factory_);
      });
    }
  }

  /// Strand-only: accepts every connection waiting in the backlog now, beside the pending wait
  /// for readiness (which stays armed: the backlog may fill again).
  void accept_waiting() {
    while (accept_some(kAcceptBatch) == Backlog::more) {
    }
  }

  void report(const boost::system::error_code& ec) {
    const std::error_code error = ec;
    if (options_.on_error) {
      reactor_.run_event(strand_, EventKind::error,
                         [&](stm::Transaction& tx) { options_.on_error(tx, error); });
    } else {
      reactor_.report(DispatchInfo{EventKind::error, strand_->id},
                      std::make_exception_ptr(std::system_error(error, "accept")));
    }
  }

  ReactorImpl& reactor_;
  const std::shared_ptr<StrandImpl> strand_;
  std::optional<Acceptor> acceptor_;                   // strand-only (and destroy_now)
  std::optional<asio::steady_timer> backoff_timer_;    // strand-only (and destroy_now)
  std::chrono::milliseconds backoff_ = kFirstBackoff;  // strand-only
  bool backing_off_ = false;                           // strand-only: no accept until the timer
  bool closed_ = false;                                // strand-only
  const HandlerFactory factory_;  // called from connection strands concurrently: const
  const ListenOptions options_;
  typename Protocol::endpoint local_endpoint_;  // TCP only; immutable after construction
  std::string local_address_;                   // immutable after construction
  unsigned short port_ = 0;                     // immutable after construction
  std::atomic<int> native_{-1};                 // for native_handle(); -1 once closed
};

}  // namespace tmr::reactor::detail
