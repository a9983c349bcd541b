#pragma once

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <mutex>

#include "reactor/detail/reactor_impl.hpp"

namespace tmr::reactor::detail {

/// A scheduled call. The Asio timer is touched only on the strand; the scheduling state is
/// guarded by a mutex so that cancel/reschedule may come from any thread (at commit).
/// The reactor tracks it (close_all, shut_down) from its making (Reactor::call_at) to its
/// destruction, not per arming: a timer re-armed per event (tm_asyncio's one per loop) paid the
/// tracking map's insert and erase, under the reactor's lock, every time.
class TimerImpl final : public Closable, public std::enable_shared_from_this<TimerImpl> {
 public:
  TimerImpl(ReactorImpl& reactor, std::shared_ptr<StrandImpl> strand, Callback fn);
  ~TimerImpl() override;
  TimerImpl(const TimerImpl&) = delete;
  TimerImpl& operator=(const TimerImpl&) = delete;
  TimerImpl(TimerImpl&&) = delete;
  TimerImpl& operator=(TimerImpl&&) = delete;

  /// Arms for `deadline`; with `only_earlier`, only if not already armed for it or sooner.
  void arm(Clock::time_point deadline, bool only_earlier = false);
  void cancel();
  Clock::time_point deadline() const;
  bool pending() const;

  void close_gracefully() override { cancel(); }
  void destroy_now() noexcept override;

 private:
  void fire(std::uint64_t generation, const boost::system::error_code& ec);
  // `generation` is the current arming and has not run: its post and its expiry act only then.
  bool is_pending(std::uint64_t generation) const;
  // The strand's armed_timers: this timer's entry for `generation` (replacing its last one), or
  // none.
  void enlist(Clock::time_point deadline, std::uint64_t generation);
  void delist();
  // On the strand: runs every timer of the strand due by now, in deadline order.
  void run_due_timers();
  // On the strand: runs the callback if `generation` is the arming that is still pending.
  void run_if_pending(std::uint64_t generation);

  ReactorImpl& reactor_;
  const std::shared_ptr<StrandImpl> strand_;
  const Callback fn_;                        // called only on strand_, so one call at a time
  std::optional<asio::steady_timer> timer_;  // touched only on strand_ (or by destroy_now)

  mutable std::mutex mu_;
  // Guarded by mu_. Bumped by every arm and cancel: a completion carrying an older generation
  // belongs to a superseded arming and does nothing. This is what makes cancel() reliable
  // even when the expiry is already queued on the strand.
  std::uint64_t generation_ = 0;
  Clock::time_point deadline_{};  // guarded by mu_
  bool pending_ = false;          // guarded by mu_: armed, not fired, not cancelled
  // Guarded by strand_->armed_timers.mu: this timer's entry there.
  std::optional<ArmedTimers::Key> armed_key_;
};

}  // namespace tmr::reactor::detail
