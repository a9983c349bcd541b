#include "reactor/fd_watcher.hpp"

#include <poll.h>

#include <boost/asio/bind_executor.hpp>
#include <optional>

#include "reactor/detail/descriptor_wait.hpp"
#include "reactor/detail/reactor_impl.hpp"

namespace tmr::reactor {

namespace {

namespace asio = boost::asio;

/// Watches a foreign descriptor registered with the reactor's epoll without an owner (it is
/// deregistered, never closed). Asio's epoll backend is edge-triggered, but IReactorFDSet and
/// add_reader are level-triggered: so before waiting, each direction polls the descriptor with
/// a zero timeout and, if it is already ready, posts the dispatch to the strand at once;
/// otherwise it waits for the next edge (detail::DescriptorWait, without an epoll_ctl). That
/// keeps "still readable" from being lost, and dispatches it in the strand's order of the
/// moment: a readiness completed later (at the reactor's next epoll_wait, or through Asio's
/// scheduler queue) came behind what the strand got meanwhile, and CPython's
/// test_sendfile_close_peer_in_the_middle_of_receiving saw the difference at 2 workers.
class FdWatcherImpl final : public FdWatcher,
                            public detail::Closable,
                            public std::enable_shared_from_this<FdWatcherImpl> {
 public:
  // Registers fd with the reactor's epoll; ec says why not.
  FdWatcherImpl(detail::ReactorImpl& reactor, int fd, std::shared_ptr<detail::StrandImpl> strand,
                std::error_code& ec)
      : reactor_(reactor),
        strand_(strand ? std::move(strand) : reactor.new_strand()),
        fd_(fd),
        descriptor_(std::in_place, reactor.context, fd, ec) {}

  FdWatcherImpl(const FdWatcherImpl&) = delete;
  FdWatcherImpl& operator=(const FdWatcherImpl&) = delete;
  ~FdWatcherImpl() override = default;  // the DescriptorWait deregisters fd

  void add_reader(Callback fn) override { set(kRead, std::move(fn)); }
  void remove_reader() override { set(kRead, nullptr); }
  void add_writer(Callback fn) override { set(kWrite, std::move(fn)); }
  void remove_writer() override { set(kWrite, nullptr); }

  bool has_reader() const override {
    std::lock_guard lock(mu_);
    return registered_[kRead];
  }
  bool has_writer() const override {
    std::lock_guard lock(mu_);
    return registered_[kWrite];
  }

  // At once, even inside a transaction: the caller is about to close the descriptor, and once it
  // is closed its number can be reused by a descriptor watched anew. Deferred to the commit or to
  // the strand, the release would deregister the new descriptor from epoll instead of this one.
  void release() override { close_gracefully(); }

  int native_handle() const override { return fd_; }

  void close_gracefully() override {
    {
      std::lock_guard lock(mu_);
      registered_[kRead] = registered_[kWrite] = false;
      if (released_) return;
      released_ = true;
      if (descriptor_) descriptor_->release();  // deregisters; waits in flight end as aborted
    }
    asio::post(strand_->exec, [self = shared_from_this()] {
      self->callbacks_[kRead] = self->callbacks_[kWrite] = nullptr;
      ++self->generation_[kRead];
      ++self->generation_[kWrite];
      self->reactor_.untrack(self.get());
    });
  }

  void destroy_now() noexcept override {
    if (descriptor_) descriptor_->release();  // a wait left in epoll would keep the strand alive
    descriptor_.reset();
    released_ = true;
  }

 private:
  enum Direction { kRead = 0, kWrite = 1 };

  void set(Direction d, Callback fn) {
    {
      // has_reader/has_writer answer at once, even before the strand applies the change.
      const bool on = fn != nullptr;
      detail::at_commit([self = shared_from_this(), d, on] {
        std::lock_guard lock(self->mu_);
        self->registered_[d] = on;
      });
    }
    detail::at_commit([self = shared_from_this(), d, fn = std::move(fn)]() mutable {
      if (self->reactor_.shutting_down()) return;
      asio::post(self->strand_->exec, [self, d, fn = std::move(fn)]() mutable {
        if (self->is_released()) return;
        self->callbacks_[d] = std::move(fn);
        // A wait in flight belongs to the old registration: it completes for nothing and arms
        // for this one (fire). It is not left behind a second wait: the wait of a direction is
        // one at a time (detail::DescriptorWait completes only the first of a direction's
        // queue at an edge).
        ++self->generation_[d];
        self->arm(d);
      });
    });
  }

  // arm hands fire to Asio (posted, or as the wait's handler) and returns; fire calls arm for the
  // next readiness, never the other way round on the stack. misc-no-recursion counts the lambda
  // given to Asio as a call and sees a cycle.
  // NOLINTBEGIN(misc-no-recursion)

  // On the strand: dispatch now if ready, else wait for the next readiness edge. A readiness
  // found now is posted to the strand at once, in order with what the strand got before it.
  void arm(Direction d) {
    std::lock_guard lock(mu_);  // release() may run on any thread
    if (released_ || !callbacks_[d] || waiting_[d]) return;
    const short events = d == kRead ? POLLIN : POLLOUT;
    pollfd p{fd_, events, 0};
    const std::uint64_t generation = generation_[d];
    waiting_[d] = true;
    if (::poll(&p, 1, 0) > 0) {  // ready now, or POLLHUP/POLLERR: the callback will see it
      asio::post(strand_->exec,
                 [self = shared_from_this(), d, generation] { self->fire(d, generation); });
      return;
    }
    descriptor_->async_wait(
        events,
        asio::bind_executor(strand_->exec,
                            [self = shared_from_this(), d, generation](
                                const boost::system::error_code&) { self->fire(d, generation); }),
        reactor_.context.get_executor());
  }

  void fire(Direction d, std::uint64_t generation) {
    waiting_[d] = false;
    if (generation != generation_[d]) {  // superseded by a later add/remove: wait for that one
      arm(d);
      return;
    }
    if (is_released() || !callbacks_[d]) return;
    // Called in place, not copied (a copy of a Python callback's std::function allocates): a
    // callback that removes or replaces itself changes callbacks_ only in a handler posted to
    // this strand, after this one.
    reactor_.run_event(strand_, d == kRead ? EventKind::read : EventKind::writable, callbacks_[d]);
    arm(d);
  }
  // NOLINTEND(misc-no-recursion)

  detail::ReactorImpl& reactor_;
  const std::shared_ptr<detail::StrandImpl> strand_;
  const int fd_;
  bool is_released() const {
    std::lock_guard lock(mu_);
    return released_;
  }

  // Strand-only: the callbacks, and per direction whether a wait or an immediate dispatch is in
  // flight and which registration it belongs to.
  Callback callbacks_[2];
  std::uint64_t generation_[2] = {0, 0};
  bool waiting_[2] = {false, false};

  mutable std::mutex mu_;
  // Guarded by mu_: the descriptor (waited on from the strand, released from any thread), whether
  // it was released (then the descriptor number may already belong to someone else), and the
  // committed registration state.
  std::optional<detail::DescriptorWait> descriptor_;
  bool released_ = false;
  bool registered_[2] = {false, false};
};

}  // namespace

std::shared_ptr<FdWatcher> watch_fd(Reactor& reactor, int fd, const Strand& strand,
                                    std::error_code& ec) {
  auto watcher = std::make_shared<FdWatcherImpl>(reactor.impl(), fd, strand.impl(), ec);
  if (ec) return nullptr;
  reactor.impl().track(watcher);
  return watcher;
}

std::shared_ptr<FdWatcher> watch_fd(Reactor& reactor, int fd, std::error_code& ec) {
  return watch_fd(reactor, fd, Strand(), ec);
}

std::shared_ptr<FdWatcher> watch_fd(Reactor& reactor, int fd, const Strand& strand) {
  std::error_code ec;
  auto watcher = watch_fd(reactor, fd, strand, ec);
  if (ec) throw std::system_error(ec, "watch_fd");
  return watcher;
}

std::shared_ptr<FdWatcher> watch_fd(Reactor& reactor, int fd) {
  return watch_fd(reactor, fd, Strand());
}

}  // namespace tmr::reactor
