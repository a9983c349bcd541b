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

/// Called with true before and false after each batch of deferred releases that reclamation
/// runs on a thread: a release function with a costly per-thread set-up (attaching to an
/// interpreter from a thread that is not attached, as on thread exit) does it once per batch
/// instead of once per value. Null (the default) calls nothing. Set it before transactions run.
using ReleaseBatchHook = void (*)(bool begin);
void set_release_batch_hook(ReleaseBatchHook hook) noexcept;

}  // namespace tmr::stm
