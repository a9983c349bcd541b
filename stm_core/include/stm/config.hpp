#pragma once

#include <cstdint>

namespace tmr::stm {

/// Number of consecutive aborts after which atomically() reruns the attempt inevitable (so no
/// transaction starves). Default 8; 0 means "always start inevitable".
void set_escalation_threshold(std::uint32_t aborts) noexcept;
std::uint32_t escalation_threshold() noexcept;

/// Test mode: abort that fraction of (non-inevitable) attempts at a random access or at commit,
/// with cause AbortCause::injected. 0 turns it off. A non-zero seed makes each thread's sequence
/// reproducible (seed mixed with the thread's registration index).
void set_abort_injection(double probability, std::uint64_t seed = 0);

/// Test mode: at that fraction of commits, the committing thread pauses (a yield, or a sleep of
/// up to 200 us) before it locks and again before it runs its on-commit hooks, so that repeated
/// runs explore other interleavings of the same program. 0 turns it off; a non-zero seed makes
/// each thread's choices reproducible, as for set_abort_injection().
void set_schedule_noise(double probability, std::uint64_t seed = 0);

/// Called with true before and false after each batch of deferred releases that reclamation
/// runs on a thread: a release function with a costly per-thread set-up (attaching to an
/// interpreter from a thread that is not attached, as on thread exit) does it once per batch
/// instead of once per value. Null (the default) calls nothing. Set it before transactions run.
using ReleaseBatchHook = void (*)(bool begin);
void set_release_batch_hook(ReleaseBatchHook hook) noexcept;

}  // namespace tmr::stm
