#include "reactor/timer.hpp"

#include "reactor/detail/timer_impl.hpp"
#include "stm/stm.hpp"

namespace tmr::reactor {

namespace detail {

TimerImpl::TimerImpl(ReactorImpl& reactor, std::shared_ptr<StrandImpl> strand, Callback fn)
    : reactor_(reactor), strand_(std::move(strand)), fn_(std::move(fn)) {
  timer_.emplace(reactor_.context);
}

TimerImpl::~TimerImpl() {
  reactor_.untrack(this);
}

void TimerImpl::arm(Clock::time_point deadline, bool only_earlier) {
  if (reactor_.shutting_down()) return;
  std::uint64_t generation = 0;
  {
    std::lock_guard lock(mu_);
    if (only_earlier && pending_ && deadline_ <= deadline) return;
    generation = ++generation_;
    deadline_ = deadline;
    pending_ = true;
  }
  enlist(deadline, generation);
  asio::post(strand_->exec, [self = shared_from_this(), generation, deadline] {
    // A later arming from another thread can post ahead of this one; setting the expiry here
    // would cancel that arming's wait and leave the timer armed for nothing. An arming that
    // another timer's run_due_timers already ran does nothing either: were it to run the
    // strand's due timers in turn, a strand whose timers are always due (their callbacks take
    // longer than their intervals) would multiply these posts, each running timers that post
    // again, and the strand's I/O would wait behind more of them every round.
    if (!self->timer_ || !self->is_pending(generation)) return;
    if (deadline <= Clock::now()) {
      // Already due: it runs now, in post order, before the I/O events the next poll finds, as
      // the stock reactors run expired timers before they poll (an asio timer that expired
      // would complete after them). Twisted's stopListening relies on it: its deferred
      // connectionLost (callLater(0)) comes before the peer's reaction to what the same
      // callback wrote.
      self->fire(generation, {});
      return;
    }
    self->timer_->expires_at(deadline);
    self->timer_->async_wait(asio::bind_executor(
        self->strand_->exec,
        [self, generation](const boost::system::error_code& ec) { self->fire(generation, ec); }));
  });
}

void TimerImpl::fire(std::uint64_t generation, const boost::system::error_code& ec) {
  if (ec == asio::error::operation_aborted || !is_pending(generation)) return;
  // This timer is due, and so may be others of the strand whose completions come later or
  // whose armings are still queued: they run first if they are due sooner.
  run_due_timers();
  run_if_pending(generation);  // already run above unless its entry was missing
}

void TimerImpl::run_due_timers() {
  ArmedTimers& armed = strand_->armed_timers;
  const Clock::time_point now = Clock::now();
  for (;;) {
    ArmedTimers::Entry next;
    {
      const std::lock_guard lock(armed.mu);
      const auto first = armed.due_order.begin();
      if (first == armed.due_order.end() || first->first.first > now) return;
      next = std::move(first->second);
      armed.due_order.erase(first);
      if (auto timer = next.timer.lock()) timer->armed_key_.reset();
    }
    if (auto timer = next.timer.lock()) timer->run_if_pending(next.generation);
  }
}

void TimerImpl::run_if_pending(std::uint64_t generation) {
  {
    std::lock_guard lock(mu_);
    if (generation != generation_ || !pending_) return;
    pending_ = false;
  }
  reactor_.run_event(strand_, EventKind::timer, fn_);
}

void TimerImpl::enlist(Clock::time_point deadline, std::uint64_t generation) {
  ArmedTimers& armed = strand_->armed_timers;
  const std::lock_guard lock(armed.mu);
  if (armed_key_) armed.due_order.erase(*armed_key_);
  armed_key_ = ArmedTimers::Key{deadline, armed.armed++};
  armed.due_order.emplace(*armed_key_, ArmedTimers::Entry{weak_from_this(), generation});
}

void TimerImpl::delist() {
  ArmedTimers& armed = strand_->armed_timers;
  const std::lock_guard lock(armed.mu);
  if (armed_key_) armed.due_order.erase(*armed_key_);
  armed_key_.reset();
}

bool TimerImpl::is_pending(std::uint64_t generation) const {
  std::lock_guard lock(mu_);
  return generation == generation_ && pending_;
}

void TimerImpl::cancel() {
  {
    std::lock_guard lock(mu_);
    ++generation_;
    if (!pending_) return;
    pending_ = false;
  }
  delist();
  if (reactor_.shutting_down()) return;
  asio::post(strand_->exec, [self = shared_from_this()] {
    if (self->timer_) self->timer_->cancel();
  });
}

Clock::time_point TimerImpl::deadline() const {
  std::lock_guard lock(mu_);
  return deadline_;
}

bool TimerImpl::pending() const {
  std::lock_guard lock(mu_);
  return pending_;
}

void TimerImpl::destroy_now() noexcept {
  {
    std::lock_guard lock(mu_);
    ++generation_;
    pending_ = false;
  }
  delist();
  timer_.reset();
}

}  // namespace detail

void Timer::cancel() {
  if (!impl_) return;
  detail::at_commit([impl = impl_] { impl->cancel(); });
}

void Timer::reschedule(Clock::time_point deadline) {
  if (!impl_) return;
  detail::at_commit([impl = impl_, deadline] { impl->arm(deadline); });
}

void Timer::reschedule_earlier(Clock::time_point deadline) {
  if (!impl_) return;
  detail::at_commit([impl = impl_, deadline] { impl->arm(deadline, true); });
}

Clock::time_point Timer::deadline() const {
  return impl_ ? impl_->deadline() : Clock::time_point{};
}

bool Timer::pending() const {
  return impl_ && impl_->pending();
}

}  // namespace tmr::reactor
