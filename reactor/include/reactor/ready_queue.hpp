#pragma once

#include <memory>

#include "reactor/reactor.hpp"
#include "reactor/strand.hpp"

namespace tmr::stm {
class Transaction;
}

namespace tmr::reactor {

namespace detail {
class ReadyQueueState;
}

/// A FIFO of calls ready to run on one strand, drained in batches, as a single-threaded loop's
/// ready queue (asyncio's `_ready` deque): one Asio handler on the strand runs every call queued
/// when it starts, each call as one transaction of its own (an event of kind `posted`), and the
/// calls queued meanwhile form the next batch, whose handler goes behind whatever the strand got
/// in the meantime (I/O found ready, timers due, other posts). A call queued while a batch waits
/// to run joins it. Against `Reactor::post`, a call costs no allocation and no Asio post.
///
/// Items are opaque pointers: `run(context, item, tx)` runs one inside its transaction and takes
/// it over by setting it to null (an item still set after its event, for instance because the
/// event failed, is handed to `drop`); `drop` disposes of an item that will not run, and of
/// `context` (when not null) once the queue's last batch is done with it. Inside a transaction
/// `push` queues at its commit and drops the item if the transaction aborts. When the reactor is
/// stopped in the middle of a batch (a callback stops it), the rest waits for the next `run()`.
/// Thread-safe.
class ReadyQueue {
 public:
  using RunFn = void (*)(void* context, void*& item, stm::Transaction& tx);
  using DropFn = void (*)(void* item) noexcept;

  ReadyQueue(Reactor& reactor, const Strand& strand, RunFn run, DropFn drop,
             void* context = nullptr);
  /// Drops the items not run yet (a batch running now finishes).
  ~ReadyQueue();
  ReadyQueue(const ReadyQueue&) = delete;
  ReadyQueue& operator=(const ReadyQueue&) = delete;
  ReadyQueue(ReadyQueue&&) = delete;
  ReadyQueue& operator=(ReadyQueue&&) = delete;

  /// Queues `item` (at the commit of the running transaction, if any).
  void push(void* item);
  /// Outside a transaction only: queues `item` and returns true if a batch is waiting or running
  /// (no Asio post needed); otherwise queues nothing and returns false (call `push`).
  bool push_if_scheduled(void* item);
  /// True when no batch waits to run: what the strand runs next is not one of these calls (a
  /// serial loop's fired timer may then run at once, as asyncio runs a due timer when nothing
  /// else is ready).
  bool idle() const;

 private:
  std::shared_ptr<detail::ReadyQueueState> state_;
};

}  // namespace tmr::reactor
