#include "reactor/detail/blocking_monitor.hpp"

#include <chrono>

#include "reactor/detail/reactor_impl.hpp"
#include "reactor/inevitable.hpp"

namespace tmr::reactor {

namespace detail {

namespace {

std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The blocking slot of this thread in the reactor it works for.
struct SlotRef {
  ReactorImpl* owner = nullptr;
  std::uint64_t generation = 0;  // slots are handed out afresh by every run()
  unsigned index = 0;
};
thread_local SlotRef tls_slot;

}  // namespace

std::atomic<std::int64_t>* ReactorImpl::blocking_slot() noexcept {
  if (workers < 2) return nullptr;
  const auto generation = slot_generation_.load(std::memory_order_acquire);
  if (tls_slot.owner != this || tls_slot.generation != generation) {
    const unsigned index = next_slot_.fetch_add(1, std::memory_order_relaxed);
    if (index >= BlockingMonitor::kMaxSlots) return nullptr;  // untracked: only no lending
    tls_slot = SlotRef{this, generation, index};
  }
  return &blocked_since_[tls_slot.index];
}

unsigned ReactorImpl::stuck_sections() const noexcept {
  const auto now = now_ns();
  const unsigned slots =
      std::min(next_slot_.load(std::memory_order_relaxed), BlockingMonitor::kMaxSlots);
  unsigned stuck = 0;
  for (unsigned i = 0; i < slots; ++i) {
    const auto since = blocked_since_[i].load(std::memory_order_relaxed);
    if (since != 0 && now - since >= BlockingMonitor::kStuckAfterNs) ++stuck;
  }
  return stuck;
}

BlockingMonitor::BlockingMonitor(ReactorImpl& reactor) : reactor_(reactor) {
  // A new run(): new threads. Hand the slots out again (no worker runs yet).
  for (auto& slot : reactor_.blocked_since_) slot.store(0, std::memory_order_relaxed);
  reactor_.next_slot_.store(0, std::memory_order_relaxed);
  reactor_.slot_generation_.fetch_add(1, std::memory_order_release);
  monitor_ = std::thread([this] { monitor_loop(); });
}

BlockingMonitor::~BlockingMonitor() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    target_ = 0;
  }
  cv_.notify_all();
  monitor_.join();
  for (auto& spare : spares_) spare.join();
}

void BlockingMonitor::monitor_loop() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::milliseconds(1));
    if (stop_) break;
    // At most one spare per worker: spares can block too (all waiting for the one token), and
    // lending more threads than that would only add waiters.
    const unsigned target = std::min<unsigned>(reactor_.stuck_sections(), reactor_.workers);
    const unsigned previous = target_.exchange(target);
    while (spares_.size() < target) {
      const auto index = static_cast<unsigned>(spares_.size());
      spares_.emplace_back([this, index] { spare_loop(index); });
    }
    if (target > previous) cv_.notify_all();
  }
}

void BlockingMonitor::spare_loop(unsigned index) {
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || index < target_.load(); });
      if (stop_) return;
    }
    // Lent: run handlers of any strand until the blocked section that called us ends.
    while (index < target_.load() && !reactor_.context.stopped()) {
      reactor_.context.run_one_for(std::chrono::milliseconds(2));
    }
    if (reactor_.context.stopped()) {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_; });
      return;
    }
  }
}

}  // namespace detail

BlockingScope::BlockingScope() noexcept {
  const auto* strand = detail::current_strand_impl();
  if (!strand) return;
  slot_ = (*strand)->reactor.blocking_slot();
  if (slot_) slot_->store(detail::now_ns(), std::memory_order_relaxed);
}

BlockingScope::~BlockingScope() {
  if (slot_) slot_->store(0, std::memory_order_relaxed);
}

}  // namespace tmr::reactor
