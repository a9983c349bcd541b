#pragma once

#include <cstdint>

#include "stm/abort_cause.hpp"
#include "stm/cell.hpp"

namespace tmr::stm::detail {

/// Adds one aborted attempt to the conflict-site table (cell, both site tags, cause).
void record_conflict(const Cell* cell, const char* site, const char* other_site, AbortCause cause,
                     std::uint64_t ns_lost);

std::uint64_t next_random(std::uint64_t& state) noexcept;

}  // namespace tmr::stm::detail
