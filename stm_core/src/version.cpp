#include "stm/version.hpp"

namespace tmr::stm {

const char* version() noexcept {
  return TM_VERSION;  // the project version (stm_core/CMakeLists.txt)
}

}  // namespace tmr::stm
