#pragma once

namespace tmr::stm {

/// The engine's version, as "major.minor.patch".
const char* version() noexcept;

}  // namespace tmr::stm
