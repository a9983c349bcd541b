#pragma once

#include <utility>

namespace tmr::reactor {

/// Makes the running transaction inevitable, so that irrevocable work (blocking I/O, a system
/// call with side effects) may follow: it will not abort from now on and commits before any
/// transaction ordered after it. Outside a transaction there is nothing to protect and it
/// returns at once. Returns whether a transaction was made inevitable.
bool become_inevitable();

/// Runs `fn` (which may block) after making the running transaction inevitable.
template <class F>
decltype(auto) run_blocking(F&& fn) {
  become_inevitable();
  return std::forward<F>(fn)();
}

}  // namespace tmr::reactor
