#pragma once

#include <chrono>
#include <memory>

namespace tmr::reactor {

/// The reactor's clock: monotonic, never adjusted by wall-clock changes.
using Clock = std::chrono::steady_clock;

namespace detail {
class TimerImpl;
}

/// A handle on a scheduled call (Reactor::call_at / call_later). Copies share the timer.
/// `cancel` and `reschedule` called inside a transaction take effect at its commit.
class Timer {
 public:
  Timer() noexcept = default;
  explicit Timer(std::shared_ptr<detail::TimerImpl> impl) noexcept : impl_(std::move(impl)) {}

  /// The call will not run (unless it already started). Idempotent.
  void cancel();
  /// Moves the deadline; re-arms a timer that already fired or was cancelled.
  void reschedule(Clock::time_point deadline);
  void reschedule_after(Clock::duration delay) { reschedule(Clock::now() + delay); }
  /// Arms the timer for `deadline` unless it is already armed for that or sooner: the timer of
  /// a queue of calls kept elsewhere (asyncio's timer heap), armed for the earliest of them.
  /// Requests from several threads commute, whatever order their transactions commit in: the
  /// earliest one wins until the timer fires.
  void reschedule_earlier(Clock::time_point deadline);
  /// The deadline the timer is (or was last) armed for.
  Clock::time_point deadline() const;
  /// True while the call is scheduled and has neither run nor been cancelled.
  bool pending() const;

  explicit operator bool() const noexcept { return impl_ != nullptr; }

 private:
  std::shared_ptr<detail::TimerImpl> impl_;
};

}  // namespace tmr::reactor
