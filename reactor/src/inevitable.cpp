#include "reactor/inevitable.hpp"

#include "reactor/detail/reactor_impl.hpp"
#include "stm/stm.hpp"

namespace tmr::reactor {

bool become_inevitable() {
  auto* tx = stm::current_transaction();
  if (!tx) return false;
  if (!tx->is_inevitable()) {
    BlockingScope waiting;  // taking the token may wait for another inevitable transaction
    tx->become_inevitable();
  }
  return true;
}

}  // namespace tmr::reactor
