#pragma once

#include <cstddef>
#include <cstdint>

namespace tmr::stm {

/// Why an attempt ended without committing. Structured like TinySTM's STM_ABORT_* codes so that
/// statistics and conflict reports can be broken down by cause.
enum class AbortCause : std::uint8_t {
  read_write,      ///< a cell read by the attempt was overwritten (validation or extension failed)
  write_write,     ///< a cell the attempt writes was locked by another committing transaction
  inevitable,      ///< the attempt wrote a cell the inevitable transaction had read
  explicit_abort,  ///< user code called Transaction::abort()
  injected,        ///< test mode: set_abort_injection() chose this attempt
  retry,           ///< user code called Transaction::retry(): block until a read cell changes
};

inline constexpr std::size_t abort_cause_count = 6;

/// A stable lower-case name for the cause ("read_write", ...).
const char* to_string(AbortCause cause) noexcept;

/// The control-flow signal that unwinds an attempt back into atomically(). It is deliberately NOT
/// derived from std::exception, so `catch (const std::exception&)` in user code cannot swallow it.
/// User code inside a transaction must never `catch (...)` without rethrowing.
struct AbortSignal {
  AbortCause cause;
};

}  // namespace tmr::stm
