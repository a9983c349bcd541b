#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <limits>
#include <mutex>
#include <vector>

#include "stm/abort_cause.hpp"
#include "stm/cell.hpp"

namespace tmr::stm::detail {

inline constexpr std::uint64_t idle_epoch = std::numeric_limits<std::uint64_t>::max();

/// Process-wide engine state. Each hot word sits on its own cache line.
struct Globals {
  // The global version clock. Invariant: every committed write carries a version <= clock; a
  // committer increments it (after locking its write set) to get its commit version.
  alignas(64) std::atomic<std::uint64_t> clock{0};
  // 0 when the inevitable token is free, else the holder's generation (never reused). Waiters
  // block with atomic::wait on it.
  alignas(64) std::atomic<std::uint64_t> inev_gen{0};
  std::atomic<std::uint64_t> inev_counter{0};
  // Hook turnstile: committers with on-commit hooks take hook_next while still holding their
  // write locks (so ticket order agrees with the order of conflicting commits), then run their
  // hooks when hook_turn reaches their ticket. Invariant: hook_turn <= hook_next.
  alignas(64) std::atomic<std::uint64_t> hook_next{0};
  alignas(64) std::atomic<std::uint64_t> hook_turn{0};
  // retry(): number of blocked waiters, and a futex word bumped after commits when waiters > 0.
  alignas(64) std::atomic<std::uint32_t> retry_waiters{0};
  std::atomic<std::uint32_t> commit_seq{0};
  // retry_until(): waiters with a deadline (also counted in retry_waiters) sleep on this condition
  // variable, since atomic::wait has no timeout; a committer that sees them notifies it.
  std::atomic<std::uint32_t> timed_retry_waiters{0};
  std::mutex timed_retry_mutex;
  std::condition_variable timed_retry_cv;
  // Configuration (relaxed: read once per attempt).
  alignas(64) std::atomic<std::uint32_t> escalation_threshold{8};
  std::atomic<std::uint64_t> injection_threshold{0};  // probability * 2^64, 0 = off
  std::atomic<std::uint64_t> injection_seed{0};
  std::atomic<std::uint64_t> injection_generation{0};
  std::atomic<std::uint64_t> noise_threshold{0};  // set_schedule_noise: probability * 2^64
  std::atomic<std::uint64_t> noise_seed{0};
  std::atomic<std::uint64_t> noise_generation{0};
};

/// probability in [0, 1] as a threshold for a uniform 64-bit draw (0: never, ~0: always).
std::uint64_t probability_threshold(double probability) noexcept;
/// set_schedule_noise(): pauses this thread at random, or does nothing when it is off.
void schedule_noise(std::uint64_t thread_index) noexcept;

extern Globals g;

/// Statistics counters of one thread. Written by the owner only (relaxed); read by anyone.
struct StatCounters {
  std::atomic<std::uint64_t> commits{0}, read_only_commits{0}, ns_aborted{0}, ns_inevitable{0},
      inevitable_commits{0}, escalations{0};
  std::atomic<std::uint64_t> aborts[abort_cause_count]{};
};
/// Adds to a counter of StatCounters: its owner is its only writer.
inline void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

struct Retired {
  void* payload;
  ReleaseFn release;
  std::uint64_t stamp;  // free once every active transaction started at or after this version
};

/// Per-thread record, registered in a global list for reclamation scans and statistics totals.
struct ThreadRecord {
  // Start version of the running transaction, idle_epoch when none. Invariant: while a
  // transaction of this thread may hold a payload pointer, active_since <= the version at which
  // that payload was replaced. Stored seq_cst before the first read (Dekker with reclaimers).
  alignas(64) std::atomic<std::uint64_t> active_since{idle_epoch};
  StatCounters stats;
  std::vector<Retired> retired;  // owner thread only
  std::uint64_t index = 0;       // registration order, for injection seeds
  bool reclaiming = false;       // owner only: guards re-entrant release functions
};

ThreadRecord& this_thread_record();
/// Frees what this thread retired and no active transaction can still reach.
void try_reclaim(ThreadRecord& rec);
std::uint64_t now_ns() noexcept;

}  // namespace tmr::stm::detail
