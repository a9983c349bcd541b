#pragma once

#include <cstdint>
#include <memory>
#include <type_traits>
#include <utility>

namespace tmr::stm {
class Transaction;
}

namespace tmr::reactor {

/// What made the reactor run a callback. A dispatcher may treat kinds differently (the Python
/// layer, for instance, reports them in conflict diagnostics).
enum class EventKind : std::uint8_t {
  accept,    ///< a listener accepted a connection
  connect,   ///< an outgoing connection completed (or failed)
  read,      ///< data, end of file or a datagram arrived
  writable,  ///< a watched descriptor became writable, or a paused producer may resume
  timer,     ///< a timer expired
  posted,    ///< a call posted from a reactor thread
  wakeup,    ///< a call posted from a thread outside the reactor
  closed,    ///< a connection was lost or closed
  error,     ///< an error report (accept back-off, datagram error)
};

/// Describes the event being dispatched.
struct DispatchInfo {
  EventKind kind;
  std::uint64_t strand_id;  ///< the strand the callback runs on; never 0
};

/// A non-owning reference to a callable `void(stm::Transaction&)`. It avoids a heap allocation per
/// event on the hot path; it is valid only during the `dispatch` call that receives it.
class EventCallback {
 public:
  // Implicit on purpose, like a function_ref. The pointer to `f` drops its const, which call_
  // gives back: it casts to F's own type.
  template <class F,
            class = std::enable_if_t<!std::is_same_v<std::remove_cvref_t<F>, EventCallback>>>
  EventCallback(F&& f) noexcept
      // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast): see above
      : obj_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* o, stm::Transaction& tx) {
          (*static_cast<std::remove_reference_t<F>*>(o))(tx);
        }) {}

  void operator()(stm::Transaction& tx) const { call_(obj_, tx); }

 private:
  void* obj_;
  void (*call_)(void*, stm::Transaction&);
};

/// The pluggable policy that turns a ready event into a transaction. The reactor calls `dispatch`
/// once per event, on a worker thread, inside the event's strand. An implementation must run
/// `callback` inside a transaction (usually `stm::atomically`), once per attempt, and return
/// after the attempt that committed. Exceptions escaping `dispatch` are reported through
/// `ReactorOptions::on_error` and never stop the loop.
///
/// The Python layer substitutes its own dispatcher: it attaches a thread state, makes the
/// transaction inevitable where the callback is irrevocable, and then calls `callback`.
class Dispatcher {
 public:
  virtual ~Dispatcher() = default;
  virtual void dispatch(const DispatchInfo& info, EventCallback callback) = 0;
};

/// The default: every event is one restartable transaction, `stm::atomically(callback)`.
class AtomicDispatcher final : public Dispatcher {
 public:
  void dispatch(const DispatchInfo& info, EventCallback callback) override;
};

}  // namespace tmr::reactor
