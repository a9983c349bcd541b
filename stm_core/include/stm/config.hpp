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

}  // namespace tmr::stm
