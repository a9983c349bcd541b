#pragma once

#include <poll.h>

#include <boost/asio/detail/fenced_block.hpp>
#include <boost/asio/detail/handler_alloc_helpers.hpp>
#include <boost/asio/detail/handler_cont_helpers.hpp>
#include <boost/asio/detail/handler_work.hpp>
#include <boost/asio/detail/memory.hpp>
#include <boost/asio/detail/reactor.hpp>
#include <boost/asio/detail/reactor_op.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/version.hpp>
#include <system_error>
#include <utility>

// Written against the epoll reactor's interface of Boost 1.74 to 1.83 (start_op gained an
// immediate-completion argument in 1.84).
static_assert(BOOST_VERSION >= 107400 && BOOST_VERSION < 108400,
              "descriptor_wait.hpp: check epoll_reactor::start_op for this Boost version");

namespace tmr::reactor::detail {

/// A descriptor registered with the io_context's epoll reactor, without an owner: it is never
/// closed here, and release() only deregisters it. A wait for readiness needs no `epoll_ctl`
/// (below).
///
/// Asio registers a descriptor edge-triggered, once. Its `async_wait` cannot rely on that
/// registration for a readiness already there (an edge that came while no wait was queued), so
/// every wait starts with an `EPOLL_CTL_MOD` that makes epoll report the descriptor afresh. The
/// caller here has just found the descriptor not ready (a poll() of its own), and a wait starts
/// as Asio's speculative reads do instead: under the descriptor's lock, if an edge came since
/// the last wait completed (Asio's try_speculative flag, which each completion here clears), it
/// polls again, since that edge may have come after the caller's poll; otherwise it queues for
/// the next edge. One system call a wait instead of two: an asyncio echo's round trip makes two.
class DescriptorWait {
 public:
  using Reactor = boost::asio::detail::reactor;

  /// Registers fd; `ec` says why not (a descriptor epoll refuses, such as a regular file, is
  /// accepted, and its waits complete at once, as it never blocks).
  DescriptorWait(boost::asio::io_context& context, int fd, std::error_code& ec)
      : reactor_(boost::asio::use_service<Reactor>(context)), fd_(fd) {
    reactor_.init_task();
    if (const int error = reactor_.register_descriptor(fd_, data_); error != 0) {
      ec = std::error_code(error, std::system_category());
      data_ = nullptr;
    }
  }
  ~DescriptorWait() { release(); }
  DescriptorWait(const DescriptorWait&) = delete;
  DescriptorWait& operator=(const DescriptorWait&) = delete;
  DescriptorWait(DescriptorWait&&) = delete;
  DescriptorWait& operator=(DescriptorWait&&) = delete;

  /// Calls handler(error_code) once fd is ready for `events` (POLLIN or POLLOUT), or has an
  /// error or hang-up. The caller polled fd and found it not ready: a readiness already there
  /// would complete the wait through Asio's scheduler, behind what was posted to the handler's
  /// executor meanwhile, not in the order of the caller's own post. A cancel or release
  /// completes it with operation_aborted. The handler runs as Asio runs any wait's handler (its
  /// executor: a strand).
  template <typename Handler>
  void async_wait(short events, Handler handler, const boost::asio::io_context::executor_type& io) {
    using Op = LevelWaitOp<Handler, boost::asio::io_context::executor_type>;
    const bool is_continuation = boost_asio_handler_cont_helpers::is_continuation(handler);
    typename Op::ptr p = {boost::asio::detail::addressof(handler), Op::ptr::allocate(handler),
                          nullptr};
    p.p = new (p.v) Op(fd_, events, handler, io);
    if (data_ == nullptr) {  // released: as Asio completes an operation on a closed descriptor
      p.p->ec_ = boost::asio::error::bad_descriptor;
      reactor_.post_immediate_completion(p.p, is_continuation);
    } else {
      t_starting = p.p;  // perform() called from within start_op: see LevelWaitOp
      reactor_.start_op(events == POLLOUT ? Reactor::write_op : Reactor::read_op, fd_, data_, p.p,
                        is_continuation, /*allow_speculative=*/true);
      t_starting = nullptr;
    }
    p.v = p.p = nullptr;
  }

  /// Deregisters fd (waits in flight complete with operation_aborted); idempotent.
  void release() noexcept {
    if (data_ == nullptr) return;
    reactor_.deregister_descriptor(fd_, data_, /*closing=*/false);
    reactor_.cleanup_descriptor_data(data_);
    data_ = nullptr;
  }

 private:
  // The operation async_wait is starting on this thread: start_op calls its perform() before
  // queuing it, and only when an edge came since the last completion.
  static inline thread_local const boost::asio::detail::reactor_op* t_starting = nullptr;

  // A reactor operation whose work is to find the descriptor ready. perform() from start_op
  // (t_starting) is a poll() with a zero timeout; every other perform() comes from an epoll
  // event for the descriptor (readiness, an error or a hang-up), which is the answer itself.
  // Both complete with done_and_exhausted, which clears Asio's try_speculative flag: until the
  // next edge, a new wait is queued without a poll (its caller just polled). It also ends the
  // edge's pass over the direction's queue: a second wait queued behind the first would wait
  // for the next edge, so a caller keeps one wait per direction at a time.
  template <typename Handler, typename IoExecutor>
  class LevelWaitOp : public boost::asio::detail::reactor_op {
   public:
    BOOST_ASIO_DEFINE_HANDLER_PTR(LevelWaitOp);

    LevelWaitOp(int fd, short events, Handler& handler, const IoExecutor& io)
        : reactor_op(boost::system::error_code(), &LevelWaitOp::do_perform,
                     &LevelWaitOp::do_complete),
          fd_(fd),
          events_(events),
          handler_(std::move(handler)),
          work_(handler_, io) {}

    static status do_perform(reactor_op* base) {
      if (base != t_starting) return done_and_exhausted;  // from an epoll event
      auto* op = static_cast<LevelWaitOp*>(base);
      pollfd p{op->fd_, op->events_, 0};
      // POLLERR and POLLHUP count as ready
      return ::poll(&p, 1, 0) > 0 ? done_and_exhausted : not_done;
    }

    // As Asio's own wait operation completes: the handler moved out before the memory is
    // freed, then called through its executor unless the reactor is being destroyed.
    static void do_complete(void* owner, boost::asio::detail::operation* base,
                            const boost::system::error_code& /*ec*/, std::size_t /*bytes*/) {
      auto* op = static_cast<LevelWaitOp*>(base);
      ptr p = {boost::asio::detail::addressof(op->handler_), op, op};
      boost::asio::detail::handler_work<Handler, IoExecutor> work(std::move(op->work_));
      boost::asio::detail::binder1<Handler, boost::system::error_code> bound(op->handler_, op->ec_);
      p.h = boost::asio::detail::addressof(bound.handler_);
      p.reset();
      if (owner != nullptr) {
        const boost::asio::detail::fenced_block fence(boost::asio::detail::fenced_block::half);
        work.complete(bound, bound.handler_);
      }
    }

   private:
    int fd_;
    short events_;
    Handler handler_;
    boost::asio::detail::handler_work<Handler, IoExecutor> work_;
  };

  Reactor& reactor_;
  int fd_;
  Reactor::per_descriptor_data data_ = nullptr;
};

}  // namespace tmr::reactor::detail
