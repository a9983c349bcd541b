#pragma once

// Reactor time as Python sees it: float seconds on the reactor's monotonic clock.

#include <algorithm>
#include <chrono>

#include "reactor/timer.hpp"

namespace tmr::bindings {

// Seconds on the reactor's monotonic clock: the same clock as time.monotonic() on Linux, which
// asyncio's loop.time() uses.
inline double to_seconds(reactor::Clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

// Deadlines beyond the clock's range (Twisted's tests schedule calls 2**33 seconds away) are
// clamped to a century from now: they stay pending instead of overflowing into the past.
inline reactor::Clock::time_point from_seconds(double s) {
  const double limit = to_seconds(reactor::Clock::now()) + 100.0 * 365 * 24 * 3600;
  return reactor::Clock::time_point(std::chrono::duration_cast<reactor::Clock::duration>(
      std::chrono::duration<double>(std::min(s, limit))));
}

}  // namespace tmr::bindings
