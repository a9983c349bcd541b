#include "stm/version.hpp"

namespace tmr::stm {

const char* version() noexcept {
  return "0.1.0";
}

}  // namespace tmr::stm
