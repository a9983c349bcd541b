#pragma once

#include <atomic>
#include <cstdint>
#include <utility>

namespace tmr::reactor {

/// Marks the calling worker as blocked for the scope's lifetime. If it stays blocked for more
/// than a millisecond, the reactor lends a spare thread to the other strands until the scope
/// ends, so that a blocked worker does not stall unrelated events (reactors of 2+ workers).
/// Outside reactor callbacks it does nothing. The Python layer wraps waits for the GIL in one.
class BlockingScope {
 public:
  BlockingScope() noexcept;
  ~BlockingScope();
  BlockingScope(const BlockingScope&) = delete;
  BlockingScope& operator=(const BlockingScope&) = delete;

 private:
  std::atomic<std::int64_t>* slot_ = nullptr;
};

/// Makes the running transaction inevitable, so that irrevocable work (blocking I/O, a system
/// call with side effects) may follow: it will not abort from now on and commits before any
/// transaction ordered after it. Outside a transaction there is nothing to protect and it
/// returns at once. Returns whether a transaction was made inevitable.
bool become_inevitable();

/// Runs `fn` (which may block) after making the running transaction inevitable, inside a
/// BlockingScope.
template <class F>
decltype(auto) run_blocking(F&& fn) {
  become_inevitable();
  BlockingScope blocked;
  return std::forward<F>(fn)();
}

}  // namespace tmr::reactor
