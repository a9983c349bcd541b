#pragma once

// A gate that callbacks pass through, which one thread at a time may close to run alone: no
// callback inside while it runs, none entering until it opens the gate again. A single-threaded
// loop runs a call from another thread between two callbacks; with several workers this is how
// such a call keeps that place (tm_twisted's callFromThread from a thread the program started).

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <thread>

namespace tmr::reactor {

class ExclusiveGate {
  struct Stripe;  // below

 public:
  /// A callback's passage: counts the callback inside until the pass ends. The constructor
  /// enters unless the gate is closed; then the callback must wait_open() before it runs (the
  /// caller first lets go of what the closing thread may need, such as Python's thread state).
  /// Nested passes on one thread, and passes on the thread that closed the gate, count nothing
  /// and never wait.
  class Pass {
   public:
    explicit Pass(ExclusiveGate& gate);
    ~Pass();
    Pass(const Pass&) = delete;
    Pass& operator=(const Pass&) = delete;

    /// Whether the callback is let through (always, unless the gate was closed by another).
    bool entered() const noexcept { return entered_; }
    /// Waits for the gate to open and enters.
    void wait_open();

   private:
    ExclusiveGate* gate_ = nullptr;  // null when the pass counts nothing
    Stripe* stripe_ = nullptr;       // this thread's, of gate_
    bool entered_ = true;
  };

  /// Closes the gate: callbacks that arrive from now on wait. One thread at a time, outside any
  /// callback (else std::logic_error); that thread then waits for those inside with wait_empty().
  void close();
  /// Waits up to `timeout` for the callbacks inside to leave; true once none is. Between calls
  /// the closing thread may do what a callback inside waits for (a call made on its behalf).
  bool wait_empty(std::chrono::nanoseconds timeout);
  /// Opens the gate (the thread that closed it; else std::logic_error); the callbacks waiting
  /// enter.
  void open();

 private:
  // The count of callbacks inside, spread over cache lines by thread so that workers entering
  // and leaving do not share one line; closing reads them all.
  struct alignas(64) Stripe {
    std::atomic<int> inside{0};
  };
  static constexpr std::size_t kStripes = 16;

  bool try_enter(Stripe& stripe);
  void wait_open();
  void leave(Stripe& stripe);
  bool empty() const noexcept;

  std::array<Stripe, kStripes> stripes_{};
  std::atomic<bool> closed_{false};
  std::mutex mu_;                    // for the slow paths' waits only
  std::thread::id closer_;           // guarded by mu_
  std::condition_variable emptied_;  // the closing thread waits on it
  std::condition_variable opened_;   // callbacks that arrived while closed wait on it
};

}  // namespace tmr::reactor
