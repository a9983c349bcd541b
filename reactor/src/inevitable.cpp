#include "reactor/inevitable.hpp"

#include "stm/stm.hpp"

namespace tmr::reactor {

bool become_inevitable() {
  auto* tx = stm::current_transaction();
  if (!tx) return false;
  if (!tx->is_inevitable()) tx->become_inevitable();
  return true;
}

}  // namespace tmr::reactor
