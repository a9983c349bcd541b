#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace tmr::reactor::detail {

class ReactorImpl;

/// Keeps `workers` threads runnable while some of them are blocked (waiting for the
/// inevitable token, or in run_blocking): the measured alternative to suspending the waiting
/// transaction on a fiber (docs/REACTOR.md). Workers mark blocking sections in per-thread
/// slots (two relaxed-cost atomic stores, no wake-up); a monitor thread looks every
/// millisecond and lends one spare thread per section blocked for longer than that, which runs
/// the io_context (any strand) until the section ends. Only for reactors of 2+ workers: with
/// one worker, lending a thread would break the exactly-serial promise.
class BlockingMonitor {
 public:
  static constexpr unsigned kMaxSlots = 64;
  static constexpr std::int64_t kStuckAfterNs = 1'000'000;  // 1 ms

  explicit BlockingMonitor(ReactorImpl& reactor);
  ~BlockingMonitor();  // stops and joins the monitor and every spare
  BlockingMonitor(const BlockingMonitor&) = delete;
  BlockingMonitor& operator=(const BlockingMonitor&) = delete;

 private:
  void monitor_loop();
  void spare_loop(unsigned index);

  ReactorImpl& reactor_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  // Spares with index < target_ run the io_context; the others park on cv_. Written by the
  // monitor under mu_, read by spares without it between handlers.
  std::atomic<unsigned> target_{0};
  std::vector<std::thread> spares_;  // touched by the monitor thread only (and the destructor)
  std::thread monitor_;
};

}  // namespace tmr::reactor::detail
