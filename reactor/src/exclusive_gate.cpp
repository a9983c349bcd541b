#include "reactor/exclusive_gate.hpp"

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <thread>

namespace tmr::reactor {

namespace {

// How deep this thread is in passes (and closed gates): only the outermost one counts, so that a
// callback run inline by another, or by the closing thread, neither counts twice nor waits for
// itself.
thread_local int t_depth = 0;

// This thread's stripe: threads take them in turn.
std::size_t stripe_index(std::size_t stripes) {
  static std::atomic<std::size_t> next{0};
  thread_local const std::size_t index = next.fetch_add(1, std::memory_order_relaxed) % stripes;
  return index;
}

}  // namespace

ExclusiveGate::Pass::Pass(ExclusiveGate& gate) {
  if (t_depth++ > 0) return;
  gate_ = &gate;
  stripe_ = &gate.stripes_[stripe_index(kStripes)];
  entered_ = gate.try_enter(*stripe_);
}

void ExclusiveGate::Pass::wait_open() {
  while (!entered_) {
    gate_->wait_open();
    entered_ = gate_->try_enter(*stripe_);
  }
}

ExclusiveGate::Pass::~Pass() {
  --t_depth;
  if (gate_ != nullptr && entered_) gate_->leave(*stripe_);
}

// Entering publishes the count before reading closed_, and closing publishes closed_ before
// reading the counts (both sequentially consistent): either the closer sees this callback
// inside, or this callback sees the gate closed and backs out.
bool ExclusiveGate::try_enter(Stripe& stripe) {
  stripe.inside.fetch_add(1, std::memory_order_seq_cst);
  if (!closed_.load(std::memory_order_seq_cst)) return true;
  leave(stripe);
  return false;
}

void ExclusiveGate::wait_open() {
  std::unique_lock lock(mu_);
  opened_.wait(lock, [&] { return !closed_.load(std::memory_order_relaxed); });
}

void ExclusiveGate::leave(Stripe& stripe) {
  if (stripe.inside.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
      closed_.load(std::memory_order_seq_cst)) {
    // Taking the lock orders this notification after the closer's check of the counts.
    const std::lock_guard lock(mu_);
    emptied_.notify_all();
  }
}

bool ExclusiveGate::empty() const noexcept {
  return std::ranges::all_of(stripes_, [](const Stripe& stripe) {
    return stripe.inside.load(std::memory_order_seq_cst) == 0;
  });
}

void ExclusiveGate::close() {
  // Inside a callback the closer would wait for itself.
  if (t_depth > 0) throw std::logic_error("the gate is closed from outside any callback");
  const std::lock_guard lock(mu_);
  if (closed_.load(std::memory_order_relaxed)) {
    throw std::logic_error("the gate is closed by one thread at a time");
  }
  closed_.store(true, std::memory_order_seq_cst);
  closer_ = std::this_thread::get_id();
  ++t_depth;
}

bool ExclusiveGate::wait_empty(std::chrono::nanoseconds timeout) {
  std::unique_lock lock(mu_);
  return emptied_.wait_for(lock, timeout, [&] { return empty(); });
}

void ExclusiveGate::open() {
  {
    const std::lock_guard lock(mu_);
    if (!closed_.load(std::memory_order_relaxed) || closer_ != std::this_thread::get_id()) {
      throw std::logic_error("the gate is opened by the thread that closed it");
    }
    closed_.store(false, std::memory_order_seq_cst);
    closer_ = {};
  }
  --t_depth;
  opened_.notify_all();
}

}  // namespace tmr::reactor
